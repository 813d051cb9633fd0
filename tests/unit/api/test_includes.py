"""``_include`` and ``_revinclude`` over HTTP, in-process against both sandboxes.

What a search includes is read (or, for ``_revinclude``, searched) after the page's own
calls, each resource once, within the request's vendor calls; a later page includes as the
first did, and the CapabilityStatement lists exactly the includes that work.

The includes of Practitioners, Locations, Devices and Schedules need connectors that
serve those types: their tests are skipped while the facade does not serve the type, and
run as soon as it does.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fhir_check import acheck_response
from harness import FAST

from adapter.app import create_app
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings

pytestmark = pytest.mark.anyio

LEYR, NYRA = "leyr-a", "nyra-b"
SOURCES = (LEYR, NYRA)
CONFIG = {
    LEYR: {"connector": "leyr", "timezone": "Europe/Stockholm", "emr": "webdoc"},
    NYRA: {"connector": "nyra", "timezone": "Asia/Kolkata"},
}
STRICT = {"prefer": "handling=strict"}


class Recording(httpx.AsyncBaseTransport):
    """A sandbox's transport that keeps the path of every request reaching the vendor."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def sandboxes() -> dict[str, LeyrSandbox | NyraSandbox]:
    return {
        LEYR: LeyrSandbox(seed=3, patients=30),
        NYRA: NyraSandbox(seed=3, patients=30, limits=FAST),
    }


class Service:
    """The app over fresh sandboxes; ``calls[source]`` records what reached each vendor."""

    def __init__(self, **limits: Any) -> None:
        self.sandboxes = sandboxes()
        sources = {
            name: {**config, **self.sandboxes[name].defaults(), "retry": {"attempts": 1}}
            for name, config in CONFIG.items()
        }
        self.calls = {name: Recording(sb.transport()) for name, sb in self.sandboxes.items()}
        settings = Settings(open_access=True, sources=sources, cursor_key=b"c" * 32, **limits)
        self.app = create_app(settings, transports=self.calls)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://fhir.test",
            event_hooks={"response": [acheck_response]},  # every body is valid R4
        )


# What the facade serves over these connectors, decided by their declarations.
SERVED = frozenset(Service().app.state.facade.declared.types)


def serves(*types: str) -> pytest.MarkDecorator:
    missing = sorted(set(types) - SERVED)
    return pytest.mark.skipif(
        bool(missing), reason=f"the connectors do not serve {', '.join(missing)} yet"
    )


@pytest.fixture
async def http():
    async with Service().client() as client:
        yield client


def entries(bundle: dict, mode: str) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def warnings(bundle: dict) -> list[dict]:
    """The outcome's issues but information (such as a wait for a vendor's budget)."""
    return [
        i for o in entries(bundle, "outcome") for i in o["issue"] if i["severity"] != "information"
    ]


def keys(resources: list[dict]) -> list[str]:
    return [f"{r['resourceType']}/{r['id']}" for r in resources]


def actors(appointments: list[dict], kind: str) -> set[str]:
    return {
        p["actor"]["reference"]
        for a in appointments
        for p in a.get("participant", [])
        if p.get("actor", {}).get("reference", "").startswith(f"{kind}/")
    }


def link(bundle: dict, relation: str) -> str | None:
    return next((x["url"] for x in bundle["link"] if x["relation"] == relation), None)


def query_of(bundle: dict, relation: str = "self") -> list[tuple[str, str]]:
    url = link(bundle, relation)
    assert url is not None
    return parse_qsl(urlsplit(url).query)


async def search(http: httpx.AsyncClient, resource_type: str, params: Any, **kw: Any) -> dict:
    r = await http.get(f"/fhir/{resource_type}", params=params, **kw)
    assert r.status_code == 200, r.text
    return r.json()


async def referencing(http: httpx.AsyncClient, source: str, param: str, ref: str) -> set[str]:
    """The oracle of a revinclude: the Appointments a search by ``param`` finds."""
    bundle = await search(http, "Appointment", {param: ref, "_source": source, "_count": "100"})
    assert link(bundle, "next") is None
    return set(keys(entries(bundle, "match")))


