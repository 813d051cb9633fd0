"""The facade as a FHIR client sees it: fhirpy over real HTTP to uvicorn on loopback."""

from __future__ import annotations

from datetime import date, timedelta

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir_check import check_response, validate
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome as OutcomeError
from fhirpy.base.exceptions import ResourceNotFound
from harness import FAST
from serving import on_a_port

from adapter.app import create_app
from adapter.settings import Settings

SOURCES = {
    "leyr-test": {
        "connector": "leyr",
        "emr": "webdoc",
        "timezone": "Europe/Stockholm",
        "sandbox": {"seed": 3, "patients": 45},
    },
    "nyra-test": {
        "connector": "nyra",
        "timezone": "Asia/Kolkata",
        "sandbox": {"seed": 3, "patients": 55, "rate_limit": FAST.__dict__},
    },
}


@pytest.fixture(scope="module")
def server():
    settings = Settings(open_access=True, sources=SOURCES, cursor_key=b"k" * 32)
    with on_a_port(create_app(settings)) as base:
        yield f"{base}/fhir"


@pytest.fixture(scope="module")
def client(server):
    return SyncFHIRClient(server)


@pytest.fixture(scope="module")
def http(server):
    hooks = {"response": [check_response]}  # every answer validates as R4
    with httpx.Client(base_url=server, timeout=30, event_hooks=hooks) as c:
        yield c


def test_capability_statement_is_r4_and_lists_what_works(http):
    r = http.get("/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"
    statement = CapabilityStatement.model_validate(r.json())
    assert statement.fhirVersion == "4.0.1"
    resources = {res.type: res for res in statement.rest[0].resource}
    directory = {"Practitioner", "Device", "Location", "Organization", "HealthcareService"}
    assert (
        set(resources)
        == {
            "Patient",
            "Appointment",
            "Slot",
            "Schedule",
            "ConceptMap",
            "Group",
            "Subscription",
            "Basic",
        }
        | directory
    )
    assert [i.code for i in resources["Subscription"].interaction] == [
        "create",
        "delete",
        "read",
        "search-type",
        "update",
    ]
    assert [i.code for i in resources["Slot"].interaction] == ["read", "search-type"]
    assert [i.code for i in resources["Practitioner"].interaction] == ["read", "search-type"]
    patient_params = {p.name for p in resources["Patient"].searchParam}
    assert {"name", "birthdate", "identifier", "_source"} <= patient_params
    assert {
        "Appointment:patient",
        "Appointment:practitioner",
        "Appointment:location",
        "Appointment:actor",
    } <= set(resources["Appointment"].searchInclude)
    assert resources["Slot"].searchInclude == ["Slot:schedule"]
    assert resources["Patient"].searchRevInclude == ["Appointment:patient"]
    assert resources["Practitioner"].searchRevInclude == ["Appointment:practitioner"]
    active = next(p for p in resources["Patient"].searchParam if p.name == "active")
    assert "Not every source" in active.documentation  # taken by one source only, and says so


@pytest.mark.parametrize("source,held", [("leyr-test", 45), ("nyra-test", 55)])
def test_paging_through_every_patient_of_a_source(client, source, held):
    search = client.resources("Patient").search(_source=source).limit(8)
    assert search.count() == held
    everyone = search.fetch_all()
    for patient in everyone:
        validate(patient.serialize())
    ids = [p.id for p in everyone]
    assert len(ids) == held == len(set(ids))
    assert {p["meta"]["source"] for p in everyone} == {source}


def test_paging_across_both_sources(client, http):
    everyone = client.resources("Patient").limit(7).fetch_all()
    assert len(everyone) == 100 == len({p.id for p in everyone})
    first = http.get("/Patient", params={"_count": "7"}).json()
    Bundle.model_validate(first)
    assert first["total"] == 100


@pytest.mark.parametrize("source", ["leyr-test", "nyra-test"])
def test_sort_and_elements_as_fhirpy_sends_them(client, source):
    """fhirpy's .sort() and .elements(): one page of a source, sorted whole and subset."""
    search = client.resources("Patient").search(_source=source).limit(100)
    sorted_page = search.sort("-birthdate").elements("birthDate", "gender").fetch()
    births = [p.get("birthDate") for p in sorted_page]
    present = [b for b in births if b]
    assert len(sorted_page) > 40 and births[: len(present)] == present
    assert present == sorted(present, reverse=True)  # full dates in the sandboxes
    for patient in sorted_page:
        validate(patient.serialize())
        assert set(patient.serialize()) <= {"resourceType", "id", "meta", "birthDate", "gender"}
        assert patient["meta"]["tag"][-1]["code"] == "SUBSETTED"


def test_read_by_id(client):
    patient = client.resources("Patient").search(_source="nyra-test").first()
    again = client.reference("Patient", patient.id).to_resource()
    assert again.serialize() == patient.serialize()


def test_appointments_by_patient_and_date_range(client, http):
    appointments = client.resources("Appointment").search(_source="leyr-test").fetch_all()
    some = appointments[3]
    patient_ref = next(
        p["actor"]["reference"]
        for p in some["participant"]
        if "Patient/" in p["actor"]["reference"]
    )
    day = date.fromisoformat(some["start"][:10])
    found = (
        client.resources("Appointment")
        .search(patient=patient_ref, date__ge=day.isoformat())
        .search(date__lt=(day + timedelta(days=1)).isoformat())
        .fetch_all()
    )
    assert some.id in {a.id for a in found}
    for a in found:
        validate(a.serialize())
        assert a["start"][:10] == day.isoformat()
        assert patient_ref in {p["actor"]["reference"] for p in a["participant"]}


def test_include_patient(http):
    bundle = http.get(
        "/Appointment",
        params={"_source": "nyra-test", "_include": "Appointment:patient", "_count": "10"},
    ).json()
    Bundle.model_validate(bundle)
    matches = [e for e in bundle["entry"] if e["search"]["mode"] == "match"]
    included = {e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"}
    assert len(matches) == 10 and included
    wanted = {
        p["actor"]["reference"].split("/")[1]
        for e in matches
        for p in e["resource"]["participant"]
        if p["actor"]["reference"].startswith("Patient/")
    }
    assert included == wanted
    for e in bundle["entry"]:
        if e["search"]["mode"] == "outcome":  # a word that the page waited for the budget
            assert {i["severity"] for i in e["resource"]["issue"]} == {"information"}
            continue
        assert e["fullUrl"].endswith(f"/{e['resource']['resourceType']}/{e['resource']['id']}")


def test_every_bundle_page_is_r4(http):
    url = "/Appointment?_count=50"
    pages = 0
    while url:
        bundle = http.get(url).json()
        Bundle.model_validate(bundle)
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        pages += 1
    assert pages > 3


def test_errors_are_operation_outcomes(client, http):
    with pytest.raises(ResourceNotFound):
        client.reference("Patient", "nyra-test.no-such-id").to_resource()
    with pytest.raises(OutcomeError):
        client.resources("Patient").search(birthdate="yesterday").fetch()
    for path, status in [
        ("/Patient/nyra-test.no-such-id", 404),
        ("/Observation", 404),
        ("/Patient?birthdate=yesterday", 400),
        ("/Patient?_format=xml", 406),
        ("/Patient?_cursor=forged.cursor", 400),
    ]:
        r = http.get(path)
        assert r.status_code == status, path
        OperationOutcome.model_validate(r.json())
