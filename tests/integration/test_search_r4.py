"""Search answers as R4 defines them (https://hl7.org/fhir/R4/search.html), through the
facade over both sandboxes (:mod:`search_world`: fixed data and clocks).

- tokens on ``code`` elements carry the element's implicit system;
- fractions of a second in a date search value, on ``instant`` elements;
- ``ge`` and ``le`` as ``gt`` or ``eq`` and ``lt`` or ``eq``, a time against a date;
- strings compared without punctuation and repeated whitespace;
- ORed dates with different prefixes;
- ``_lastUpdated`` without a zone, read in the source's zone;
- ``meta.lastUpdated`` in plain search results, as a read gives it;
- ``_source:below``, the ``self`` link of a count, ``_total=estimate``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fhir_check import validate
from search_world import ANCHOR, LEYR, NYRA, ZONES, search_world

pytestmark = pytest.mark.anyio

SOURCES = (LEYR, NYRA)
GENDER = "http://hl7.org/fhir/administrative-gender"
APPOINTMENT_STATUS = "http://hl7.org/fhir/appointmentstatus"
SLOT_STATUS = "http://hl7.org/fhir/slotstatus"


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
async def world(tmp_path_factory):
    async with search_world(tmp_path_factory.mktemp("search-r4")) as made:
        yield made


async def _bundle(http: httpx.AsyncClient, url: str, params: Any = None) -> dict[str, Any]:
    response = await http.get(url, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    validate(body)
    return body


def _matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


async def _all(
    http: httpx.AsyncClient, resource_type: str, params: Any, count: int = 100
) -> list[dict[str, Any]]:
    """Every match of a search, page after page."""
    bundle = await _bundle(http, f"/fhir/{resource_type}", [*params, ("_count", str(count))])
    out = _matches(bundle)
    while following := next((x["url"] for x in bundle["link"] if x["relation"] == "next"), None):
        bundle = await _bundle(http, following)
        out += _matches(bundle)
    return out


async def _ids(http: httpx.AsyncClient, resource_type: str, *params: tuple[str, str]) -> set[str]:
    found = await _all(http, resource_type, list(params))
    ids = [r["id"] for r in found]
    assert len(ids) == len(set(ids)), "a match was given twice"
    return set(ids)


async def _one(http: httpx.AsyncClient, resource_type: str, source: str, **where: Any) -> Any:
    """The first of ``source``'s ``resource_type`` records whose elements hold ``where``."""
    for resource in await _all(http, resource_type, [("_source", source)]):
        if all(resource.get(k) == v for k, v in where.items()):
            return resource
    raise AssertionError(f"no {resource_type} at {source} with {where}")


async def _doctor_and_slots(http: httpx.AsyncClient, source: str) -> tuple[str, list[Any]]:
    """A practitioner of ``source`` with free time in the week after the anchor, and
    that free time as Slots."""
    window = [("start", f"ge{ANCHOR + timedelta(days=1)}"), ("start", f"lt{ANCHOR + timedelta(8)}")]
    for doctor in await _all(http, "Practitioner", [("_source", source)]):
        actor = f"Practitioner/{doctor['id']}"
        slots = await _all(http, "Slot", [("schedule.actor", actor), *window])
        if slots:
            return actor, slots
    raise AssertionError(f"no free time at {source}")


# -- 1. tokens on code elements ---------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
async def test_gender_with_its_system_is_the_gender(world, source):
    http = world.http
    where = ("_source", source)
    female = await _ids(http, "Patient", where, ("gender", "female"))
    assert female
    assert await _ids(http, "Patient", where, ("gender", f"{GENDER}|female")) == female
    every = await _ids(http, "Patient", where, ("gender", "male,female,other,unknown"))
    assert await _ids(http, "Patient", where, ("gender", f"{GENDER}|")) == every
    # |code asks for a code without a system: a code element always has its value set's
    assert await _ids(http, "Patient", where, ("gender", "|male")) == set()
    assert await _ids(http, "Patient", where, ("gender", "urn:other|female")) == set()


