"""FHIR date search semantics: every date is a range, compared by prefix.

A search value and a resource value both stand for the interval their precision implies
(``2024`` is the whole year, ``2024-03-25T14:00:00+01:00`` one second, ``...:00.5`` a
tenth of one), and the prefixes compare intervals as
https://hl7.org/fhir/R4/search.html#prefix defines them. An ``instant`` element's value
is a point (:func:`point`): R4 gives an instant no width. Values without
a time zone are read in the zone given (the source's), so "appointments on 2024-03-25" means
that day where the appointment takes place.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

from adapter.fhir.search import SearchParam, UnsupportedParameter

__all__ = [
    "DateRange",
    "FhirDate",
    "compare",
    "local_window",
    "parse_date",
    "parse_instant",
    "parse_range",
    "point",
    "search_window",
]


_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?",
    re.ASCII,  # digits 0-9 only, as FHIR's own pattern has them
)

DateRange = tuple[datetime, datetime]  # [low, high), aware

# R4's instant (https://hl7.org/fhir/R4/datatypes.html#instant): a full date, a time to the
# second, and a zone; a leap second (60) is the pattern's, not one a clock here can hold.
_INSTANT = re.compile(
    r"(?P<date>[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]))"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:(?P<second>[0-5][0-9]|60)(\.[0-9]+)?"
    r"(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))",
    re.ASCII,
)

# FHIR's calendar is years 0001-9999, Python's too; but the end of 9999-12-31, and an
# instant of 0001-01-01 with an offset east of UTC, lie outside what a ``datetime`` can
# hold. Interval ends are therefore worked out in microseconds and clamped to the
# representable instants, so every FHIR value has a range and none raises.
_TICK = timedelta(microseconds=1)
_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = (datetime.max - datetime.min) // _TICK  # datetime.max, in ticks from datetime.min
_OFFSET_LIMIT = timedelta(hours=14)  # FHIR's offsets: -14:00 to +14:00


def _ticks(wall: datetime) -> int:
    """A naive datetime as microseconds from ``datetime.min``."""
    return (wall - datetime.min) // _TICK


def _instant(ticks: int) -> datetime:
    """The UTC instant ``ticks`` after ``datetime.min``, clamped to what is representable."""
    return _FIRST + timedelta(microseconds=min(max(ticks, 0), _LAST))


def _offset_at(ticks: int, zone: tzinfo) -> int:
    """``zone``'s offset, in ticks, at the wall time ``ticks`` (past the end of time: the
    zone's offset at that end, which is its offset there for ever after)."""
    wall = datetime.min + timedelta(microseconds=min(ticks, _LAST))
    offset = wall.replace(tzinfo=zone).utcoffset()
    return 0 if offset is None else offset // _TICK


def _step(value: FhirDate) -> timedelta:
    """How long the value's precision makes it, starting at its first wall-clock instant
    (a year or a month counted in days, so that the step needs no later date to exist)."""
    if value.month is None:
        return timedelta(days=366 if calendar.isleap(value.year) else 365)
    if value.day is None:
        return timedelta(days=calendar.monthrange(value.year, value.month)[1])
    if value.hour is None or value.minute is None:
        return timedelta(days=1)
    if value.second is None:
        return timedelta(minutes=1)
    if value.digits is None:
        return timedelta(seconds=1)
    # ``.5`` is a tenth of a second, ``.000`` a millisecond; past six digits, a microsecond
    return timedelta(microseconds=10 ** (6 - min(value.digits, 6)))