# -- _include -----------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
async def test_include_patient_adds_each_referenced_patient_once(http, source):
    page = {"_source": source, "_count": "8", "_include": "Appointment:patient"}
    bundle = await search(http, "Appointment", page)
    matches, included = entries(bundle, "match"), entries(bundle, "include")
    assert len(matches) == 8
    assert Counter(keys(included)) == Counter(actors(matches, "Patient"))  # each once
    assert all(r["meta"]["source"] == source for r in included)
    # the included resources are those a read gives
    first = included[0]
    read = (await http.get(f"/fhir/Patient/{first['id']}")).json()
    assert read == first
    assert ("_include", "Appointment:patient") in query_of(bundle)


@pytest.mark.parametrize("source", SOURCES)
async def test_a_typed_actor_include_keeps_only_that_type(http, source):
    page = {"_source": source, "_count": "8", "_include": "Appointment:actor:Patient"}
    bundle = await search(http, "Appointment", page)
    matches, included = entries(bundle, "match"), entries(bundle, "include")
    assert {r["resourceType"] for r in included} == {"Patient"}
    assert set(keys(included)) == actors(matches, "Patient")


async def test_an_include_needing_more_reads_than_are_left_is_refused_before_reading():
    # The page takes the one call a request may make; its patients would take another
    # (one listing of the hospital's patients, cheaper than a read each).
    service = Service(max_vendor_calls=1)
    async with service.client() as http:
        page = {"_source": NYRA, "_count": "20", "_include": "Appointment:actor:Patient"}
        r = await http.get("/fhir/Appointment", params=page)
        assert r.status_code == 400
        (issue,) = r.json()["issue"]
        assert issue["code"] == "too-costly" and issue["expression"] == ["_include"]
        assert "max_vendor_calls" in issue["diagnostics"]
        assert "needs 1 vendor call after" in issue["diagnostics"]
        assert not [p for p in service.calls[NYRA].paths if "/patients/" in p]


# -- _revinclude --------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
async def test_revinclude_adds_the_appointments_of_each_patient(http, source):
    page = {"_source": source, "_count": "4", "_revinclude": "Appointment:patient"}
    bundle = await search(http, "Patient", page)
    matches, included = entries(bundle, "match"), entries(bundle, "include")
    assert len(matches) == 4 and not warnings(bundle)
    wanted: set[str] = set()
    for patient in matches:
        wanted |= await referencing(http, source, "patient", f"Patient/{patient['id']}")
    assert wanted  # the sandboxes' patients have appointments
    assert Counter(keys(included)) == Counter(wanted)  # each once
    assert ("_revinclude", "Appointment:patient") in query_of(bundle)


async def test_revinclude_is_cut_at_max_count_with_a_warning_saying_how_to_get_all():
    async with Service().client() as http:
        bundle = await search(http, "Appointment", {"_source": LEYR, "_count": "100"})
        counts = Counter(ref for a in entries(bundle, "match") for ref in actors([a], "Patient"))
        busy, appointments = counts.most_common(1)[0]
        assert appointments > 2
    async with Service(max_count=2, default_count=2).client() as http:
        patient_id = busy.split("/", 1)[1]
        page = {"_id": patient_id, "_revinclude": "Appointment:patient"}
        bundle = await search(http, "Patient", page)
        included = entries(bundle, "include")
        assert len(included) == 2
        assert all(busy in actors([a], "Patient") for a in included)
        (issue,) = warnings(bundle)
        assert issue["severity"] == "warning" and issue["expression"] == ["_revinclude"]
        assert f"Appointment?patient={busy}" in issue["diagnostics"]


@pytest.mark.parametrize("source", SOURCES)
async def test_a_revinclude_needing_more_calls_than_are_left_is_refused_before_searching(source):
    # 10 calls: the page's own fit (Leyr's first also lists its directory), ten searches
    # after them do not.
    service = Service(max_vendor_calls=10)
    async with service.client() as http:
        page = {"_source": source, "_count": "10", "_revinclude": "Appointment:patient"}
        r = await http.get("/fhir/Patient", params=page)
        assert r.status_code == 400
        (issue,) = r.json()["issue"]
        assert issue["code"] == "too-costly" and issue["expression"] == ["_revinclude"]
        assert "max_vendor_calls" in issue["diagnostics"] and "10" in issue["diagnostics"]
        assert not [p for p in service.calls[source].paths if "appointment" in p]
        # a page whose matches fit is served with their appointments
        bundle = await search(http, "Patient", {**page, "_count": "2"})
        assert entries(bundle, "include")


