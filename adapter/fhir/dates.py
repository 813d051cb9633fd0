"""FHIR date search semantics: every date is a range, compared by prefix.

A search value and a resource value both stand for the interval their precision implies
(``2024`` is the whole year, ``2024-03-25T14:00:00+01:00`` one second), and the prefixes
compare intervals as https://hl7.org/fhir/R4/search.html#prefix defines them. Values without
a time zone are read in the zone given (the source's), so "appointments on 2024-03-25" means
that day where the appointment takes place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

from adapter.fhir.search import SearchParam, UnsupportedParameter

__all__ = [
    "DateRange",
    "FhirDate",
    "compare",
    "local_window",
    "parse_date",
    "parse_range",
    "search_window",
]


_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)

DateRange = tuple[datetime, datetime]  # [low, high), aware


def _add_months(moment: datetime, months: int) -> datetime:
    month = moment.month - 1 + months
    return moment.replace(year=moment.year + month // 12, month=month % 12 + 1)


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

    def range(self, default_zone: tzinfo = UTC) -> DateRange:
        zone: tzinfo = default_zone if self.offset is None else timezone(self.offset)
        if self.month is None:
            low = datetime(self.year, 1, 1, tzinfo=zone)
            return _normalise(low, low.replace(year=self.year + 1))
        if self.day is None:
            low = datetime(self.year, self.month, 1, tzinfo=zone)
            return _normalise(low, _add_months(low, 1))
        if self.hour is None or self.minute is None:
            low = datetime(self.year, self.month, self.day, tzinfo=zone)
            return _normalise(low, low + timedelta(days=1))
        if self.second is None:
            low = datetime(self.year, self.month, self.day, self.hour, self.minute, tzinfo=zone)
            return _normalise(low, low + timedelta(minutes=1))
        low = datetime(
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.micro or 0,
            tzinfo=zone,
        )
        step = timedelta(microseconds=1) if self.micro is not None else timedelta(seconds=1)
        return _normalise(low, low + step)


def parse_date(value: str) -> FhirDate:
    """A FHIR date/dateTime/instant value, checked (``ValueError`` if it is none)."""
    m = _DATE.fullmatch(value)
    if not m:
        raise ValueError("not a FHIR date, dateTime or instant")
    g = m.groupdict()
    offset = None
    if g["tz"]:
        tz = g["tz"]
        sign = -1 if tz[0] == "-" else 1
        offset = (
            timedelta() if tz == "Z" else sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        )
    month, day, hour, minute, second = (
        int(g[k]) if g[k] is not None else None for k in ("m", "d", "H", "M", "S")
    )
    micro = int(g["f"][1:].ljust(6, "0")[:6]) if g["f"] else None
    parsed = FhirDate(value, int(g["y"]), month, day, hour, minute, second, micro, offset)
    parsed.range()  # a day or month that does not exist is refused here, once
    return parsed


def parse_range(value: str, default_zone: tzinfo = UTC) -> DateRange:
    """The interval a FHIR date/dateTime/instant value stands for. ``ValueError`` if bad."""
    return parse_date(value).range(default_zone)


def _normalise(low: datetime, high: datetime) -> DateRange:
    # Wall-clock arithmetic in a zone with DST would make a day 23 or 25 hours long; the
    # interval is the instants between the two wall times, so convert after adding.
    return low.astimezone(UTC), high.astimezone(UTC)


def compare(prefix: str, search: DateRange, target: DateRange) -> bool:
    """Does ``target`` match ``prefix`` + ``search``? (R4 search, "prefix" table)."""
    s_low, s_high = search
    t_low, t_high = target
    if prefix == "eq":
        return s_low <= t_low and t_high <= s_high
    if prefix == "ne":
        return not (s_low <= t_low and t_high <= s_high)
    if prefix == "gt":
        return t_high > s_high
    if prefix == "lt":
        return t_low < s_low
    if prefix == "ge":
        return t_high > s_low
    if prefix == "le":
        return t_low < s_high
    if prefix == "sa":
        return t_low >= s_high
    if prefix == "eb":
        return t_high <= s_low
    raise ValueError(f"unknown date prefix {prefix!r}")


def local_window(
    params: Iterable[tuple[str | None, Sequence[str | FhirDate]]], zone: tzinfo
) -> tuple[date | None, date | None]:
    """Local dates, first and last inclusive, that surely hold every match of ANDed date
    params given as ``(prefix, values)``; an open end is ``None``.

    The window is a day wider than asked on each side, so that a vendor's date filter,
    whatever zone it counts days in, only narrows what is then filtered exactly.
    Raises ``ValueError`` for a value that is not a FHIR date.
    """
    low: datetime | None = None
    high: datetime | None = None
    for prefix, values in params:
        if len(values) != 1:
            continue  # ORed values: no single window
        value = values[0]
        s_low, s_high = (parse_date(value) if isinstance(value, str) else value).range(zone)
        prefix = prefix or "eq"
        if prefix in ("eq", "ge", "gt", "sa"):
            bound = s_low if prefix in ("eq", "ge") else s_high
            low = bound if low is None else max(low, bound)
        if prefix in ("eq", "le", "lt", "eb"):
            bound = s_high if prefix in ("eq", "le") else s_low
            high = bound if high is None else min(high, bound)
    day = timedelta(days=1)
    first = (low.astimezone(zone) - day).date() if low is not None else None
    # ``high`` is exclusive: the last instant that can match lies just before it.
    tick = timedelta(microseconds=1)
    last = (high.astimezone(zone) - tick + day).date() if high is not None else None
    return first, last


def search_window(params: Iterable[SearchParam], zone: tzinfo) -> tuple[str | None, str | None]:
    """:func:`local_window` of ``date`` search params, as ISO dates for a vendor query."""
    params = tuple(params)
    try:
        first, last = local_window(((p.prefix, p.dates or p.values) for p in params), zone)
    except ValueError:
        raise UnsupportedParameter(params[0].name, "not a FHIR date") from None
    return (first.isoformat() if first else None, last.isoformat() if last else None)
