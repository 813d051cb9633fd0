"""Every registered connector, run against its vendor's sandbox: one suite for all.

What a connector must do whatever the vendor: read by id, search (natively where it can,
filtering afterwards only where that stays exact), page to the end without repeats,
say "not found" for ids it does not hold, and fail with typed errors for rejected
credentials, missing permissions and parameters it cannot honour. Every resource it
returns is valid FHIR R4 (R4B models).
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.patient import Patient
from harness import HARNESSES, connect, source_config

from adapter.connectors.base import Connector, ResourceNotFound, WriteNotSupported, iterate
from adapter.connectors.registry import available
from adapter.fhir.match import matches
from adapter.fhir.search import SearchParam, SearchRequest, UnsupportedParameter
from adapter.sandbox import NyraSandbox
from adapter.transport import AuthenticationRejected, PermissionMissing
from mappings import decode_id, encode_id
from mappings.common.time import zone

pytestmark = pytest.mark.anyio

PATIENTS = 130  # more than one vendor page of 100, not a multiple of the page sizes used
MODELS = {"Patient": Patient, "Appointment": Appointment}


def test_every_registered_connector_has_a_harness():
    """A connector installed through the entry point is held to this suite: one with no
    sandbox harness to run it against fails here, rather than being passed over."""
    assert sorted(available()) == sorted(HARNESSES)


@pytest.fixture(params=sorted(set(available()) & set(HARNESSES)))
def name(request) -> str:
    return request.param


@pytest.fixture
def sandbox(name):
    return HARNESSES[name].make(11, PATIENTS)


@pytest.fixture
async def connector(name, sandbox):
    c = connect(name, sandbox)
    yield c
    await c.aclose()
    if isinstance(sandbox, NyraSandbox):
        assert sandbox.limited_total() == 0, "the connector went over a rate limit"


async def everything(c: Connector, resource_type: str, *params: SearchParam, count=20) -> list:
    request = SearchRequest(resource_type, tuple(params), count=count)
    return [r async for r in iterate(c, request)]


async def paged(c: Connector, request: SearchRequest) -> list:
    """Page through ``request`` by hand as the facade does: a page of ``count`` at a time."""
    out, cursor, seen = [], None, set()
    while True:
        page = await c.search(request, cursor)
        assert len(page.resources) <= request.count
        out.extend(page.resources)
        if page.next_cursor is None:
            return out
        assert page.next_cursor not in seen, "a cursor came back twice"
        seen.add(page.next_cursor)
        cursor = page.next_cursor


async def test_is_a_connector_with_declared_capabilities(connector):
    assert isinstance(connector, Connector)
    assert {"Patient", "Appointment"} <= set(connector.capabilities.resources)
    for resource_type in ("Patient", "Appointment"):
        cap = connector.capabilities.resources[resource_type]
        assert "_id" in cap.search_params
        assert {"read", "search-type"} <= cap.interactions


async def test_writes_not_declared_are_refused_typed(connector):
    for resource_type, cap in connector.capabilities.resources.items():
        if "create" not in cap.interactions:
            with pytest.raises(WriteNotSupported):
                await connector.create(resource_type, {"resourceType": resource_type})
        if "update" not in cap.interactions:
            with pytest.raises(WriteNotSupported):
                await connector.update(resource_type, "x", {"resourceType": resource_type})


@pytest.mark.parametrize("resource_type", ["Patient", "Appointment"])
@pytest.mark.parametrize("count", [7, 20, 100])
async def test_paging_reaches_the_end_without_repeats(connector, sandbox, resource_type, count):
    found = await paged(connector, SearchRequest(resource_type, count=count))
    ids = [r["id"] for r in found]
    assert len(ids) == len(set(ids)), "a resource was served twice"
    held = PATIENTS if resource_type == "Patient" else _appointments_held(sandbox)
    assert len(ids) == held


def _appointments_held(sandbox) -> int:
    table = sandbox.appointments
    return sum(len(t) for t in table.values()) if isinstance(table, dict) else len(table)


async def test_first_page_reports_exact_total_or_none(connector):
    page = await connector.search(SearchRequest("Patient", count=5))
    assert len(page.resources) == 5
    assert page.total in (None, PATIENTS)


@pytest.mark.parametrize("resource_type", ["Patient", "Appointment"])
async def test_read_gives_what_search_gave(connector, resource_type):
    found = await everything(connector, resource_type)
    for resource in found[:: max(1, len(found) // 12)]:
        assert await connector.read(resource_type, resource["id"]) == resource


@pytest.mark.parametrize("resource_type", ["Patient", "Appointment"])
async def test_every_resource_is_valid_r4(connector, resource_type):
    for resource in await everything(connector, resource_type, count=100):
        MODELS[resource_type].model_validate(resource)
        assert resource["meta"]["source"] == connector.source


async def test_unknown_ids_are_not_found(connector):
    patient = (await everything(connector, "Patient"))[0]
    # Same source and scope, a vendor id nobody holds; another source; not an id at all.
    real = patient["id"]
    gid = decode_id(real)
    missing = encode_id(gid.source, "no-such-record", gid.scope)
    for fhir_id in (missing, encode_id("elsewhere", "x1"), "!!", real + "-x"):
        with pytest.raises(ResourceNotFound):
            await connector.read("Patient", fhir_id)
    with pytest.raises(ResourceNotFound):
        await connector.read("Observation", real)


def _searches(patients: list, appointments: list, tz) -> list[tuple[str, tuple[SearchParam, ...]]]:
    p = patients[7]
    family = p["name"][0]["family"]
    given = p["name"][0]["given"][0]
    phone = next(t["value"] for t in p["telecom"] if t["system"] == "phone")
    a = next(x for x in appointments if x["status"] == "booked")
    patient_ref = next(
        x["actor"]["reference"]
        for x in a["participant"]
        if "Patient/" in x["actor"].get("reference", "")
    )
    doctor_ref = next(
        x["actor"]["reference"]
        for x in a["participant"]
        if "Practitioner/" in x["actor"].get("reference", "")
    )
    day = date.fromisoformat(a["start"][:10])
    return [
        ("Patient", (SearchParam("name", (family[:3].lower(),)),)),
        ("Patient", (SearchParam("family", (family,), "exact"),)),
        ("Patient", (SearchParam("given", (given,)), SearchParam("gender", ("female",)))),
        ("Patient", (SearchParam("birthdate", ("1970",), prefix="ge"),)),
        ("Patient", (SearchParam("phone", (phone,)),)),
        ("Patient", (SearchParam("_id", (p["id"], patients[9]["id"])),)),
        ("Patient", (SearchParam("identifier", (_identifier(p),)),)),
        ("Patient", (SearchParam("active", ("false",)),)),
        ("Appointment", (SearchParam("patient", (patient_ref,)),)),
        ("Appointment", (SearchParam("practitioner", (doctor_ref,)),)),
        ("Appointment", (SearchParam("status", ("booked",)),)),
        (
            "Appointment",
            (
                SearchParam("date", (day.isoformat(),), prefix="ge"),
                SearchParam("date", ((day + timedelta(days=30)).isoformat(),), prefix="lt"),
            ),
        ),
        (
            "Appointment",
            (SearchParam("patient", (patient_ref,)), SearchParam("date", (day.isoformat(),))),
        ),
    ]


def _identifier(patient: dict) -> str:
    if not patient.get("identifier"):
        return "urn:example:none|none"
    ident = patient["identifier"][-1]
    return f"{ident['system']}|{ident['value']}"


def _declares(connector, resource_type: str, param: str) -> bool:
    cap = connector.capabilities.resources.get(resource_type)
    return cap is not None and param in cap.search_params


async def test_searches_find_exactly_the_matches(connector):
    tz = zone(connector.ctx.timezone)
    patients = await everything(connector, "Patient", count=100)
    appointments = await everything(connector, "Appointment", count=100)
    every = {"Patient": patients, "Appointment": appointments}
    tried = Counter()
    for resource_type, params in _searches(patients, appointments, tz):
        if not all(_declares(connector, resource_type, p.name) for p in params):
            continue
        expected = [r["id"] for r in every[resource_type] if matches(r, params, tz)]
        got = [
            r["id"] for r in await paged(connector, SearchRequest(resource_type, params, count=6))
        ]
        assert sorted(got) == sorted(expected), (resource_type, [str(p) for p in params])
        assert len(got) == len(set(got))
        tried[resource_type] += 1
    assert tried["Patient"] >= 5 and tried["Appointment"] >= 4


async def test_a_search_narrowed_to_nothing_is_empty(connector):
    other = f"Patient/{encode_id('elsewhere', 'p-1')}"
    page = await connector.search(SearchRequest("Appointment", (SearchParam("patient", (other,)),)))
    assert page.resources == [] and page.next_cursor is None


@pytest.mark.parametrize(
    "resource_type,param",
    [("Patient", "address-city"), ("Patient", "general-practitioner"), ("Appointment", "location")],
)
async def test_an_undeclared_parameter_is_refused_not_ignored(connector, resource_type, param):
    assert not _declares(connector, resource_type, param)
    request = SearchRequest(resource_type, (SearchParam(param, ("x",)),))
    with pytest.raises(UnsupportedParameter) as info:
        await connector.search(request)
    assert info.value.parameter == param


async def test_bad_credentials_are_an_authentication_error(name, sandbox):
    spoiled = HARNESSES[name].spoil_credentials(source_config(name, sandbox))
    c = connect(name, sandbox, spoiled, source="spoiled-src")
    try:
        with pytest.raises(AuthenticationRejected) as info:
            await c.search(SearchRequest("Patient"))
        assert "spoiled-src" in str(info.value)
        assert "not-the-secret" not in str(info.value)
        assert "rotated" in str(info.value)
    finally:
        await c.aclose()


@pytest.mark.parametrize("resource_type", ["Patient", "Appointment"])
async def test_a_missing_permission_is_named(name, sandbox, resource_type):
    harness = HARNESSES[name]
    if harness.without_permission is None:
        pytest.skip(f"{name}: the vendor has no per-key permissions")
    permission = harness.read_permission[resource_type]
    config = harness.without_permission(sandbox, source_config(name, sandbox), permission)
    c = connect(name, sandbox, config)
    try:
        with pytest.raises(PermissionMissing) as info:
            await c.search(SearchRequest(resource_type))
        assert info.value.permission == permission
        assert permission in str(info.value)
    finally:
        await c.aclose()


async def test_a_created_patient_reads_back_as_written(connector):
    cap = connector.capabilities.resources["Patient"]
    if "create" not in cap.interactions:
        pytest.skip("this connector takes no new patients")
    body = {
        "resourceType": "Patient",
        "name": [{"given": ["Ingrid"], "family": "Holm"}],
        "telecom": [{"system": "phone", "value": "+919811100011"}],
        "gender": "female",
        "birthDate": "1984-05-06",
    }
    written = await connector.create("Patient", body)
    made = written.resource
    Patient.model_validate(made)
    assert made["meta"]["source"] == connector.source
    assert (made["name"][0]["family"], made["birthDate"], made["gender"]) == (
        "Holm",
        "1984-05-06",
        "female",
    )
    assert await connector.read("Patient", made["id"]) == made
    found = await everything(connector, "Patient", SearchParam("family", ("Holm",), "exact"))
    assert made["id"] in {p["id"] for p in found}
