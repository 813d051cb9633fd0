"""What someone who opens the printed address finds: ``/`` a small HTML page (what this
is, links to the metadata, the docs and health), ``/fhir`` that page for a browser and an
OperationOutcome pointing to the metadata for a FHIR client; no script, no style."""

from __future__ import annotations

import re

import httpx
import pytest
from fhir_check import validate

from adapter.app import create_app
from adapter.sandbox import NyraSandbox
from adapter.settings import Settings

pytestmark = pytest.mark.anyio

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture
async def http():
    nyra = NyraSandbox(seed=2, patients=3)
    sources = {"nyra-l": {"connector": "nyra", "timezone": "Asia/Kolkata", **nyra.defaults()}}
    settings = Settings(sources=sources, cursor_key=b"l" * 32, token_key=b"t" * 32)
    app = create_app(settings, transports={"nyra-l": nyra.transport()})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fhir.test"
    ) as client:
        yield client


def links(page: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', page)


async def test_the_root_is_a_page_that_says_what_this_is_and_links_onwards(http):
    r = await http.get("/", headers={"accept": BROWSER})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-security-policy"] == "default-src 'none'"
    assert "<script" not in r.text and "style" not in r.text
    assert "FHIR R4" in r.text and "no\nstore of its own" in r.text
    assert links(r.text) == [
        "/fhir/metadata",
        "/docs",
        "/openapi.json",
        "/fhir/.well-known/smart-configuration",
        "/healthz",
        "/readyz",
    ]
    # Every link answers without a token.
    for link in links(r.text):
        assert (await http.get(link)).status_code == 200, link


async def test_the_fhir_base_is_the_page_for_a_browser(http):
    page = await http.get("/", headers={"accept": BROWSER})
    r = await http.get("/fhir", headers={"accept": BROWSER})
    assert r.status_code == 200
    assert r.content == page.content


@pytest.mark.parametrize("accept", ["application/fhir+json", "application/json", "*/*", None])
async def test_the_fhir_base_points_a_fhir_client_to_the_metadata(http, accept):
    r = await http.get("/fhir", headers={"accept": accept} if accept else {})
    assert r.status_code == 404
    asked = "application/json" if accept == "application/json" else "application/fhir+json"
    assert r.headers["content-type"] == f"{asked}; charset=utf-8"
    body = r.json()
    validate(body)
    assert body["issue"] == [
        {
            "severity": "error",
            "code": "not-found",
            "diagnostics": "no interaction at the FHIR base itself; "
            "http://fhir.test/fhir/metadata says what this server serves",
        }
    ]