@pytest.mark.parametrize("source", SOURCES)
async def test_a_patient_or_practitioner_reference_of_another_type_finds_nothing(world, source):
    """``patient`` holds only Patients and ``practitioner`` only Practitioners: a
    Location's (or a Practitioner's, for ``patient``) reference finds no Appointment, at a
    source that filters by it as at one that matches in memory."""
    http = world.http
    where = ("_source", source)
    booked = [a for a in await _all(http, "Appointment", [where]) if a.get("participant")]
    actors = {
        ref.partition("/")[0]: ref
        for a in booked
        for ref in (p.get("actor", {}).get("reference", "") for p in a["participant"])
    }
    assert {"Patient", "Practitioner", "Location"} <= set(actors), actors
    assert await _ids(http, "Appointment", where, ("patient", actors["Patient"]))
    assert await _ids(http, "Appointment", where, ("patient", actors["Location"])) == set()
    assert await _ids(http, "Appointment", where, ("patient", actors["Practitioner"])) == set()
    assert await _ids(http, "Appointment", where, ("practitioner", actors["Patient"])) == set()


@pytest.mark.parametrize("source", SOURCES)
async def test_appointment_status_with_its_system_is_the_status(world, source):
    http = world.http
    where = ("_source", source)
    cancelled = await _ids(http, "Appointment", where, ("status", "cancelled"))
    assert cancelled
    with_system = ("status", f"{APPOINTMENT_STATUS}|cancelled")
    assert await _ids(http, "Appointment", where, with_system) == cancelled
    assert await _ids(http, "Appointment", where, ("status", "|cancelled")) == set()
    every = await _ids(http, "Appointment", where)
    assert await _ids(http, "Appointment", where, ("status", f"{APPOINTMENT_STATUS}|")) == every


@pytest.mark.parametrize("source", SOURCES)
async def test_slot_status_with_its_system_is_the_status(world, source):
    http = world.http
    actor, slots = await _doctor_and_slots(http, source)
    first, last = min(s["start"] for s in slots), max(s["start"] for s in slots)
    base = [("schedule.actor", actor), ("start", f"ge{first}"), ("start", f"le{last}")]
    free = await _ids(http, "Slot", *base)
    assert free == {s["id"] for s in slots}
    assert await _ids(http, "Slot", *base, ("status", f"{SLOT_STATUS}|free")) == free
    assert await _ids(http, "Slot", *base, ("status", f"{SLOT_STATUS}|")) == free
    assert await _ids(http, "Slot", *base, ("status", "|free")) == set()


# -- 2. fractions of a second on instants -----------------------------------------------


def _with_fraction(instant: str, fraction: str) -> str:
    """``2026-10-08T10:45:00+05:30`` with ``.000`` (say) after its seconds."""
    return instant[:19] + fraction + instant[19:]


@pytest.mark.parametrize("source", SOURCES)
async def test_fractions_of_a_second_on_appointment_date(world, source):
    http = world.http
    appointment = await _one(http, "Appointment", source, status="booked")
    start, me = appointment["start"], appointment["id"]
    where = ("_source", source)

    async def found(prefix: str, fraction: str) -> bool:
        value = prefix + _with_fraction(start, fraction)
        return me in await _ids(http, "Appointment", where, ("date", value))

    # the very instant, written to the millisecond
    assert [await found(p, ".000") for p in ("eq", "ne", "gt", "ge", "lt", "le")] == [
        True,
        False,
        False,
        True,
        False,
        True,
    ]
    # half a second after the start
    outcome = [await found(p, ".5") for p in ("eq", "ne", "gt", "ge", "lt", "le", "sa", "eb")]
    assert outcome == [False, True, False, False, True, True, False, True]


