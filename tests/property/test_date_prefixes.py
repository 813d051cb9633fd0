"""Date prefixes over values at every precision, with and without zones, across the days
a zone's clocks change: the service's matching agrees with the evaluator of
:mod:`search_oracle` (written from the specification's text), and the prefixes keep the
relations R4's table gives them: ``le`` is ``lt`` or ``eq``, ``ge`` is ``gt`` or ``eq``,
``ne`` is not ``eq``, ``sa`` is within ``gt`` and ``eb`` within ``lt``.

The values are drawn around a transition of the zone (a skipped or repeated hour) as wall
times, so that zoneless ones land in the gap and in the fold; the targets are a ``date``
element, a ``dateTime`` one, or an ``instant`` one (a point).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache
from zoneinfo import ZoneInfo

from hypothesis import example, given, settings
from hypothesis import strategies as st
from search_oracle import PREFIXES, date_range, prefix_holds

from adapter.fhir.dates import parse_date
from adapter.fhir.match import date_matches
from adapter.fhir.search import SearchParam

# Zones whose clocks move (by an hour, by half an hour, south and north), and any other.
MOVING = (
    "Europe/Stockholm",
    "America/New_York",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Tehran",
)
zones = st.one_of(st.sampled_from(MOVING).map(ZoneInfo), st.timezones())


@cache
def transitions(zone: tzinfo, year: int) -> tuple[datetime, ...]:
    """The instants (UTC) in ``year`` at which ``zone``'s offset changes."""
    out = []
    moment = datetime(year, 1, 1, tzinfo=UTC)
    step = timedelta(days=1)
    while moment.year == year:
        later = moment + step
        if moment.astimezone(zone).utcoffset() != later.astimezone(zone).utcoffset():
            low, high = moment, later
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                same = low.astimezone(zone).utcoffset() == middle.astimezone(zone).utcoffset()
                low, high = (middle, high) if same else (low, middle)
            out.append(high.replace(second=0, microsecond=0))
        moment = later
    return tuple(out)


@st.composite
def wall_times(draw: st.DrawFn, zone: tzinfo) -> datetime:
    """A naive wall time near one of the zone's transitions (or any day when it has
    none): before, in the gap or fold, or after."""
    year = draw(st.integers(1990, 2040))
    moves = transitions(zone, year)
    if moves:
        around = draw(st.sampled_from(moves)).astimezone(zone).replace(tzinfo=None)
    else:
        around = datetime(year, 1, 1) + timedelta(days=draw(st.integers(0, 364)))
    return around + timedelta(microseconds=draw(st.integers(-4 * 3600 * 10**6, 4 * 3600 * 10**6)))


# How a value is written: its precision (and digits of a second), and the zone it carries
# (none, Z, the zone's own offset at that time, or another).
PRECISIONS = ("year", "month", "day", "minute", "second", "fraction")
STEPS = (0, 1, -1, 500_000, -500_000, 10**6, -(10**6), 60 * 10**6)  # microseconds