# -- paging and links ---------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
async def test_a_later_page_includes_as_the_first_did(http, source):
    first = await search(
        http,
        "Appointment",
        {"_source": source, "_count": "3", "_include": "Appointment:patient"},
    )
    second = (await http.get(link(first, "next"))).json()
    matches = entries(second, "match")
    assert matches and set(keys(entries(second, "include"))) == actors(matches, "Patient")

    first = await search(
        http, "Patient", {"_source": source, "_count": "2", "_revinclude": "Appointment:patient"}
    )
    second = (await http.get(link(first, "next"))).json()
    wanted: set[str] = set()
    for patient in entries(second, "match"):
        wanted |= await referencing(http, source, "patient", f"Patient/{patient['id']}")
    assert set(keys(entries(second, "include"))) == wanted
    assert not set(keys(entries(second, "include"))) & set(keys(entries(first, "include")))


async def test_the_self_link_echoes_includes_and_leaves_out_what_is_not_taken(http):
    bundle = await search(
        http,
        "Appointment",
        [
            ("_include", "Appointment:patient"),
            ("_include:iterate", "Appointment:patient"),
            ("_include", "Appointment:slot"),
            ("_revinclude", "Appointment:patient"),  # not on an Appointment search
            ("_count", "3"),
        ],
    )
    assert query_of(bundle) == [("_include", "Appointment:patient"), ("_count", "3")]
    assert entries(bundle, "include")
    bundle = await search(http, "Patient", {"_revinclude": "Appointment:patient", "_count": "2"})
    assert query_of(bundle) == [("_revinclude", "Appointment:patient"), ("_count", "2")]


@pytest.mark.parametrize(
    ("resource_type", "key", "value"),
    [
        ("Appointment", "_include:iterate", "Appointment:patient"),
        ("Appointment", "_include", "Appointment:slot"),
        ("Patient", "_revinclude:iterate", "Appointment:patient"),
        ("Patient", "_revinclude", "Appointment:actor"),
    ],
)
async def test_strict_handling_refuses_includes_not_taken(http, resource_type, key, value):
    r = await http.get(f"/fhir/{resource_type}", params={key: value}, headers=STRICT)
    assert r.status_code == 400
    (issue,) = r.json()["issue"]
    assert issue["code"] == "not-supported" and issue["expression"] == [key]


# -- the CapabilityStatement --------------------------------------------------------------


def expected_includes() -> dict[str, set[str]]:
    """What each type's ``searchInclude`` must list, from the types the facade serves."""
    out: dict[str, set[str]] = {}
    actor_types = [t for t in ("Patient", "Practitioner", "Device", "Location") if t in SERVED]
    appointment = {"Appointment:actor", *(f"Appointment:actor:{t}" for t in actor_types)}
    for param, target in (
        ("patient", "Patient"),
        ("practitioner", "Practitioner"),
        ("location", "Location"),
    ):
        if target in SERVED:
            appointment.add(f"Appointment:{param}")
    out["Appointment"] = appointment
    if "Schedule" in SERVED:
        out["Slot"] = {"Slot:schedule"}
    schedule_actors = [t for t in ("Practitioner", "Device") if t in SERVED]
    if schedule_actors and "Schedule" in SERVED:
        out["Schedule"] = {"Schedule:actor", *(f"Schedule:actor:{t}" for t in schedule_actors)}
    return out


