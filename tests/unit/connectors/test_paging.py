"""Paging fails loudly when a vendor hands back a page it already gave."""

from __future__ import annotations

import httpx
import pytest

from adapter.connectors.base import Page, PaginationLoop, iterate
from adapter.connectors.registry import create_connector
from adapter.fhir.search import SearchParam, SearchRequest

pytestmark = pytest.mark.anyio

NYRA = {
    "connector": "nyra",
    "base_url": "http://nyra.test",
    "timezone": "Asia/Kolkata",
    "keys": [{"key": "nyra_k", "secret": "s", "token": "t"}],
}


def stuck_vendor() -> httpx.MockTransport:
    """A Nyra that answers every page with the same 100 patients and claims 50 pages."""
    results = [{"id": f"p{i}", "name": f"Ravi {i}", "phone": "9876543210"} for i in range(100)]

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        data = {"total": 5000, "results": results, "page": page, "limit": 100, "total_pages": 50}
        return httpx.Response(200, json={"success": True, "data": data})

    return httpx.MockTransport(handler)


async def test_a_repeated_vendor_page_is_a_loop():
    connector = create_connector("nyra-stuck", NYRA, transport=stuck_vendor())
    request = SearchRequest("Patient", (SearchParam("name", ("nobody",)),), count=10)
    with pytest.raises(PaginationLoop, match="nyra-stuck"):
        await connector.search(request)
    await connector.aclose()


class Circular:
    """A connector whose cursors go round: a, b, a, ..."""

    source = "circular"
    capabilities = None

    async def search(self, request, cursor=None):
        following = {None: "a", "a": "b", "b": "a"}[cursor]
        return Page([{"id": cursor or "start"}], following)


async def test_iterate_stops_on_a_cursor_seen_before():
    seen = []
    with pytest.raises(PaginationLoop, match="circular"):
        async for resource in iterate(Circular(), SearchRequest("Patient")):
            seen.append(resource["id"])
    assert seen == ["start", "a", "b"]