@dataclass(frozen=True, slots=True)
class FhirDate:
    """A FHIR date, dateTime or instant as written: its parts down to its precision.

    Parsed once; :meth:`range` gives the interval it stands for in a zone (the zone only
    matters when the value carries no offset of its own)."""

    text: str
    year: int
    month: int | None = None
    day: int | None = None
    hour: int | None = None
    minute: int | None = None
    second: int | None = None
    micro: int | None = None  # set when fractional seconds were written
    offset: timedelta | None = None  # the value's own offset, if it gave one
    digits: int | None = None  # how many digits of a second were written
    # Each zone's range, worked out once: matching asks a search's dates for theirs once
    # per candidate record. (A zone only matters to a value without an offset.)
    _ranges: dict[tzinfo | None, DateRange] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def range(self, default_zone: tzinfo = UTC) -> DateRange:
        """``[low, high)`` in UTC. Wall-clock arithmetic in a zone with DST would make a
        day 23 or 25 hours long; the interval is the instants between the two wall times,
        so each end takes the zone's offset at its own wall time. A wall time the clocks
        pass twice is read at its first passing (PEP 495, ``fold=0``); one they skip is
        read as far on as they skipped. An end past the calendar is clamped to it
        (``low == high`` only there)."""
        key = default_zone if self.offset is None else None
        found = self._ranges.get(key)
        if found is None:
            found = self._ranges[key] = self._range(default_zone)
        return found

    def _range(self, default_zone: tzinfo) -> DateRange:
        zone: tzinfo = default_zone if self.offset is None else timezone(self.offset)
        timed = self.hour is not None and self.minute is not None
        low = datetime(
            self.year,
            self.month or 1,
            self.day or 1,
            (self.hour or 0) if timed else 0,
            (self.minute or 0) if timed else 0,
            (self.second or 0) if timed else 0,
            (self.micro or 0) if timed else 0,
            tzinfo=zone,
        )
        step = _step(self)
        try:
            # An aware datetime plus a timedelta is wall-clock arithmetic in its zone.
            first, after = low.astimezone(UTC), (low + step).astimezone(UTC)
        except OverflowError:
            return _clamped(low.replace(tzinfo=None), step, zone)
        if after <= first:
            # A value within a stretch the zone's clocks skip (02:59 on the night they go
            # from 02:00 to 03:00): its start is read as the clocks would show it had
            # they not moved (PEP 495, fold=0: an hour on), and so is its end.
            after = _instant(_ticks(first.replace(tzinfo=None)) + step // _TICK)
        return first, after


def _clamped(wall: datetime, step: timedelta, zone: tzinfo) -> DateRange:
    """:meth:`FhirDate.range` at the edges of the calendar, worked out in ticks."""
    low = _ticks(wall)
    high = low + step // _TICK
    return _instant(low - _offset_at(low, zone)), _instant(high - _offset_at(high, zone))


def parse_date(value: str) -> FhirDate:
    """A FHIR date/dateTime/instant value, checked (``ValueError`` if it is none)."""
    m = _DATE.fullmatch(value)
    if not m:
        raise ValueError("not a FHIR date, dateTime or instant")
    g = m.groupdict()
    offset = None
    tz = g["tz"]
    if tz == "Z":
        offset = timedelta()
    elif tz:
        hours, minutes = int(tz[1:3]), int(tz[4:6])
        offset = (-1 if tz[0] == "-" else 1) * timedelta(hours=hours, minutes=minutes)
        if minutes > 59 or abs(offset) > _OFFSET_LIMIT:
            raise ValueError("not a FHIR time zone offset")
    month, day, hour, minute, second = (
        int(g[k]) if g[k] is not None else None for k in ("m", "d", "H", "M", "S")
    )
    micro = int(g["f"][1:].ljust(6, "0")[:6]) if g["f"] else None
    digits = len(g["f"]) - 1 if g["f"] else None
    parsed = FhirDate(value, int(g["y"]), month, day, hour, minute, second, micro, offset, digits)
    parsed.range()  # a day, month or time that does not exist is refused here, once
    return parsed


def parse_range(value: str, default_zone: tzinfo = UTC) -> DateRange:
    """The interval a FHIR date/dateTime/instant value stands for. ``ValueError`` if bad."""
    return parse_date(value).range(default_zone)


def point(value: str, default_zone: tzinfo = UTC) -> DateRange:
    """The range of an ``instant`` element's value: R4 search ("date") takes an instant
    as "a fixed point in time with an interval smaller than the precision of the system",
    so it is the one microsecond at which it starts, whatever precision it is written at.
    ``ValueError`` if it is no FHIR date."""
    low = parse_range(value, default_zone)[0]
    return low, low + _TICK


def compare(prefix: str, search: DateRange, target: DateRange) -> bool:
    """Does ``target`` match ``prefix`` + ``search``? (R4 search, "prefix" table.)

    Each prefix is the table's sentence: ``eq``, the search range contains the target's;
    ``gt``, the range above the search value meets it; ``lt``, the range below; ``sa`` and
    ``eb``, no overlap and the range above (below) contains it. ``ne``, ``ge`` and ``le``
    are made of those, as the table makes them (``ge``: ``gt`` or ``eq``), so that they
    cannot disagree with them."""
    if prefix == "ne":
        return not compare("eq", search, target)
    if prefix == "ge":
        return compare("gt", search, target) or compare("eq", search, target)
    if prefix == "le":
        return compare("lt", search, target) or compare("eq", search, target)
    s_low, s_high = search
    t_low, t_high = target
    if prefix == "eq":
        return s_low <= t_low and t_high <= s_high
    if prefix == "gt":
        return t_high > s_high
    if prefix == "lt":
        return t_low < s_low
    if prefix == "sa":
        return t_low >= s_high
    if prefix == "eb":
        return t_high <= s_low
    raise ValueError(f"unknown date prefix {prefix!r}")


def local_window(
    params: Iterable[Sequence[tuple[str | None, str | FhirDate]]], zone: tzinfo
) -> tuple[date | None, date | None]:
    """Local dates, first and last inclusive, that surely hold every instant that matches
    ANDed date params, each given as its ORed ``(prefix, value)`` pairs; an open end is
    ``None``. ORed values are held by the window around them all.

    The window is a day wider than asked on each side, so that a vendor's date filter,
    whatever zone it counts days in, only narrows what is then filtered exactly.
    Raises ``ValueError`` for a value that is not a FHIR date.
    """
    low: datetime | None = None
    high: datetime | None = None
    for ored in params:
        bounds = [_bounds(prefix or "eq", value, zone) for prefix, value in ored]
        if not bounds:
            continue
        lows, highs = [b[0] for b in bounds], [b[1] for b in bounds]
        if all(b is not None for b in lows):
            either = min(b for b in lows if b is not None)
            low = either if low is None else max(low, either)
        if all(b is not None for b in highs):
            either = max(b for b in highs if b is not None)
            high = either if high is None else min(high, either)
    first = _local_day(low, zone, -1) if low is not None else None
    # ``high`` is exclusive: the last instant that can match lies just before it.
    last = _local_day(high - _TICK, zone, 1) if high is not None and high > _FIRST else None
    return first, last


def _bounds(
    prefix: str, value: str | FhirDate, zone: tzinfo
) -> tuple[datetime | None, datetime | None]:
    """``[low, high)`` (None: open) that holds every instant ``prefix`` + ``value`` finds."""
    s_low, s_high = (parse_date(value) if isinstance(value, str) else value).range(zone)
    low = {"eq": s_low, "ge": s_low, "gt": s_high, "sa": s_high}.get(prefix)
    high = {"eq": s_high, "le": s_high, "lt": s_low, "eb": s_low}.get(prefix)
    return low, high


def _local_day(moment: datetime, zone: tzinfo, days: int) -> date | None:
    """The local date ``days`` after ``moment``'s in ``zone``; None (an open end, which
    only widens the window) where that date lies outside the calendar."""
    try:
        return (moment.astimezone(zone) + timedelta(days=days)).date()
    except OverflowError:
        return None


def search_window(params: Iterable[SearchParam], zone: tzinfo) -> tuple[str | None, str | None]:
    """:func:`local_window` of ``date`` search params, as ISO dates for a vendor query."""
    params = tuple(params)
    try:
        first, last = local_window(
            [tuple(zip(p.value_prefixes(), p.dates or p.values, strict=True)) for p in params],
            zone,
        )
    except ValueError:
        raise UnsupportedParameter(params[0].name, "not a FHIR date") from None
    return (first.isoformat() if first else None, last.isoformat() if last else None)


def parse_instant(value: object) -> datetime:
    """An R4 instant as an aware datetime in UTC; ``ValueError`` saying why for anything
    else: not a string, not the pattern (an ISO week date, a missing zone, a date alone), a
    leap second, a day the month does not have, or a moment outside years 1-9999 once in
    UTC (``0001-01-01T00:00:00+14:00``)."""
    if not isinstance(value, str):
        raise ValueError("must be an instant written as a string, such as 2030-01-01T00:00:00Z")
    match = _INSTANT.fullmatch(value)
    if match is None:
        raise ValueError("must be an instant: a date, a time to the second and a zone")
    if match["second"] == "60":
        raise ValueError("a leap second (second 60) is not taken")
    text = re.sub(r"(\.[0-9]{6})[0-9]+", r"\1", value)  # past microseconds: cut
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("must be a day of the calendar, within years 1-9999 in UTC") from None
