"""The days a per-day vendor (Nyra) is asked for a Slot window: every local day a slot
starting in the window can lie on, and no other."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from adapter.connectors.slots import slot_query
from adapter.fhir.search import SearchParam, SearchRequest

ZONES = ["Asia/Kolkata", "Pacific/Kiritimati", "America/St_Johns", "UTC", "Europe/Stockholm"]
ACTOR = SearchParam("schedule.actor", ("Practitioner/nyra.d-1",))


def request(*starts: tuple[str, str]) -> SearchRequest:
    params = tuple(SearchParam("start", (v,), prefix=p) for p, v in starts)
    return SearchRequest("Slot", (ACTOR, *params))


@given(
    low=st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1)),
    minutes=st.integers(1, 20 * 24 * 60),
    offset=st.integers(-14 * 4, 14 * 4),
    zone=st.sampled_from(ZONES),
)
def test_the_days_asked_are_those_a_matching_start_lies_on(low, minutes, offset, zone):
    written = timezone(timedelta(minutes=15 * offset))
    low = low.replace(second=0, microsecond=0, tzinfo=written)
    high = low + timedelta(minutes=minutes)
    query = slot_query(request(("ge", low.isoformat()), ("lt", high.isoformat())), ZoneInfo(zone))
    local = ZoneInfo(zone)
    first = low.astimezone(local).date()
    last = (high - timedelta(microseconds=1)).astimezone(local).date()
    assert query.days() == [first + timedelta(days=n) for n in range((last - first).days + 1)]


def test_dates_without_a_time_are_the_sources_days():
    query = slot_query(request(("ge", "2026-12-15"), ("lt", "2026-12-29")), ZoneInfo(ZONES[0]))
    assert [d.isoformat() for d in (query.days()[0], query.days()[-1])] == [
        "2026-12-15",
        "2026-12-28",
    ]
    assert len(query.days()) == 14


def test_a_window_that_holds_no_instant_asks_no_day():
    query = slot_query(request(("ge", "2026-12-15"), ("lt", "2026-12-15")), ZoneInfo(ZONES[0]))
    assert query.days() == []