@pytest.mark.parametrize("source", SOURCES)
async def test_fractions_of_a_second_on_slot_start(world, source):
    http = world.http
    actor, slots = await _doctor_and_slots(http, source)
    slot = slots[len(slots) // 2]
    at = ("schedule.actor", actor)
    assert slot["id"] in await _ids(
        http, "Slot", at, ("start", _with_fraction(slot["start"], ".000"))
    )
    late = _with_fraction(slot["start"], ".5")
    window = ("start", f"lt{ANCHOR + timedelta(days=9)}")
    assert slot["id"] not in await _ids(http, "Slot", at, window, ("start", f"gt{late}"))
    assert slot["id"] not in await _ids(http, "Slot", at, window, ("start", f"ge{late}"))
    early = ("start", f"ge{ANCHOR}")
    assert slot["id"] in await _ids(http, "Slot", at, early, ("start", f"eb{late}"))


# -- 3. ge and le from gt, lt and eq, with a time against a date --------------------------


async def test_le_and_ge_with_a_time_against_a_birth_date(world):
    http = world.http
    patient = await _one(http, "Patient", LEYR)
    born = datetime.fromisoformat(patient["birthDate"])
    zone = ZoneInfo(ZONES[LEYR])
    offset = born.replace(tzinfo=zone).strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}"
    where = ("_source", LEYR)
    for value in (f"{born:%Y-%m-%d}T00:00:00{offset}", f"{born:%Y-%m-%d}T23:59:59{offset}"):
        got = {
            prefix: await _ids(http, "Patient", where, ("birthdate", prefix + value))
            for prefix in ("eq", "lt", "gt", "le", "ge")
        }
        assert got["le"] == got["lt"] | got["eq"], value
        assert got["ge"] == got["gt"] | got["eq"], value
    midnight = f"{born:%Y-%m-%d}T00:00:00{offset}"
    assert patient["id"] not in await _ids(http, "Patient", where, ("birthdate", f"le{midnight}"))
    assert patient["id"] in await _ids(http, "Patient", where, ("birthdate", f"ge{midnight}"))


# -- 4. strings without punctuation and repeated whitespace ---------------------------------


@pytest.mark.parametrize("source", SOURCES)
async def test_repeated_spaces_in_a_name_are_one(world, source):
    http = world.http
    patient = await _one(http, "Patient", source)
    given, family = patient["name"][0]["given"][0], patient["name"][0]["family"]
    where = ("_source", source)
    assert patient["id"] in await _ids(http, "Patient", where, ("name", f"{given}  {family}"))
    assert patient["id"] in await _ids(http, "Patient", where, ("name", f" {given},{family}."))
    contains = ("name:contains", f"{given[1:]}   {family[:2]}")
    assert patient["id"] in await _ids(http, "Patient", where, contains)


@pytest.mark.parametrize("source", SOURCES)
async def test_a_practitioner_without_the_punctuation_of_dr(world, source):
    http = world.http
    doctor = (await _all(http, "Practitioner", [("_source", source)]))[0]
    text = doctor["name"][0]["text"]
    assert text.startswith("Dr. ")
    first = text.split()[1]
    found = await _ids(http, "Practitioner", ("name", f"dr {first.lower()}"))
    assert doctor["id"] in found


async def test_a_name_that_is_only_punctuation_is_refused(world):
    response = await world.http.get("/fhir/Patient", params={"name": " .,- "})
    assert response.status_code == 400
    body = response.json()
    validate(body)
    assert body["issue"][0]["expression"] == ["name"]
    assert "only punctuation and whitespace" in body["issue"][0]["diagnostics"]


# -- 5. ORed dates with different prefixes ---------------------------------------------


async def test_ored_dates_with_different_prefixes(world):
    http = world.http
    early, late = "lt2025-09-01", f"ge{ANCHOR + timedelta(days=150)}"
    before = await _ids(http, "Appointment", ("date", early))
    after = await _ids(http, "Appointment", ("date", late))
    assert before and after
    either = await _ids(http, "Appointment", ("date", f"{early},{late}"))
    assert either == before | after
    # paged in small pages, through cursors that carry both prefixes
    paged = await _all(http, "Appointment", [("date", f"{early},{late}")], count=7)
    assert {a["id"] for a in paged} == either and len(paged) == len(either)
    bundle = await _bundle(http, "/fhir/Appointment", {"date": f"{early},{late}"})
    self_link = next(x["url"] for x in bundle["link"] if x["relation"] == "self")
    assert f"date=lt2025-09-01%2C{late}&" in self_link


