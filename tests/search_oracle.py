"""An evaluator of R4 search (https://hl7.org/fhir/R4/search.html), written for the tests
from the specification's text alone: it shares no code with the service's matching
(``adapter.fhir``), so that the two can be held against each other.

Dates (search.html "date", "prefix"): a value stands for the range its precision implies,
``[low, high)`` in microseconds since the epoch; a value without a zone is read in the
source's zone (the service's documented choice), a wall time that the zone skips or
repeats as PEP 495 reads it (``fold=0``: a repeated one at its first passing, a skipped
one as if the clocks had not moved, its range then as long as its precision). An
``instant`` element is a point ("an interval with an effective width of 0"): one
microsecond here, the smallest step there is. The prefixes are the table's sentences, one
by one.

The rest (:class:`Oracle`): each parameter reads what its R4 expression names (``name``
every part of a HumanName, ``device-name`` a Device's names and its type's text, the
chain ``schedule.actor`` through the Schedule); strings by prefix (``:contains``,
``:exact``) without case, accents, punctuation and repeated whitespace; tokens by the
"token" table, a ``code`` element in its value set's system and a ContactPoint with none;
references as ``Type/id``, an absolute URL on this server, or a bare id.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any

__all__ = [
    "PREFIXES",
    "Oracle",
    "date_range",
    "fold",
    "prefix_holds",
    "reference_holds",
    "references_of",
    "split_values",
    "strings_of",
    "token_holds",
    "tokens_of",
]

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


# -- the rest of R4 search, over resources as FHIR JSON ----------------------------------

Resource = dict[str, Any]
Items = list[tuple[str, str]]

_GENDER = "http://hl7.org/fhir/administrative-gender"
_APPOINTMENT_STATUS = "http://hl7.org/fhir/appointmentstatus"
_SLOT_STATUS = "http://hl7.org/fhir/slotstatus"
_PREFIXED = re.compile(r"(eq|ne|gt|lt|ge|le|sa|eb)(?=\d)")


def fold(text: str) -> str:
    """Text as a string search compares it: without case and accents, punctuation and
    repeated whitespace (search.html "string": "Punctuation and non-significant
    whitespace (e.g. repeated space characters) SHOULD also be ignored"), a mark being a
    word break like a space (the service's documented reading)."""
    letters = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in letters if not unicodedata.combining(c)).casefold()
    spaced = "".join(" " if unicodedata.category(c)[0] == "P" else c for c in kept)
    return " ".join(spaced.split())


def split_values(raw: str) -> list[str]:
    """ORed values: split at commas not escaped with a backslash."""
    return [v.replace("\\,", ",") for v in re.split(r"(?<!\\),", raw)]


def _human_names(r: Resource, parts: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for name in r.get("name") or []:
        for part in parts:
            value = name.get(part)
            out += value if isinstance(value, list) else [value] if value else []
    return out


_ALL_PARTS = ("text", "family", "given", "prefix", "suffix")


def strings_of(resource_type: str, name: str, r: Resource) -> list[str] | None:
    """The strings a string parameter reads (its R4 expression), or None: not a string."""
    if resource_type in ("Patient", "Practitioner"):
        parts = {"name": _ALL_PARTS, "family": ("family",), "given": ("given",)}.get(name)
        return None if parts is None else _human_names(r, parts)
    if name == "name" and resource_type in ("Location", "Organization"):
        return ([r["name"]] if "name" in r else []) + list(r.get("alias") or [])
    if name == "name" and resource_type == "HealthcareService":
        return [r["name"]] if "name" in r else []
    if name == "device-name" and resource_type == "Device":
        kind = r.get("type") or {}
        return (
            [d["name"] for d in r.get("deviceName") or [] if "name" in d]
            + [c["display"] for c in kind.get("coding") or [] if "display" in c]
            + ([kind["text"]] if "text" in kind else [])
        )
    return None


def _codings(concepts: Any) -> list[tuple[str | None, str]]:
    concepts = concepts if isinstance(concepts, list) else [concepts] if concepts else []
    return [(c.get("system"), c["code"]) for cc in concepts for c in cc.get("coding") or []]


def tokens_of(resource_type: str, name: str, r: Resource) -> list[tuple[str | None, str]] | None:
    """(system, code) pairs a token parameter reads; a code's system is its value set's."""
    if name == "_id":
        return [(None, r["id"])]
    if name == "identifier":
        return [(i.get("system"), i["value"]) for i in r.get("identifier") or [] if "value" in i]
    if (resource_type, name) == ("Patient", "gender"):
        return [(_GENDER, r["gender"])] if "gender" in r else []
    if (resource_type, name) == ("Patient", "active"):
        return [(None, "true" if r["active"] else "false")] if "active" in r else []
    if (resource_type, name) == ("Patient", "email"):
        # ContactPoint: the table gives it no system, only its value
        return [(None, t["value"]) for t in r.get("telecom") or [] if t.get("system") == "email"]
    if name == "status" and resource_type in ("Appointment", "Slot"):
        system = _APPOINTMENT_STATUS if resource_type == "Appointment" else _SLOT_STATUS
        return [(system, r["status"])] if "status" in r else []
    if name == "service-type":
        return _codings(r.get("type" if resource_type == "HealthcareService" else "serviceType"))
    return None


def token_holds(value: str, held: list[tuple[str | None, str]]) -> bool:
    """search.html "token": ``code`` in any system or none; ``system|code``; ``|code``
    with no system; ``system|`` any code of the system."""
    if "|" not in value:
        return any(code == value for _, code in held)
    system, _, code = value.rpartition("|")
    for have_system, have_code in held:
        if (have_system or "") == system and (code == "" or have_code == code):
            return True
    return False


_ONE_TARGET = {
    "patient": "Patient",
    "practitioner": "Practitioner",
    "schedule": "Schedule",
    "organization": "Organization",
    "partof": "Organization",
    "location": "Location",
}


def references_of(resource_type: str, name: str, r: Resource) -> list[str] | None:
    def refs(value: Any) -> list[str]:
        value = value if isinstance(value, list) else [value] if value else []
        return [v["reference"] for v in value if isinstance(v, dict) and "reference" in v]

    actors = refs([p.get("actor") for p in r.get("participant") or []])
    table = {
        ("Appointment", "patient"): [a for a in actors if a.startswith("Patient/")],
        ("Appointment", "practitioner"): [a for a in actors if a.startswith("Practitioner/")],
        ("Appointment", "actor"): actors,
        ("Slot", "schedule"): refs(r.get("schedule")),
        ("Device", "organization"): refs(r.get("owner")),
        ("Device", "location"): refs(r.get("location")),
        ("Location", "organization"): refs(r.get("managingOrganization")),
        ("Organization", "partof"): refs(r.get("partOf")),
        ("HealthcareService", "organization"): refs(r.get("providedBy")),
        ("HealthcareService", "location"): refs(r.get("location")),
        ("Schedule", "actor"): refs(r.get("actor")),
    }
    return table.get((resource_type, name))


def reference_holds(value: str, held: list[str], target: str | None, base: str) -> bool:
    """``Type/id``, an absolute URL on this server's ``base``, or a bare id (of the one
    type the parameter may reference, or of any when it may reference several)."""
    if value.startswith(base + "/"):
        value = value[len(base) + 1 :]
    if "/" in value:
        return value in held
    return any(
        h.rpartition("/")[2] == value and (target is None or h.startswith(f"{target}/"))
        for h in held
    )


_DATES = {
    ("Patient", "birthdate"): ("birthDate", False),
    ("Appointment", "date"): ("start", True),
    ("Slot", "start"): ("start", True),
}


class Oracle:
    """R4 search over resources as the service lists them, each one's zoneless dates read
    in ``zones[meta.source]``; references on this server's ``base`` are its own.
    ``schedules``: every Schedule, for the chain ``schedule.actor``."""

    def __init__(
        self, zones: dict[str, tzinfo], base: str, schedules: Sequence[Resource] = ()
    ) -> None:
        self.zones = zones
        self.base = base
        self.schedules = {s["id"]: s for s in schedules}

    def matches(self, resource_type: str, r: Resource, items: Items) -> bool:
        """Whether ``r`` meets every parameter of ``items`` (values ORed within one)."""
        zone = self.zones[r["meta"]["source"]]
        for key, raw in items:
            name, _, modifier = key.partition(":")
            values = split_values(raw)
            if name == "_source":
                source = r["meta"]["source"]
                ok = any(
                    source.startswith(v) if modifier == "below" else source == v for v in values
                )
            elif name == "_lastUpdated":
                ok = self._date(values, r["meta"].get("lastUpdated"), zone, instant=True)
            elif (resource_type, name) in _DATES:
                element, instant = _DATES[resource_type, name]
                ok = self._date(values, r.get(element), zone, instant=instant)
            elif (strings := strings_of(resource_type, name, r)) is not None:
                ok = self._string(modifier, values, strings)
            elif (tokens := tokens_of(resource_type, name, r)) is not None:
                ok = any(token_holds(v, tokens) for v in values)
            elif name == "schedule.actor" and resource_type == "Slot":
                actors = [
                    a
                    for ref in references_of("Slot", "schedule", r) or []
                    for a in references_of(
                        "Schedule", "actor", self.schedules.get(ref.partition("/")[2], {})
                    )
                    or []
                ]
                ok = any(reference_holds(v, actors, "Practitioner", self.base) for v in values)
            elif (refs := references_of(resource_type, name, r)) is not None:
                target = _ONE_TARGET.get(name)
                ok = any(reference_holds(v, refs, target, self.base) for v in values)
            else:
                raise ValueError(f"the oracle knows no {resource_type} parameter {name!r}")
            if not ok:
                return False
        return True

    @staticmethod
    def _string(modifier: str, values: list[str], held: list[str]) -> bool:
        if modifier == "exact":
            return any(v == h for v in values for h in held)
        needles = [fold(v) for v in values]
        if modifier == "contains":
            return any(n in fold(h) for n in needles for h in held)
        return any(fold(h).startswith(n) for n in needles for h in held)

    @staticmethod
    def _date(values: list[str], held: Any, zone: tzinfo, *, instant: bool) -> bool:
        if not isinstance(held, str):
            return False
        target = date_range(held, zone, instant=instant)
        for value in values:
            prefixed = _PREFIXED.match(value)
            prefix = prefixed.group(1) if prefixed else "eq"
            search = date_range(value[2:] if prefixed else value, zone)
            if prefix_holds(prefix, search, target):
                return True
        return False
