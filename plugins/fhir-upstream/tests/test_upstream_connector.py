"""The connector over its in-process upstream: ids, references, push-down and in-memory
matching, paging through the upstream's next links, and writes."""

from __future__ import annotations

import pytest
from fhir_upstream_connector import FhirUpstreamConnector
from fhir_upstream_connector.sandbox import FhirSandbox
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.connectors.base import ResourceNotFound, WriteRefused
from adapter.fhir.match import matches
from adapter.fhir.outcome import FhirError
from adapter.fhir.search import SearchParam, SearchRequest
from mappings import IdTooLong

pytestmark = pytest.mark.anyio


def connect(sandbox: FhirSandbox, source: str = "up", **extra) -> FhirUpstreamConnector:
    config = {"connector": "fhir-upstream", **sandbox.defaults(), **extra}
    return FhirUpstreamConnector.from_config(source, config, transport=sandbox.transport())


@pytest.fixture
def sandbox() -> FhirSandbox:
    return FhirSandbox(seed=3, patients=40)


@pytest.fixture
async def c(sandbox):
    connector = connect(sandbox)
    yield connector
    await connector.aclose()


async def every(c, request: SearchRequest) -> list[dict]:
    out, cursor = [], None
    while True:
        page = await c.search(request, cursor)
        out += page.resources
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


_UPSTREAM_IDS = st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True)


@settings(deadline=None)  # a shared machine: no time limit per example
@given(upstream_id=_UPSTREAM_IDS)
def test_an_upstream_id_comes_back_from_its_facade_id_or_is_refused_as_too_long(upstream_id):
    c = FhirUpstreamConnector("regional", client=None, base_url="http://up.test/fhir")
    try:
        fhir_id = c.fhir_id(upstream_id)
    except IdTooLong:
        return
    assert len(fhir_id) <= 64
    assert c.upstream_id("Patient", fhir_id) == upstream_id


async def test_another_facades_ids_keep_their_source_as_the_scope(c):
    assert c.fhir_id("hosp-a.9b2f6c1e-4d1a-4a9e-8f00-0c1d2e3f4a5b") == (
        "up.hosp-a.9b2f6c1e-4d1a-4a9e-8f00-0c1d2e3f4a5b"
    )
    with pytest.raises(ResourceNotFound):
        c.upstream_id("Patient", "other.hosp-a.x")


async def test_an_id_too_long_is_left_out_and_named(sandbox, c):
    long_id = "p" * 64
    sandbox.store["Patient"][long_id] = {
        "resourceType": "Patient",
        "id": long_id,
        "meta": {"versionId": "1"},
        "name": [{"family": "Zzlong"}],
    }
    page = await c.search(SearchRequest("Patient", (SearchParam("family", ("Zzlong",)),)))
    assert page.resources == [] and page.left_out == (long_id,)


async def test_references_are_facade_ids_and_others_keep_only_their_display(sandbox, c):
    first = next(iter(sandbox.store["Patient"]))
    sandbox.store["Patient"][first]["generalPractitioner"] = [
        {"reference": "https://elsewhere.example/Practitioner/7", "display": "Dr Far"},
        {"reference": "Practitioner/pr-2"},
    ]
    patient = await c.read("Patient", f"up.{first}")
    assert patient["meta"]["source"] == "up"
    assert patient["generalPractitioner"] == [
        {"display": "Dr Far"},
        {"reference": "Practitioner/up.pr-2"},
    ]
    assert patient["managingOrganization"] == {"reference": "Organization/up.1"}
    assert (await c.read("Practitioner", "up.pr-2"))["id"] == "up.pr-2"


async def test_declared_parameters_go_upstream_and_the_rest_is_matched_here(sandbox, c):
    patients = await every(c, SearchRequest("Patient", count=100))
    target = patients[4]
    family = target["name"][0]["family"]
    phone = next(t["value"] for t in target["telecom"] if t["system"] == "phone")
    params = (SearchParam("family", (family,)), SearchParam("phone", (phone,)))
    sandbox.queries.clear()
    found = await every(c, SearchRequest("Patient", params, count=10))
    expected = [p["id"] for p in patients if matches(p, params, c.zone)]
    assert [p["id"] for p in found] == expected and target["id"] in expected
    assert sandbox.queries[0] == f"family={family}&_count=100"  # phone is not the upstream's