# -- 6. _lastUpdated without a zone: the source's day ------------------------------------


@pytest.mark.parametrize("source", SOURCES)
async def test_last_updated_without_a_zone_is_the_sources_day(world, source):
    http = world.http
    zone = ZoneInfo(ZONES[source])
    dated = [("_source", source), ("_lastUpdated", "ge2000-01-01T00:00:00Z")]
    for appointment in await _all(http, "Appointment", dated):
        changed = datetime.fromisoformat(appointment["meta"]["lastUpdated"])
        local = changed.astimezone(zone)
        if local.date() != changed.date():
            break
    else:
        raise AssertionError("no change near midnight")
    where = ("_source", source)
    on_local_day = await _ids(http, "Appointment", where, ("_lastUpdated", f"{local:%Y-%m-%d}"))
    assert appointment["id"] in on_local_day
    on_utc_day = await _ids(http, "Appointment", where, ("_lastUpdated", f"{changed:%Y-%m-%d}"))
    assert appointment["id"] not in on_utc_day


# -- 7. meta.lastUpdated in a plain search, as a read gives it -----------------------------


@pytest.mark.parametrize(
    ("resource_type", "source"),
    [
        ("Patient", LEYR),
        ("Patient", NYRA),
        ("Appointment", LEYR),
        ("Appointment", NYRA),
        ("Practitioner", LEYR),
        ("Organization", NYRA),
        ("HealthcareService", LEYR),
    ],
)
async def test_search_results_carry_the_meta_of_a_read(world, resource_type, source):
    http = world.http
    page = _matches(
        await _bundle(http, f"/fhir/{resource_type}", {"_source": source, "_count": "3"})
    )
    assert page
    for resource in page:
        read = (await http.get(f"/fhir/{resource_type}/{resource['id']}")).json()
        assert resource["meta"] == read["meta"]
        assert "lastUpdated" in resource["meta"]


# -- 8. _source:below, the self link of a count, _total=estimate ---------------------------


async def test_source_below_matches_the_sources_under_it(world):
    http = world.http
    leyr = await _ids(http, "Patient", ("_source", LEYR))
    assert await _ids(http, "Patient", ("_source:below", "leyr")) == leyr
    assert await _ids(http, "Patient", ("_source:below", LEYR)) == leyr
    assert await _ids(http, "Patient", ("_source:below", "l")) == leyr
    assert await _ids(http, "Patient", ("_source:below", "ley-")) == set()
    response = await http.get("/fhir/Patient", params={"_source:above": "leyr-a"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["_source:above"]


async def test_the_self_link_of_a_count_holds_no_page_size(world):
    bundle = await _bundle(world.http, "/fhir/Patient", {"_summary": "count"})
    assert bundle["link"] == [
        {"relation": "self", "url": "http://fhir.test/fhir/Patient?_summary=count"}
    ]
    sized = await _bundle(world.http, "/fhir/Patient", {"_summary": "count", "_count": "5"})
    (link,) = sized["link"]
    assert link["url"] == "http://fhir.test/fhir/Patient?_summary=count&_count=5"


async def test_an_estimate_is_the_exact_total_when_the_search_fits_a_page(world):
    http = world.http
    patient = await _one(http, "Patient", NYRA)
    family = patient["name"][0]["family"]
    for total in ("estimate", None):
        params = {"family": family, "_count": "100"} | ({"_total": total} if total else {})
        bundle = await _bundle(http, "/fhir/Patient", params)
        assert len(_matches(bundle)) > 0
        assert bundle["total"] == len(_matches(bundle))
