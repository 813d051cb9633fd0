"""The FHIR upstream behind the facade, beside Leyr and Nyra: one search over all three,
each source's failure its own outcome entry, every reference resolving through the
facade; and the facade itself as an upstream (a regional facade over two hospital
facades)."""

from __future__ import annotations

import pytest
from fhir_upstream_connector.sandbox import FhirSandbox
from upstream_world import FAST, client, facade, references

from adapter.sandbox import LeyrSandbox, NyraSandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
def three():
    leyr = LeyrSandbox(seed=2, patients=12)
    nyra = NyraSandbox(seed=2, patients=12, limits=FAST)
    upstream = FhirSandbox(seed=2, patients=12)
    sources = {
        "leyr-a": {"connector": "leyr", **leyr.defaults()},
        "nyra-b": {"connector": "nyra", **nyra.defaults()},
        "ehr-c": {"connector": "fhir-upstream", **upstream.defaults()},
    }
    transports = {
        "leyr-a": leyr.transport(),
        "nyra-b": nyra.transport(),
        "ehr-c": upstream.transport(),
    }
    return upstream, facade(sources, transports)


async def test_one_search_over_leyr_nyra_and_the_fhir_upstream(three):
    upstream, app = three
    async with client(app) as http:
        r = await http.get("/Appointment", params={"_count": "200"})
        assert r.status_code == 200, r.text
        bundle = r.json()
        matches = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
        outcomes = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
        assert outcomes == []
        by_source = {m["meta"]["source"] for m in matches}
        assert by_source == {"leyr-a", "nyra-b", "ehr-c"}
        ours = [m for m in matches if m["meta"]["source"] == "ehr-c"]
        assert len(ours) == len(upstream.appointments)
        refs = set().union(*(references(m) for m in matches))
        assert any(ref.startswith("Patient/ehr-c.") for ref in refs)
        for ref in sorted(refs):
            kind, fhir_id = ref.split("/")
            got = await http.get(f"/{ref}")
            assert got.status_code == 200, (ref, got.text)
            assert (got.json()["resourceType"], got.json()["id"]) == (kind, fhir_id)


async def test_the_upstreams_failure_is_its_own_outcome_entry(three):
    upstream, app = three
    upstream.static_token = "rotated-at-the-upstream"
    async with client(app) as http:
        r = await http.get("/Patient", params={"_count": "100"})
        assert r.status_code == 200, r.text
        entries = r.json()["entry"]
        served = {
            e["resource"]["meta"]["source"] for e in entries if e["search"]["mode"] == "match"
        }
        assert served == {"leyr-a", "nyra-b"}
        (outcome,) = [e["resource"] for e in entries if e["search"]["mode"] == "outcome"]
        (issue,) = outcome["issue"]
        assert "ehr-c" in issue["diagnostics"]
        assert "rotated-at-the-upstream" not in r.text


async def test_a_parameter_the_facade_does_not_declare_is_a_400_naming_it(three):
    _, app = three
    async with client(app) as http:
        r = await http.get(
            "/Patient",
            params={"address-city": "Oslo", "_source": "ehr-c"},
            headers={"Prefer": "handling=strict"},
        )
        assert r.status_code == 400
        body = r.json()
        assert body["resourceType"] == "OperationOutcome"
        assert "address-city" in r.text