async def test_the_capability_statement_lists_exactly_the_includes_that_work(http):
    statement = (await http.get("/fhir/metadata")).json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    expected = expected_includes()
    for resource_type, resource in resources.items():
        assert set(resource.get("searchInclude", ())) == expected.get(resource_type, set())
    assert resources["Patient"]["searchRevInclude"] == ["Appointment:patient"]
    if "Practitioner" in SERVED:
        assert resources["Practitioner"]["searchRevInclude"] == ["Appointment:practitioner"]
    assert {t for t, r in resources.items() if "searchRevInclude" in r} <= {
        "Patient",
        "Practitioner",
    }
    # each one listed is taken, under strict handling too
    for include in resources["Appointment"]["searchInclude"]:
        await search(
            http,
            "Appointment",
            {"_include": include, "_count": "2", "_source": NYRA},
            headers=STRICT,
        )
    await search(
        http, "Patient", {"_revinclude": "Appointment:patient", "_count": "2"}, headers=STRICT
    )


# -- Practitioners, Locations, Devices, Schedules (run once the connectors serve them) ------


@serves("Practitioner")
@pytest.mark.parametrize("source", SOURCES)
async def test_include_practitioner(http, source):
    page = {"_source": source, "_count": "8", "_include": "Appointment:practitioner"}
    bundle = await search(http, "Appointment", page)
    matches, included = entries(bundle, "match"), entries(bundle, "include")
    assert {r["resourceType"] for r in included} == {"Practitioner"}
    assert Counter(keys(included)) == Counter(actors(matches, "Practitioner"))


@serves("Location")
@pytest.mark.parametrize("source", SOURCES)
async def test_include_location(http, source):
    page = {"_source": source, "_count": "8", "_include": "Appointment:location"}
    bundle = await search(http, "Appointment", page)
    matches, included = entries(bundle, "match"), entries(bundle, "include")
    assert actors(matches, "Location")
    assert Counter(keys(included)) == Counter(actors(matches, "Location"))


@serves("Practitioner", "Location")
@pytest.mark.parametrize("source", SOURCES)
async def test_include_every_actor(http, source):
    page = {"_source": source, "_count": "5", "_include": "Appointment:actor"}
    bundle = await search(http, "Appointment", page)
    matches, included = entries(bundle, "match"), entries(bundle, "include")
    wanted = set().union(
        *(actors(matches, t) for t in ("Patient", "Practitioner", "Device", "Location"))
    )
    assert Counter(keys(included)) == Counter(wanted)
    assert not warnings(bundle)


@serves("Practitioner")
@pytest.mark.parametrize("source", SOURCES)
async def test_revinclude_adds_the_appointments_of_each_practitioner(http, source):
    page = {"_source": source, "_count": "2", "_revinclude": "Appointment:practitioner"}
    bundle = await search(http, "Practitioner", page)
    matches, included = entries(bundle, "match"), entries(bundle, "include")
    wanted: set[str] = set()
    for practitioner in matches:
        ref = f"Practitioner/{practitioner['id']}"
        wanted |= await referencing(http, source, "practitioner", ref)
    assert Counter(keys(included)) == Counter(wanted)


@serves("Schedule", "Practitioner")
@pytest.mark.parametrize("source", SOURCES)
async def test_include_schedule_actor(http, source):
    page = {"_source": source, "_count": "3", "_include": "Schedule:actor"}
    bundle = await search(http, "Schedule", page)
    matches, included = entries(bundle, "match"), entries(bundle, "include")
    wanted = {a["reference"] for s in matches for a in s["actor"]}
    assert wanted and set(keys(included)) == wanted


def weekday_ahead(days: int) -> date:
    day = date.today() + timedelta(days=days)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


@serves("Schedule")
@pytest.mark.parametrize("source", SOURCES)
async def test_include_slot_schedule(http, source):
    appointments = await search(http, "Appointment", {"_source": source, "_count": "5"})
    practitioner = sorted(actors(entries(appointments, "match"), "Practitioner"))[0]
    day = weekday_ahead(2)
    bundle = await search(
        http,
        "Slot",
        [
            ("schedule.actor", practitioner),
            ("start", f"ge{day}"),
            ("start", f"lt{day + timedelta(days=1)}"),
            ("_include", "Slot:schedule"),
        ],
    )
    slots, included = entries(bundle, "match"), entries(bundle, "include")
    assert slots
    assert keys(included) == sorted({s["schedule"]["reference"] for s in slots})
    assert included[0]["actor"][0]["reference"] == practitioner
