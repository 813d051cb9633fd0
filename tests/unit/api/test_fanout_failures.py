"""One source failing in any way during a search is that source's outcome entry: the other
source's records are still served, with 200."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from harness import FAST

from adapter.app import create_app
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings

pytestmark = pytest.mark.anyio

LEYR = {"connector": "leyr", "timezone": "Europe/Stockholm", "emr": "webdoc"}
NYRA = {"connector": "nyra", "timezone": "Asia/Kolkata", "retry": {"attempts": 1}}


def _app(nyra_transport: httpx.AsyncBaseTransport, leyr: LeyrSandbox, nyra: NyraSandbox):
    sources = {
        "leyr-a": {**LEYR, **leyr.defaults(), "retry": {"attempts": 1}},
        "nyra-b": {**NYRA, **nyra.defaults()},
    }
    settings = Settings(open_access=True, sources=sources, cursor_key=b"c" * 32)
    return create_app(settings, transports={"leyr-a": leyr.transport(), "nyra-b": nyra_transport})


class RepeatsItsFirstPage(httpx.AsyncBaseTransport):
    """A Nyra that answers page 1 whatever page is asked for."""

    def __init__(self, sandbox: NyraSandbox) -> None:
        self.inner = sandbox.transport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        if "page" in params:
            params["page"] = "1"
            request.url = request.url.copy_with(query=urlencode(params).encode())
        return await self.inner.handle_async_request(request)


def _answering(body: bytes) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    return httpx.MockTransport(handler)


async def _search(app, **params: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fhir.test") as c:
        return await c.get("/fhir/Patient", params=params)


def _served(response: httpx.Response) -> tuple[list[str], list[dict]]:
    bundle = response.json()
    Bundle.model_validate(bundle)
    entries = bundle.get("entry", [])
    matches = [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"]
    outcomes = [e["resource"] for e in entries if e["search"]["mode"] == "outcome"]
    return matches, outcomes


async def test_a_vendor_repeating_a_page_is_its_outcome_entry_beside_the_other_source():
    leyr = LeyrSandbox(seed=3, patients=20)
    nyra = NyraSandbox(seed=3, patients=150, limits=FAST)  # two vendor pages of 100
    app = _app(RepeatsItsFirstPage(nyra), leyr, nyra)
    r = await _search(app, gender="other", _count="50")
    assert r.status_code == 200
    matches, outcomes = _served(r)
    assert matches and all(m.startswith("leyr-a.") for m in matches)
    (outcome,) = outcomes
    (issue,) = outcome["issue"]
    assert issue["severity"] == "error" and "nyra-b" in issue["diagnostics"]
    assert "repeated a page" in issue["diagnostics"]
    # the healthy source's part is what it serves alone
    alone = await _search(_app(nyra.transport(), leyr, nyra), gender="other", _source="leyr-a")
    assert sorted(matches) == sorted(_served(alone)[0])


@pytest.mark.parametrize(
    "body",
    [
        orjson.dumps([{"id": "p1"}]),  # no envelope
        orjson.dumps({"success": True, "data": {"results": [7, "x", None]}}),  # not records
        orjson.dumps({"success": True, "data": {"results": ["x", {"id": 3}]}}),  # not records
        orjson.dumps({"success": True, "data": "results"}),
        b"<html>Bad gateway</html>",
    ],
    ids=["bare-list", "not-records", "some-not-records", "data-string", "not-json"],
)
async def test_a_vendor_answering_the_wrong_shape_is_its_outcome_entry(body):
    leyr = LeyrSandbox(seed=4, patients=8)
    nyra = NyraSandbox(seed=4, patients=5, limits=FAST)
    r = await _search(_app(_answering(body), leyr, nyra), _count="20")
    assert r.status_code == 200
    matches, outcomes = _served(r)
    assert len(matches) == 8 and all(m.startswith("leyr-a.") for m in matches)
    (outcome,) = outcomes
    (issue,) = outcome["issue"]
    assert issue["severity"] == "error" and "nyra-b" in issue["diagnostics"]
    assert "Bad gateway" not in r.text


async def test_when_every_source_fails_the_search_is_an_error_naming_each():
    leyr = LeyrSandbox(seed=5, patients=3)
    nyra = NyraSandbox(seed=5, patients=3, limits=FAST)
    leyr.faults.error_rate = 1.0
    r = await _search(_app(_answering(b"[]"), leyr, nyra))
    assert r.status_code == 502
    text = " ".join(i["diagnostics"] for i in r.json()["issue"])
    assert "leyr-a" in text and "nyra-b" in text


async def test_a_record_its_mapping_refuses_is_left_out_with_a_warning_and_paging_goes_on(
    caplog,
):
    leyr = LeyrSandbox(seed=6, patients=4)
    nyra = NyraSandbox(seed=6, patients=30, limits=FAST)
    bad = list(nyra.patients)[3]
    bad["gender"] = "SOMETHING_ELSE"  # a code outside Nyra's vocabulary
    app = _app(nyra.transport(), leyr, nyra)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fhir.test") as c:
        seen: list[str] = []
        warnings: list[str] = []
        url = "/fhir/Patient?_source=nyra-b&_count=10"
        while url:
            r = await c.get(url)
            assert r.status_code == 200
            matches, outcomes = _served(r)
            seen += matches
            warnings += [i["diagnostics"] for o in outcomes for i in o["issue"]]
            url = next((x["url"] for x in r.json()["link"] if x["relation"] == "next"), "")
        read = await c.get(f"/fhir/Patient/nyra-b.{bad['id']}")
    assert len(seen) == 29 == len(set(seen))  # every other record, each once
    assert len(warnings) == 1 and bad["id"] in warnings[0] and "nyra-b" in warnings[0]
    assert read.status_code == 502 and "cannot be mapped" in read.text
    for text in [*warnings, read.text, *(rec.getMessage() for rec in caplog.records)]:
        assert bad["name"] not in text and bad["phone"] not in text
