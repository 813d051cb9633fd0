"""Instants, dates and wall-clock times in a source's IANA zone.

FHIR ``instant`` needs seconds and an offset; vendor strings that already satisfy that are
passed through unchanged (so the vendor's own spelling survives a round trip), others are
parsed and rewritten in FHIR's form.

Local wall-clock times (Nyra's booking calls take a date and a time in the hospital's zone)
are resolved explicitly:

- a local time inside a daylight-saving **gap** does not exist: :class:`NonexistentLocalTime`;
- a local time inside a **fold** (it happens twice) resolves to the **earlier** instant, the
  first time the clock shows it (``fold=0``), which is what a person booking "02:30" on the
  night the clocks go back most often means. Going the other way, an instant that is the
  *second* occurrence cannot be told to such a vendor: :class:`UnrepresentableLocalTime`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from functools import cache
from zoneinfo import ZoneInfo

from mappings.errors import NonexistentLocalTime, UnrepresentableLocalTime

__all__ = [
    "FHIR_DATE",
    "FHIR_INSTANT",
    "format_instant",
    "instant_to_local",
    "local_to_instant",
    "parse_date",
    "parse_instant",
    "zone",
]

# https://hl7.org/fhir/R4/datatypes.html#instant and #date
FHIR_INSTANT = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:"
    r"([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
FHIR_DATE = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])")


@cache
def zone(name: str) -> ZoneInfo:
    """The zone named ``name``; ``ZoneInfoNotFoundError`` for an unknown name."""
    return ZoneInfo(name)


def parse_instant(value: str) -> tuple[datetime, str]:
    """Parse a timestamp that carries an offset; return it and its FHIR ``instant`` spelling.

    Raises ``ValueError`` when the text is not ISO 8601 or has no offset.
    """
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("timestamp has no UTC offset")
    if FHIR_INSTANT.fullmatch(value):
        return parsed, value
    return parsed, format_instant(parsed)


def format_instant(moment: datetime) -> str:
    """FHIR ``instant`` spelling of an aware datetime (seconds always, micros when set).

    FHIR offsets are whole minutes; a historical offset with seconds is written in UTC.
    """
    offset = moment.utcoffset()
    if offset is not None and offset.seconds % 60:
        moment = moment.astimezone(UTC)
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec)


def parse_date(value: str) -> date:
    """A full ``YYYY-MM-DD`` calendar date; ``ValueError`` otherwise."""
    if not FHIR_DATE.fullmatch(value):
        raise ValueError("not a YYYY-MM-DD date")
    return date.fromisoformat(value)


def local_to_instant(day: date, clock: time, zone_name: str) -> datetime:
    """The instant a wall clock in ``zone_name`` shows ``day clock`` (folds: the earlier)."""
    tz = zone(zone_name)
    naive = datetime.combine(day, clock.replace(tzinfo=None, fold=0))
    candidate = naive.replace(tzinfo=tz)
    # A wall time in a gap does not survive a trip through UTC unchanged.
    back = candidate.astimezone(UTC).astimezone(tz)
    if back.replace(tzinfo=None) != naive:
        raise NonexistentLocalTime(zone_name)
    return candidate


def instant_to_local(moment: datetime, zone_name: str) -> datetime:
    """``moment`` on the wall clock of ``zone_name`` (aware, in that zone).

    Raises :class:`UnrepresentableLocalTime` when that wall time happens twice and
    ``moment`` is the second occurrence, since :func:`local_to_instant` would read it back
    as the first.
    """
    tz = zone(zone_name)
    local = moment.astimezone(tz)
    if local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset():
        raise UnrepresentableLocalTime(zone_name)
    return local