async def test_paging_follows_the_upstreams_next_links(sandbox, c):
    sandbox.queries.clear()
    seen, cursor, cursors = [], None, []
    while True:
        page = await c.search(SearchRequest("Patient", count=7), cursor)
        seen += [p["id"] for p in page.resources]
        if page.next_cursor is None:
            break
        cursors.append(page.next_cursor)
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == 40
    assert len(cursors) == 5 and all("_page=" in x for x in cursors)
    assert len(sandbox.queries) == 6  # one upstream page per facade page: no re-reads


async def test_a_type_the_upstream_does_not_serve_is_empty_and_never_found(c):
    assert (await c.search(SearchRequest("Device"))).resources == []
    with pytest.raises(ResourceNotFound):
        await c.read("Device", "up.d-1")


async def test_a_patient_create_is_conditional_on_its_identifier(sandbox, c):
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:example:mrn", "value": "MRN-77"}],
        "name": [{"family": "Holm", "given": ["Ingrid"]}],
        "birthDate": "1984-05-06",
    }
    first = await c.create("Patient", body)
    again = await c.create("Patient", body)
    assert first.created is True and again.created is False
    assert first.resource == again.resource
    assert first.resource["id"].startswith("up.")
    assert sum(1 for call in sandbox.calls if call == ("POST", "Patient")) == 2
    assert (
        len(
            [
                p
                for p in sandbox.store["Patient"].values()
                if p.get("identifier") == body["identifier"]
            ]
        )
        == 1
    )


async def test_a_create_whose_answer_was_lost_is_looked_up_not_sent_twice(sandbox, c):
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:example:mrn", "value": "MRN-88"}],
        "name": [{"family": "Lund"}],
    }
    sandbox.lose_answers = 1
    written = await c.create("Patient", body)
    assert written.resource["name"] == [{"family": "Lund"}]
    assert sum(1 for call in sandbox.calls if call == ("POST", "Patient")) == 1


async def test_a_reference_to_another_source_is_refused_naming_the_element(c):
    body = {
        "resourceType": "Patient",
        "name": [{"family": "Roe"}],
        "generalPractitioner": [{"reference": "Practitioner/nyra-x.d-1"}],
    }
    with pytest.raises(WriteRefused) as info:
        await c.create("Patient", body)
    assert info.value.expression == "Patient.generalPractitioner[0].reference"


async def test_an_appointment_update_passes_if_match_through(sandbox, c):
    booked = next(a for a in sandbox.appointments if a["status"] == "booked")
    fhir_id = f"up.{booked['id']}"
    current = await c.read("Appointment", fhir_id)
    assert current["meta"]["versionId"] == "1"
    cancelled = {**current, "status": "cancelled"}
    written = await c.update("Appointment", fhir_id, cancelled, if_match="1")
    assert written.resource["status"] == "cancelled"
    assert written.resource["meta"]["versionId"] == "2"
    assert sandbox.if_match_seen == ['W/"1"']
    with pytest.raises(FhirError) as info:
        await c.update("Appointment", fhir_id, {**current, "status": "booked"}, if_match="1")
    assert info.value.status == 412
    assert sandbox.if_match_seen == ['W/"1"']  # refused before anything was sent
    assert sandbox.store["Appointment"][booked["id"]]["status"] == "cancelled"


def test_configuration_is_strict_and_names_the_key(sandbox):
    from adapter.connectors.base import ConnectorConfigError

    with pytest.raises(ConnectorConfigError) as info:
        connect(sandbox, auth={"type": "bearer", "tokn": "x"})
    assert "tokn" in str(info.value) and "'token'" in str(info.value)
    with pytest.raises(ConnectorConfigError) as info:
        connect(sandbox, types=["Patient", "Observation"])
    assert "Observation" in str(info.value)
    with pytest.raises(ConnectorConfigError) as info:
        connect(sandbox, auth={"type": "smart", "client_id": "facade"})
    assert "private_key" in str(info.value)


