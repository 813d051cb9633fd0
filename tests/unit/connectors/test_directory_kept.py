"""What a connector keeps of its vendor's directory, and each Nyra doctor's slot length:
asked once, kept for ``directory_seconds``, and used for every mapping meanwhile."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import httpx
import pytest
from harness import FAST, source_config

from adapter.connectors.directory import Kept
from adapter.connectors.registry import create_connector
from adapter.fhir.search import SearchRequest
from adapter.sandbox import LeyrSandbox, NyraSandbox

pytestmark = pytest.mark.anyio


class Counting(httpx.AsyncBaseTransport):
    """The sandbox's transport, counting calls by the last segment of their path."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls[request.url.path.rsplit("/", 1)[-1]] += 1
        return await self.inner.handle_async_request(request)


def search(resource_type: str, count: int = 20) -> SearchRequest:
    return SearchRequest(resource_type, count=count)


async def test_kept_fetches_once_while_fresh_and_again_after():
    now = [0.0]
    calls = []

    async def fetch() -> int:
        calls.append(now[0])
        return len(calls)

    kept = Kept(10, fetch, clock=lambda: now[0])
    assert [await kept.get(), await kept.get()] == [1, 1]
    now[0] = 10.5
    assert await kept.get() == 2 and kept.fresh() == 2
    never = Kept(0, fetch, clock=lambda: now[0])
    assert [await never.get(), await never.get()] == [3, 4] and never.fresh() is None


async def test_leyr_directory_is_asked_once_for_many_searches():
    sandbox = LeyrSandbox(seed=3, patients=20)
    counting = Counting(sandbox.transport())
    connector = create_connector("leyr-k", source_config("leyr", sandbox), transport=counting)
    try:
        for _ in range(3):
            page = await connector.search(search("Appointment"))
            assert page.resources
        practitioners = await connector.search(search("Practitioner"))
        assert practitioners.resources
    finally:
        await connector.aclose()
    assert counting.calls["care-units"] == 1
    assert counting.calls["resources"] == counting.calls["healthcare-services"] == 2


async def test_nyra_learns_each_doctors_slot_length_once():
    sandbox = NyraSandbox(seed=3, patients=20, limits=FAST)
    lengths = {d["id"]: d["slot_duration_minutes"] for d in sandbox.data.doctors}
    assert set(lengths.values()) == {15, 20, 30}
    counting = Counting(sandbox.transport())
    connector = create_connector("nyra-k", source_config("nyra", sandbox), transport=counting)
    try:
        for _ in range(2):
            page = await connector.search(search("Appointment", 100))
            for appointment in page.resources:
                doctor = next(
                    p["actor"]["reference"].rsplit(".", 1)[-1]
                    for p in appointment["participant"]
                    if p["actor"]["reference"].startswith("Practitioner/")
                )
                start = datetime.fromisoformat(appointment["start"])
                end = datetime.fromisoformat(appointment["end"])
                assert (end - start).total_seconds() == lengths[doctor] * 60
                assert appointment["minutesDuration"] == lengths[doctor]
    finally:
        await connector.aclose()
    assert counting.calls["availability"] == len(lengths)  # once per doctor, not per search
