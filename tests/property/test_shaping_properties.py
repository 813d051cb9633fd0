"""The facade's own shaping of a page (``_sort``, ``_elements``, ``_lastUpdated``), as
properties: a sort is a stable permutation in key order with missing values last; a subset
keeps what was asked and what FHIR requires, is tagged once, and is a subset of the whole;
a search state with its shaping comes back whole from a paging cursor."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import strategies as gen
from hypothesis import given
from hypothesis import strategies as st

from adapter.fhir.cursor import CursorCodec
from adapter.fhir.dates import parse_date, parse_range
from adapter.fhir.search import Position, SearchParam, SearchRequest, SearchState, Shaping
from adapter.fhir.shaping import SUBSETTED, keeps, sort_resources, subset

KEY = b"k" * 32

dates = st.dates().map(lambda d: d.isoformat())
instants = st.datetimes(timezones=st.just(UTC)).map(
    lambda d: d.isoformat(timespec="milliseconds").replace("+00:00", "Z")
)


@st.composite
def patients(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(0, 12))
    out = []
    for n in range(count):
        patient: dict[str, Any] = {"resourceType": "Patient", "id": f"p{n:02d}", "meta": {}}
        if draw(st.booleans()):
            patient["birthDate"] = draw(st.sampled_from(["1970", "1980-05", "1980-05-02"]) | dates)
        if draw(st.booleans()):
            patient["meta"]["lastUpdated"] = draw(instants)
        if draw(st.booleans()):
            family = draw(st.sampled_from(["Åberg", "aberg", "Berg", "Ölund", "Zed"]))
            patient["name"] = [{"family": family, "given": [draw(st.sampled_from(["A", "b"]))]}]
        out.append(patient)
    return out


def _value(key: str, patient: dict[str, Any]) -> Any:
    if key == "birthdate":
        value = patient.get("birthDate")
        return None if value is None else parse_range(value, UTC)[0]
    if key == "_lastUpdated":
        value = patient["meta"].get("lastUpdated")
        return None if value is None else parse_range(value, UTC)[0]
    return patient["id"]


@given(patients(), st.sampled_from(["birthdate", "_lastUpdated", "_id"]), st.booleans())
def test_a_sort_is_a_stable_permutation_in_order_with_missing_last(resources, key, descending):
    out = sort_resources("Patient", resources, [(key, descending)])
    assert sorted(r["id"] for r in out) == sorted(r["id"] for r in resources)
    values = [_value(key, r) for r in out]
    present = [v for v in values if v is not None]
    assert values[: len(present)] == present  # missing values come last
    assert present == sorted(present, reverse=descending)
    for a, b in itertools.pairwise(out):
        if _value(key, a) == _value(key, b):  # ties keep the order they came in
            assert resources.index(a) < resources.index(b)


@given(patients(), st.booleans())
def test_a_second_key_orders_only_within_the_first(resources, descending):
    out = sort_resources("Patient", resources, [("birthdate", False), ("_id", descending)])
    for a, b in itertools.pairwise(out):
        if _value("birthdate", a) == _value("birthdate", b):
            assert (a["id"] > b["id"]) if descending else (a["id"] < b["id"])


@given(
    patients(),
    st.lists(st.sampled_from(["name", "birthDate", "gender", "deceased"]), max_size=3),
)
def test_a_subset_keeps_what_was_asked_and_is_tagged_once(resources, elements):
    for patient in resources:
        patient = {**patient, "gender": "other", "deceasedBoolean": False, "active": True}
        out = subset("Patient", patient, elements)
        again = subset("Patient", out, elements)
        assert again == out  # idempotent: one tag, the same elements
        assert [t["code"] for t in out["meta"]["tag"]] == [SUBSETTED["code"]]
        kept = set(out) - {"meta"}
        assert kept <= set(patient)
        assert {"resourceType", "id"} <= kept
        assert "active" not in kept
        for element in elements:
            wanted = "deceasedBoolean" if element == "deceased" else element
            assert (wanted in kept) == (wanted in patient)
        assert all(out[k] == patient[k] for k in kept)


def test_an_appointment_subset_keeps_what_fhir_requires():
    appointment = {
        "resourceType": "Appointment",
        "id": "a",
        "status": "booked",
        "participant": [{"status": "accepted"}],
        "start": "2026-01-01T09:00:00Z",
        "description": "x",
    }
    out = subset("Appointment", appointment, ["start"])
    assert set(out) == {"resourceType", "id", "meta", "status", "participant", "start"}


@given(st.lists(instants, min_size=1, max_size=8), instants, st.sampled_from(["gt", "le", "ge"]))
def test_last_updated_keeps_exactly_the_times_in_range(times, bound, prefix):
    shaping = Shaping(
        updated=(SearchParam("_lastUpdated", (bound,), None, prefix, (parse_date(bound),)),)
    )
    low = parse_range(bound, UTC)[0]
    for time in times:
        t = parse_range(time, UTC)[0]
        expected = {"gt": t > low, "le": t <= low, "ge": t >= low}[prefix]
        assert keeps(shaping, {"meta": {"lastUpdated": time}}) is expected
    assert not keeps(shaping, {"meta": {}})  # a time not known meets no bound


@given(
    st.datetimes(datetime(1950, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.dates(date(1950, 1, 1), date(2100, 1, 1)),
    gen.zone_names,
)
def test_last_updated_without_a_zone_is_a_day_of_the_sources_zone(moment, day, zone):
    """``_lastUpdated=2026-03-29`` is that day where the source is, as ``date`` is."""
    value = day.isoformat()
    shaping = Shaping(
        updated=(SearchParam("_lastUpdated", (value,), None, "eq", (parse_date(value),)),)
    )
    time = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    kept = keeps(shaping, {"meta": {"lastUpdated": time}}, ZoneInfo(zone))
    assert kept is (moment.astimezone(ZoneInfo(zone)).date() == day)


@given(
    st.lists(st.tuples(st.sampled_from(["birthdate", "name", "_id"]), st.booleans()), max_size=3),
    st.lists(st.sampled_from(["name", "birthDate", "telecom"]), max_size=3, unique=True),
    st.lists(st.tuples(st.sampled_from(["gt", "lt", "ge"]), dates), max_size=2),
)
def test_a_state_with_its_shaping_comes_back_from_a_cursor(sort, elements, bounds):
    updated = tuple(
        SearchParam("_lastUpdated", (d,), None, prefix, (parse_date(d),)) for prefix, d in bounds
    )
    shaping = Shaping(updated, tuple(dict(sort).items()), tuple(elements))
    state = SearchState(
        SearchRequest("Patient", count=7),
        order=("a", "b"),
        shares=(4, 3),
        lanes=2,
        position=Position({"a": "x"}, frozenset({"b"}), None, first=False),
        shaping=shaping,
    )
    codec = CursorCodec(KEY)
    back = codec.decode_state(codec.encode_state(state))
    assert back.shaping == shaping
    assert back.moved_to(Position()).shaping == shaping
