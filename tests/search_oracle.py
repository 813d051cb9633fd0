"""An evaluator of R4 search (https://hl7.org/fhir/R4/search.html), written for the tests
from the specification's text alone: it shares no code with the service's matching
(``adapter.fhir``), so that the two can be held against each other.

Dates (search.html "date", "prefix"): a value stands for the range its precision implies,
``[low, high)`` in microseconds since the epoch; a value without a zone is read in the
source's zone (the service's documented choice), a wall time that the zone skips or
repeats as PEP 495 reads it (``fold=0``: a repeated one at its first passing, a skipped
one as if the clocks had not moved, its range then as long as its precision). An
``instant`` element is a point ("an interval
with an effective width of 0"): one microsecond here, the smallest step there is. The
prefixes are the table's sentences, one by one.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

__all__ = ["PREFIXES", "date_range", "prefix_holds"]

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_VALUE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?"
)

Range = tuple[int, int]  # [low, high) in microseconds since the epoch


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICRO


def _zone_of(written: str | None, default: tzinfo) -> tzinfo:
    if written is None:
        return default
    if written == "Z":
        return UTC
    sign = -1 if written[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(written[1:3]), minutes=int(written[4:6])))


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def date_range(text: str, zone: tzinfo, *, instant: bool = False) -> Range:
    """The range a FHIR date, dateTime or instant stands for (a point for an
    ``instant`` element)."""
    found = _VALUE.fullmatch(text)
    if found is None:
        raise ValueError(text)
    year, month, day, hour, minute, second, fraction, written = found.groups()
    where = _zone_of(written, zone)
    y = int(year)
    if month is None:
        first, after = datetime(y, 1, 1), datetime(y + 1, 1, 1)
    elif day is None:
        m = int(month)
        first, after = datetime(y, m, 1), datetime(*_next_month(y, m), 1)
    elif hour is None:
        first = datetime.combine(date(y, int(month), int(day)), datetime.min.time())
        after = first + timedelta(days=1)
    else:
        first = datetime(y, int(month), int(day), int(hour), int(minute))
        if second is None:
            after = first + timedelta(minutes=1)
        else:
            first = first.replace(second=int(second))
            if fraction is None:
                after = first + timedelta(seconds=1)
            else:
                digits = fraction[:6]
                first = first.replace(microsecond=int(digits.ljust(6, "0")))
                after = first + timedelta(microseconds=10 ** (6 - len(digits)))
    low = _micros(first.replace(tzinfo=where))
    if instant:
        return low, low + 1
    high = _micros(after.replace(tzinfo=where))
    if high <= low:  # within a skipped stretch: both ends moved on past it
        high = low + (after - first) // _MICRO
    return low, high


def prefix_holds(prefix: str, search: Range, target: Range) -> bool:
    """Whether ``target`` matches ``prefix`` and ``search``, as the table says it."""
    s_low, s_high = search
    t_low, t_high = target
    contains = s_low <= t_low and t_high <= s_high  # the search range holds the target's
    above = t_high > s_high  # the range above the search value meets the target's
    below = t_low < s_low  # the range below it meets the target's
    overlaps = t_low < s_high and s_low < t_high
    table = {
        "eq": contains,
        "ne": not contains,
        "gt": above,
        "lt": below,
        "ge": above or contains,
        "le": below or contains,
        "sa": not overlaps and t_low >= s_high,
        "eb": not overlaps and t_high <= s_low,
    }
    return table[prefix]