async def test_the_sources_rate_limit_is_its_budget(sandbox):
    c = connect(sandbox, rate_limit={"per_second": 5, "per_minute": 100})
    try:
        assert c.limits() == [(5, 1.0), (100, 60.0)]
    finally:
        await c.aclose()


async def test_types_narrow_what_the_source_declares(sandbox):
    c = connect(sandbox, types=["Patient", "Appointment"])
    try:
        assert sorted(c.capabilities.resources) == ["Appointment", "Patient"]
    finally:
        await c.aclose()


async def test_an_upstream_that_keeps_failing_opens_the_sources_circuit(sandbox):
    from adapter.transport import CircuitRefused, VendorUnavailable

    c = connect(sandbox, retry={"attempts": 1}, circuit={"failures": 2, "open_seconds": 600})
    try:
        await c.statement()
        sandbox.failures = 2
        for _ in range(2):
            with pytest.raises(VendorUnavailable):
                await c.search(SearchRequest("Patient"))
        assert c.health() == "circuit open"
        calls = len(sandbox.calls)
        with pytest.raises(CircuitRefused):
            await c.search(SearchRequest("Patient"))
        assert len(sandbox.calls) == calls  # refused here: the upstream is left alone
    finally:
        await c.aclose()


def _new_appointment(patient: str, start: str, end: str) -> dict:
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start,
        "end": end,
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/up.pr-3"}, "status": "accepted"},
        ],
    }


async def test_an_appointment_is_booked_with_upstream_references(sandbox, c):
    patient = f"up.{next(iter(sandbox.store['Patient']))}"
    body = _new_appointment(patient, "2027-03-01T09:00:00Z", "2027-03-01T09:30:00Z")
    written = await c.create("Appointment", body)
    made = written.resource
    assert written.created is True and made["id"].startswith("up.")
    assert [p["actor"]["reference"] for p in made["participant"]] == [
        f"Patient/{patient}",
        "Practitioner/up.pr-3",
    ]
    held = sandbox.store["Appointment"][c.upstream_id("Appointment", made["id"])]
    assert held["participant"][0]["actor"]["reference"] == f"Patient/{patient[3:]}"
    assert await c.read("Appointment", made["id"]) == made


async def test_a_retried_booking_finds_the_first_and_sends_nothing(sandbox, c):
    patient = f"up.{next(iter(sandbox.store['Patient']))}"
    body = _new_appointment(patient, "2027-03-02T09:00:00Z", "2027-03-02T09:30:00Z")
    sandbox.lose_answers = 1
    first = await c.create("Appointment", body)  # the answer was lost: looked up
    posts = sum(1 for call in sandbox.calls if call == ("POST", "Appointment"))
    again = await c.create("Appointment", body, look_first=True)
    assert again.resource == first.resource
    assert sum(1 for call in sandbox.calls if call == ("POST", "Appointment")) == posts == 1


async def test_an_update_whose_answer_was_lost_is_read_back(sandbox, c):
    booked = next(a for a in sandbox.appointments if a["status"] == "booked")
    fhir_id = f"up.{booked['id']}"
    current = await c.read("Appointment", fhir_id)
    sandbox.lose_answers = 1
    written = await c.update("Appointment", fhir_id, {**current, "status": "cancelled"})
    assert written.resource["status"] == "cancelled" and written.created is False
    assert sandbox.store["Appointment"][booked["id"]]["meta"]["versionId"] == "2"


async def test_a_count_of_nothing_gives_the_total_from_one_call(sandbox, c):
    sandbox.queries.clear()
    page = await c.search(SearchRequest("Patient", count=0))
    assert (page.resources, page.next_cursor, page.total) == ([], None, 40)
    assert sandbox.queries == ["_count=1"]
