"""Parameters a search cannot honour are never ignored in silence: under lenient handling
(the default) each is named in an informational issue of the first page's outcome entry
and left out of the ``self`` link; the CapabilityStatement does not advertise them; under
``Prefer: handling=strict`` each is a 400."""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from fhir_check import validate

from adapter.app import create_app
from adapter.settings import load_settings

pytestmark = pytest.mark.anyio

NOT_SERVED = ("_text", "_content", "_filter")


@pytest.fixture
async def http():
    settings = dataclasses.replace(load_settings(env={}), open_access=True, clients={})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(settings)), base_url="http://localhost"
    ) as client:
        yield client


async def test_each_parameter_left_out_is_named_in_an_informational_issue(http):
    query = {"_count": "2", "_text": "fever", "_content": "x", "_filter": "name eq x"}
    bundle = (await http.get("/fhir/Patient", params=query)).json()
    validate(bundle)
    (outcome,) = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    said = {i["expression"][0]: i for i in outcome["issue"]}
    assert set(said) == set(NOT_SERVED)
    assert all(i["severity"] == "information" for i in said.values())
    assert all("ignored" in i["diagnostics"] for i in said.values())
    self_link = next(x["url"] for x in bundle["link"] if x["relation"] == "self")
    assert not any(name in self_link for name in NOT_SERVED)
    # the matches are what the search without them gives
    plain = (await http.get("/fhir/Patient", params={"_count": "2"})).json()
    ids = [e["resource"]["id"] for e in plain["entry"] if e["search"]["mode"] == "match"]
    assert [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match"] == ids


async def test_strict_handling_refuses_them_and_the_statement_does_not_offer_them(http):
    r = await http.get(
        "/fhir/Patient", params={"_text": "x"}, headers={"Prefer": "handling=strict"}
    )
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["_text"]
    statement = (await http.get("/fhir/metadata")).json()
    for resource in statement["rest"][0]["resource"]:
        offered = {p["name"] for p in resource.get("searchParam", [])}
        assert not offered & set(NOT_SERVED)
