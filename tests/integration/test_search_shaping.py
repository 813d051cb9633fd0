"""``_lastUpdated``, ``_sort`` and ``_elements`` through the facade, against both embedded
sandboxes (the default configuration: one Leyr and one Nyra source).

- ``_lastUpdated`` keeps what changed in the range: Nyra dates its patients itself; the
  rest is dated by the change journal, which the test fills first with known times, as if
  the records had been seen then.
- ``_sort`` orders each page (and a search of one page whole), descending with ``-``,
  missing values last; it travels in the paging cursor.
- ``_elements`` keeps what was asked and what FHIR requires, tags SUBSETTED, leaves
  included resources whole, and travels in the cursor.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fhir_check import validate

from adapter.app import create_app
from adapter.fhir.dates import parse_range
from adapter.fhir.match import normalise
from adapter.fhir.search import SearchRequest
from adapter.protocol import iterate
from adapter.settings import ExportSettings, load_settings

pytestmark = pytest.mark.anyio

SOURCES = ("leyr-sandbox", "nyra-sandbox")
SUBSETTED = "SUBSETTED"


@pytest.fixture
async def world(tmp_path):
    settings = dataclasses.replace(
        load_settings(env={}),
        open_access=True,
        clients={},
        export=ExportSettings(dir=str(tmp_path)),
    )
    app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ) as client:
        yield app, client
    await app.state.aclose()


async def _bundle(http: httpx.AsyncClient, url: str, **params: str) -> dict[str, Any]:
    r = await http.get(url, params=params or None)
    assert r.status_code == 200, r.text
    body = r.json()
    validate(body)
    return body


def _matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _included(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "include"]


def _outcome(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        i
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == "outcome"
        for i in e["resource"]["issue"]
    ]


def _next(bundle: dict[str, Any]) -> str | None:
    return next((x["url"] for x in bundle["link"] if x["relation"] == "next"), None)


def _start(value: str | None) -> datetime | None:
    return None if value is None else parse_range(value, UTC)[0]


def _ordered(values: list[Any], descending: bool = False) -> bool:
    """Present values in order, then the missing ones."""
    present = [v for v in values if v is not None]
    if any(v is not None for v in values[len(present) :]):
        return False
    return present == sorted(present, reverse=descending)


async def _all(http: httpx.AsyncClient, url: str, **params: str) -> list[dict[str, Any]]:
    bundle = await _bundle(http, url, **params)
    out = _matches(bundle)
    while (following := _next(bundle)) is not None:
        bundle = await _bundle(http, following)
        out += _matches(bundle)
    return out


# -- _sort ------------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
async def test_one_page_sorted_by_birthdate_each_source(world, source):
    _, http = world
    bundle = await _bundle(http, "/fhir/Patient", _source=source, _count="100", _sort="birthdate")
    births = [_start(p.get("birthDate")) for p in _matches(bundle)]
    assert len(births) == 100 and _ordered(births)
    assert "_sort=birthdate" in next(x["url"] for x in bundle["link"] if x["relation"] == "self")
    down = await _bundle(http, "/fhir/Patient", _source=source, _count="100", _sort="-birthdate")
    assert _ordered([_start(p.get("birthDate")) for p in _matches(down)], descending=True)
    same = {p["id"] for p in _matches(bundle)}
    assert {p["id"] for p in _matches(down)} == same  # the same page, in the other order


async def test_pages_across_both_sources_are_each_sorted_and_the_cursor_keeps_the_sort(world):
    _, http = world
    bundle = await _bundle(http, "/fhir/Patient", _count="40", _sort="-name")
    pages = 0
    seen: set[str] = set()
    while True:
        matches = _matches(bundle)
        assert {p["meta"]["source"] for p in matches} <= set(SOURCES)
        names = [
            normalise(" ".join([n.get("family", ""), *n.get("given", [])]).strip())
            if (n := (p.get("name") or [None])[0])
            else None
            for p in matches
        ]
        assert _ordered(names, descending=True), names
        seen |= {p["id"] for p in matches}
        pages += 1
        following = _next(bundle)
        if following is None or pages == 4:
            break
        bundle = await _bundle(http, following)
    assert pages == 4 and len(seen) == 160


SORTED_PER_PAGE = {
    "severity": "information",
    "code": "informational",
    "diagnostics": "_sort: the order holds within each page, not across pages (the vendors "
    "give no order to sort by); for one order over every match, ask for them on one page "
    "(_count)",
    "expression": ["_sort"],
}


async def test_a_sorted_result_of_several_pages_says_on_each_that_the_order_is_per_page(world):
    _, http = world
    bundle = await _bundle(http, "/fhir/Patient", _count="40", _sort="-birthdate")
    for _ in range(2):  # the first page, and the next (the sort travels in the cursor)
        assert _outcome(bundle) == [SORTED_PER_PAGE]
        following = _next(bundle)
        assert following is not None
        bundle = await _bundle(http, following)
    # Unsorted, nothing is said.
    assert _outcome(await _bundle(http, "/fhir/Patient", _count="40")) == []


async def test_a_sorted_result_on_one_page_is_sorted_whole_and_says_nothing(world):
    _, http = world
    first = _matches(await _bundle(http, "/fhir/Patient", _count="1"))[0]
    family = first["name"][0]["family"]
    bundle = await _bundle(http, "/fhir/Patient", family=family, _count="100", _sort="birthdate")
    assert _next(bundle) is None and _matches(bundle)
    assert _outcome(bundle) == []


@pytest.mark.parametrize("source", SOURCES)
async def test_appointments_sorted_by_date_then_id(world, source):
    _, http = world
    bundle = await _bundle(
        http, "/fhir/Appointment", _source=source, _count="60", _sort="date,-_id"
    )
    matches = _matches(bundle)
    assert len(matches) == 60
    starts = [_start(a.get("start")) for a in matches]
    assert _ordered(starts)
    for a, b in itertools.pairwise(matches):
        if a.get("start") == b.get("start"):
            assert a["id"] > b["id"]


async def test_a_sort_key_the_type_does_not_have(world):
    _, http = world
    bundle = await _bundle(http, "/fhir/Appointment", _count="5", _sort="birthdate,date")
    (said,) = [
        i for i in _outcome(bundle) if i.get("expression") == ["_sort"] and i != SORTED_PER_PAGE
    ]
    assert said["severity"] == "information" and "birthdate" in said["diagnostics"]
    starts = [_start(a.get("start")) for a in _matches(bundle)]
    assert _ordered(starts)  # the key it has is kept
    strict = await http.get(
        "/fhir/Appointment", params={"_sort": "birthdate"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["_sort"]
    validate(strict.json())


# -- _elements --------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
async def test_elements_subset_the_matches_and_the_next_pages(world, source):
    _, http = world
    bundle = await _bundle(
        http, "/fhir/Patient", _source=source, _count="10", _elements="name,birthDate"
    )
    for page in (bundle, await _bundle(http, _next(bundle) or "")):
        matches = _matches(page)
        assert matches
        for patient in matches:
            assert set(patient) <= {"resourceType", "id", "meta", "name", "birthDate"}
            assert "telecom" not in patient and "name" in patient
            assert any(t["code"] == SUBSETTED for t in patient["meta"]["tag"])
            assert patient["meta"]["versionId"]  # of the whole resource
    whole = await http.get(f"/fhir/Patient/{_matches(bundle)[0]['id']}")
    assert whole.json()["meta"]["versionId"] == _matches(bundle)[0]["meta"]["versionId"]
    assert "telecom" in whole.json()


@pytest.mark.parametrize("source", SOURCES)
async def test_elements_keep_what_fhir_requires_and_leave_includes_whole(world, source):
    _, http = world
    bundle = await _bundle(
        http,
        "/fhir/Appointment",
        _source=source,
        _count="5",
        _elements="start",
        _include="Appointment:patient",
    )
    matches = _matches(bundle)
    assert matches
    for appointment in matches:
        # status and participant are required by FHIR: kept whatever is asked
        assert set(appointment) == {"resourceType", "id", "meta", "start", "status", "participant"}
    included = _included(bundle)
    assert included and all(
        not any(t.get("code") == SUBSETTED for t in (p["meta"].get("tag") or [])) for p in included
    )


async def test_an_element_the_type_does_not_have(world):
    _, http = world
    bundle = await _bundle(http, "/fhir/Patient", _count="3", _elements="name,nonsense")
    (said,) = [i for i in _outcome(bundle) if i.get("expression") == ["_elements"]]
    assert "nonsense" in said["diagnostics"]
    assert all(set(p) <= {"resourceType", "id", "meta", "name"} for p in _matches(bundle))


async def test_a_choice_element_by_its_name(world):
    _, http = world
    for patient in _matches(
        await _bundle(http, "/fhir/Patient", _count="20", _elements="deceased")
    ):
        assert set(patient) - {"resourceType", "id", "meta"} <= {
            "deceasedBoolean",
            "deceasedDateTime",
        }


# -- _lastUpdated -----------------------------------------------------------------------


async def _seed_journal(app: Any, resource_type: str, source: str, http: httpx.AsyncClient):
    """Date each of the source's ``resource_type`` records in the journal: every other one
    as seen in 2021, the rest in 2024 (the journal keeps the first time it saw each), so
    that every page holds some of each."""
    # As the connector lists them: a search through the facade would date them already.
    connector = app.state.facade.connectors[source]
    records = [r async for r in iterate(connector, SearchRequest(resource_type, (), 100))]
    undated = [r for r in records if not r["meta"].get("lastUpdated")]
    older, newer = undated[0::2], undated[1::2]
    journal = app.state.facade.journal
    await journal.stamp(source, older, now=datetime(2021, 6, 1, tzinfo=UTC))
    await journal.stamp(source, newer, now=datetime(2024, 6, 1, tzinfo=UTC))
    return {r["id"] for r in older}, {r["id"] for r in newer}


@pytest.mark.parametrize("source", SOURCES)
async def test_last_updated_keeps_what_changed_in_the_range(world, source):
    app, http = world
    older, newer = await _seed_journal(app, "Appointment", source, http)
    assert older and newer
    kept = await _all(
        http, "/fhir/Appointment", _source=source, _count="100", _lastUpdated="gt2023-01-01"
    )
    assert {a["id"] for a in kept} == newer
    assert all(a["meta"]["lastUpdated"].startswith("2024-06-01") for a in kept)
    window = await _all(
        http,
        f"/fhir/Appointment?_source={source}&_count=100"
        "&_lastUpdated=ge2021-06-01&_lastUpdated=lt2021-06-02",
    )
    assert {a["id"] for a in window} == older
    counted = await _bundle(
        http, "/fhir/Appointment", _source=source, _summary="count", _lastUpdated="lt2022"
    )
    assert counted["total"] == len(older)


async def test_last_updated_reads_nyra_s_own_patient_times(world):
    _, http = world
    every = await _all(http, "/fhir/Patient", _source="nyra-sandbox", _count="100")
    times = sorted(p["meta"]["lastUpdated"] for p in every)
    middle = times[len(times) // 2]
    kept = await _all(
        http, "/fhir/Patient", _source="nyra-sandbox", _count="100", _lastUpdated=f"ge{middle}"
    )
    want = {p["id"] for p in every if _start(p["meta"]["lastUpdated"]) >= _start(middle)}
    assert {p["id"] for p in kept} == want and 0 < len(want) < len(every)


async def test_last_updated_with_sort_and_paging(world):
    app, http = world
    for source in SOURCES:
        await _seed_journal(app, "Appointment", source, http)
    bundle = await _bundle(
        http, "/fhir/Appointment", _count="30", _lastUpdated="gt2023", _sort="-_lastUpdated,date"
    )
    assert "total" not in bundle  # the vendors' counts are not this search's
    seen = 0
    while True:
        matches = _matches(bundle)
        assert all(m["meta"]["lastUpdated"] > "2023" for m in matches)
        seen += len(matches)
        following = _next(bundle)
        if following is None:
            break
        assert "_lastUpdated" not in following  # carried in the cursor, not the link
        bundle = await _bundle(http, following)
    assert seen > 0


async def test_a_bad_last_updated_is_a_400(world):
    _, http = world
    r = await http.get("/fhir/Patient", params={"_lastUpdated": "yesterday"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["_lastUpdated"]
    r = await http.get("/fhir/Patient", params={"_lastUpdated:missing": "true"})
    assert r.status_code == 400


async def test_the_capability_statement_offers_them(world):
    _, http = world
    statement = (await http.get("/fhir/metadata")).json()
    for resource in statement["rest"][0]["resource"]:
        if resource["type"] in ("Patient", "Appointment"):
            names = {p["name"] for p in resource["searchParam"]}
            assert "_lastUpdated" in names
            assert "_sort" in resource["documentation"]


@pytest.mark.parametrize("source", SOURCES)
async def test_a_read_takes_elements_too(world, source):
    _, http = world
    (first,) = _matches(await _bundle(http, "/fhir/Patient", _source=source, _count="1"))
    whole = await http.get(f"/fhir/Patient/{first['id']}")
    part = await http.get(f"/fhir/Patient/{first['id']}", params={"_elements": "gender"})
    assert part.status_code == 200
    validate(part.json())
    assert set(part.json()) == {"resourceType", "id", "meta", "gender"}
    assert any(t["code"] == SUBSETTED for t in part.json()["meta"]["tag"])
    assert part.headers["etag"] == whole.headers["etag"]  # the version of the whole
    strict = await http.get(
        f"/fhir/Patient/{first['id']}",
        params={"_elements": "gender,shoeSize"},
        headers={"Prefer": "handling=strict"},
    )
    assert strict.status_code == 400 and "shoeSize" in strict.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("source", SOURCES)
async def test_last_updated_includes_only_what_its_matches_reference(world, source):
    app, http = world
    await _seed_journal(app, "Appointment", source, http)
    bundle = await _bundle(
        http,
        "/fhir/Appointment",
        _source=source,
        _count="40",
        _lastUpdated="gt2023",
        _include="Appointment:patient",
    )
    matches = _matches(bundle)
    assert matches
    referenced = {
        p["actor"]["reference"]
        for a in matches
        for p in a["participant"]
        if p.get("actor", {}).get("reference", "").startswith("Patient/")
    }
    included = _included(bundle)
    assert included
    assert {f"Patient/{p['id']}" for p in included} <= referenced