def floor(wall: datetime, precision: str, digits: int) -> tuple[datetime, datetime]:
    """The first wall time of the unit ``wall`` lies in at ``precision``, and the next's."""
    if precision == "year":
        first = datetime(wall.year, 1, 1)
        return first, first.replace(year=wall.year + 1)
    if precision == "month":
        first = datetime(wall.year, wall.month, 1)
        after = datetime(wall.year + wall.month // 12, wall.month % 12 + 1, 1)
        return first, after
    if precision == "day":
        first = datetime(wall.year, wall.month, wall.day)
        return first, first + timedelta(days=1)
    if precision == "minute":
        first = wall.replace(second=0, microsecond=0)
        return first, first + timedelta(minutes=1)
    if precision == "second":
        first = wall.replace(microsecond=0)
        return first, first + timedelta(seconds=1)
    unit = 10 ** (6 - digits)
    first = wall.replace(microsecond=wall.microsecond // unit * unit)
    return first, first + timedelta(microseconds=unit)


def render(
    draw: st.DrawFn, wall: datetime, precision: str, digits: int, zone: tzinfo, zoned: bool
) -> str:
    """``wall`` written at ``precision``, with a zone or (unless ``zoned``) none."""
    text = {
        "year": f"{wall:%Y}",
        "month": f"{wall:%Y-%m}",
        "day": f"{wall:%Y-%m-%d}",
        "minute": f"{wall:%Y-%m-%dT%H:%M}",
        "second": f"{wall:%Y-%m-%dT%H:%M:%S}",
        "fraction": f"{wall:%Y-%m-%dT%H:%M:%S}.{wall.microsecond:06d}"[: 20 + digits],
    }[precision]
    if precision in ("year", "month", "day"):
        return text
    if precision == "fraction" and digits == 6 and draw(st.integers(0, 3)) == 0:
        text += "9" * draw(st.integers(1, 4))  # more digits than a microsecond: cut
    kind = draw(st.sampled_from(("Z", "own", "other") if zoned else ("none", "Z", "own", "other")))
    if kind == "none":
        return text
    if kind == "Z":
        return text + "Z"
    offset = (
        wall.replace(tzinfo=zone).utcoffset()
        if kind == "own"
        else timedelta(minutes=draw(st.integers(-14 * 4, 14 * 4)) * 15)
    )
    assert offset is not None
    return text + _offset_text(offset)


def _offset_text(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def cases(draw: st.DrawFn) -> tuple[tzinfo, str, str, bool]:
    """(zone, search value, target value, whether the target is an instant). The search
    value is often the target's own time, or where the target's range starts or ends,
    a step either side: where the prefixes differ."""
    zone = draw(zones)
    instant = draw(st.booleans())
    wall = draw(wall_times(zone))
    precision = draw(st.sampled_from(("second", "fraction") if instant else PRECISIONS))
    digits = draw(st.integers(1, 6))
    target = render(draw, wall, precision, digits, zone, zoned=instant)
    first, after = floor(wall, precision, digits)
    near = draw(st.sampled_from(("free", "same", "first", "after")))
    if near == "free":
        other = draw(wall_times(zone))
    else:
        other = {"same": wall, "first": first, "after": after}[near]
        other += timedelta(microseconds=draw(st.sampled_from(STEPS)))
    precision = draw(st.sampled_from(PRECISIONS))
    search = render(draw, other, precision, draw(st.integers(1, 6)), zone, zoned=False)
    return zone, search, target, instant


def service(prefix: str, search: str, target: str, zone: tzinfo, instant: bool) -> bool:
    param = SearchParam("date", (search,), None, prefix, (parse_date(search),))
    return date_matches(param, (target,), zone, instant=instant)


STOCKHOLM = ZoneInfo("Europe/Stockholm")


@settings(max_examples=600)
@given(cases())
# a minute the clocks skip (02:00 -> 03:00), against itself and the hour around it
@example((STOCKHOLM, "2026-03-29T02:59", "2026-03-29T02:59", False))
@example((STOCKHOLM, "2026-03-29T02:30", "2026-03-29T03:00:00+02:00", True))
@example((STOCKHOLM, "2026-03-29", "2026-03-29T01:59:59.999999+01:00", True))
# a minute the clocks pass twice (03:00 -> 02:00)
@example((STOCKHOLM, "2026-10-25T02:30", "2026-10-25T02:30:00+01:00", True))
@example((STOCKHOLM, "2026-10-25T02:30", "2026-10-25T02:30:00+02:00", True))
# a time against a date: le is lt or eq
@example((STOCKHOLM, "1978-02-08T00:00:00+01:00", "1978-02-08", False))
@example((STOCKHOLM, "2026-10-08T10:45:00.5+05:30", "2026-10-08T10:45:00+05:30", True))
def test_prefixes_agree_with_the_specification(case):
    zone, search, target, instant = case
    got = {p: service(p, search, target, zone, instant) for p in PREFIXES}
    s, t = date_range(search, zone), date_range(target, zone, instant=instant)
    expected = {p: prefix_holds(p, s, t) for p in PREFIXES}
    assert got == expected, (search, target, zone, instant)
    assert got["le"] == (got["lt"] or got["eq"])
    assert got["ge"] == (got["gt"] or got["eq"])
    assert got["ne"] == (not got["eq"])
    assert not got["sa"] or got["gt"]
    assert not got["eb"] or got["lt"]
