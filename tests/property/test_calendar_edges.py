"""FHIR dates over the whole calendar: years 0001 to 9999, offsets -12:00 to +14:00, every
precision. Each is an interval without raising (its ends clamped to the instants Python
can hold, where they pass them), and any two compare, and give a vendor window, without
raising either."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import strategies as gen
from hypothesis import example, given
from hypothesis import strategies as st

from adapter.fhir.dates import compare, local_window, parse_date, parse_range

FIRST = datetime.min.replace(tzinfo=UTC)
LAST = datetime.max.replace(tzinfo=UTC)
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
TICK = timedelta(microseconds=1)


def _near(low: int, high: int) -> st.SearchStrategy[int]:
    """Anything from ``low`` to ``high``, its two ends drawn often: the calendar's edges."""
    return st.one_of(st.integers(low, high), st.sampled_from([low, high]))


@st.composite
def fhir_dates(draw: st.DrawFn) -> str:
    """A FHIR date, dateTime or instant anywhere in the calendar, at any precision."""
    year = draw(st.one_of(_near(1, 9999), st.sampled_from([2, 9998])))
    month = draw(_near(1, 12))
    day = draw(_near(1, calendar.monthrange(year, month)[1]))
    precision = draw(st.integers(0, 5))
    text = [f"{year:04d}", f"{year:04d}-{month:02d}", f"{year:04d}-{month:02d}-{day:02d}"]
    if precision <= 2:
        return text[precision]
    value = f"{text[2]}T{draw(_near(0, 23)):02d}:{draw(_near(0, 59)):02d}"
    if precision >= 4:
        value += f":{draw(_near(0, 59)):02d}"
    if precision == 5:
        value += "." + draw(st.text("0123456789", min_size=1, max_size=9))
    minutes = draw(_near(-12 * 60, 14 * 60))
    offset = f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return value + draw(st.sampled_from(["", "Z", offset]))


zones = st.one_of(st.just(UTC), gen.zone_names.map(ZoneInfo))


def _step(value: str) -> timedelta:
    """How long the value's precision says it lasts (wall-clock; a day is 24 hours)."""
    parsed = parse_date(value)
    if parsed.month is None:
        return timedelta(days=366 if calendar.isleap(parsed.year) else 365)
    if parsed.day is None:
        return timedelta(days=calendar.monthrange(parsed.year, parsed.month)[1])
    if parsed.hour is None:
        return timedelta(days=1)
    if parsed.second is None:
        return timedelta(minutes=1)
    if parsed.micro is None:
        return timedelta(seconds=1)
    digits = len(value.partition(".")[2].rstrip("Z").split("+")[0].split("-")[0])
    return timedelta(microseconds=10 ** (6 - min(digits, 6)))  # .5: a tenth of a second


@given(fhir_dates(), zones)
@example("9999-12-31", UTC)
@example("9999", ZoneInfo("America/New_York"))
@example("9999-12-31T23:59:59+14:00", UTC)
@example("9999-12-31T23:59:59.999999-12:00", UTC)
@example("0001-01-01", ZoneInfo("Asia/Kolkata"))
@example("0001-01-01T00:00:00+14:00", UTC)
@example("0001-01-01T00:00:00-12:00", UTC)
def test_every_fhir_date_is_an_interval(value, zone):
    low, high = parse_range(value, zone)
    assert low.tzinfo is UTC and high.tzinfo is UTC
    assert FIRST <= low <= high <= LAST
    if low == high:  # empty only where an end was clamped to the calendar's
        assert low in (FIRST, LAST)
    fixed = parse_date(value).offset is not None or zone is UTC
    if fixed and low > FIRST and high < LAST:
        # an interval that did not touch the calendar's ends lasts its precision exactly
        assert high - low == _step(value)


@given(fhir_dates(), fhir_dates(), zones, st.sampled_from(PREFIXES))
@example("9999-12-31", "9999-12-31T23:59:59Z", ZoneInfo("Pacific/Kiritimati"), "eq")
@example("0001-01-01T00:00:00+14:00", "0001", UTC, "ne")
@example("9999", "9999-12-31T10:00:00Z", ZoneInfo("America/New_York"), "gt")
def test_any_two_compare_and_a_match_lies_in_the_vendor_window(search, target, zone, prefix):
    asked, held = parse_range(search, zone), parse_range(target, zone)
    for other in PREFIXES:
        assert isinstance(compare(other, asked, held), bool)
    # the target's first instant, as a vendor record would hold it
    moment = held[0]
    instant = (moment, min(moment + TICK, LAST) if moment < LAST else moment)
    first, last = local_window([[(prefix, search)]], zone)
    if compare(prefix, asked, instant):
        try:
            day = moment.astimezone(zone).date()
        except OverflowError:
            return  # its local day lies past the calendar: no window can name it
        assert first is None or first <= day
        assert last is None or day <= last


@given(fhir_dates())
def test_a_value_is_the_same_interval_each_time_it_is_asked(value):
    parsed = parse_date(value)
    zone = ZoneInfo("Europe/Stockholm")
    assert parsed.range(zone) == parsed.range(zone) == parse_range(value, zone)
    assert parsed.range(UTC) == parse_range(value, UTC)
