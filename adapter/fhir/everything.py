"""``Patient/$everything``: its parameters, and the references it follows.

https://hl7.org/fhir/R4/patient-operation-everything.html. What this server takes:
``_since`` (an instant with a time zone: only resources whose ``meta.lastUpdated`` is
after it), ``_type`` (a comma list of the resource types to return), ``_count`` (patients
a page, for the type-level form) and ``_cursor`` (a later page). ``start``, ``end`` and
``_elements`` are not supported: ignored, or a 400 under ``Prefer: handling=strict``.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapter.fhir.includes import relative
from adapter.fhir.outcome import FhirError

__all__ = [
    "EVERYTHING_DEFINITION",
    "EverythingQuery",
    "parse_everything",
    "references_in",
    "since_keeps",
]

EVERYTHING_DEFINITION = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
_HARMLESS = frozenset({"_format", "_pretty"})


@dataclass(frozen=True)
class EverythingQuery:
    since: datetime | None = None
    types: frozenset[str] | None = None  # None: every type
    count: int | None = None
    cursor: str | None = None
    used: tuple[tuple[str, str], ...] = ()  # the parameters a page's links carry again


def parse_everything(
    items: Sequence[tuple[str, str]], *, served: Container[str], strict: bool
) -> EverythingQuery:
    """The parameters of a ``$everything`` request; 400 for one that is malformed."""
    since: datetime | None = None
    types: set[str] | None = None
    count: int | None = None
    cursor: str | None = None
    used: list[tuple[str, str]] = []
    for key, value in items:
        if key == "_since":
            since = _instant(value)
            used.append((key, value))
        elif key == "_type":
            wanted = {t.strip() for t in value.split(",") if t.strip()}
            unknown = sorted(t for t in wanted if t not in served)
            if not wanted or unknown:
                what = ", ".join(unknown) if unknown else "no type"
                raise FhirError.one(400, "invalid", f"_type: {what} is not served here", "_type")
            types = wanted if types is None else types & wanted
            used.append((key, value))
        elif key == "_count":
            if not value.isascii() or not value.isdigit() or len(value) > 6 or int(value) < 1:
                raise FhirError.one(400, "invalid", "_count must be a whole number from 1", key)
            count = int(value)
        elif key == "_cursor":
            cursor = value
        elif key not in _HARMLESS and strict:
            raise FhirError.one(400, "not-supported", f"$everything takes no {key!r}", key)
    return EverythingQuery(
        since, None if types is None else frozenset(types), count, cursor, tuple(used)
    )


def _instant(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in value:
        raise FhirError.one(400, "invalid", "_since must be an instant with a time zone", "_since")
    return moment


def since_keeps(resource: dict[str, Any], since: datetime | None) -> bool:
    """Whether a resource changed after ``since``: its ``meta.lastUpdated`` is later. One
    with no time, or a time that cannot be read, is kept: it may have changed."""
    if since is None:
        return True
    updated = (resource.get("meta") or {}).get("lastUpdated")
    if not isinstance(updated, str):
        return True
    try:
        return datetime.fromisoformat(updated.replace("Z", "+00:00")) > since
    except ValueError:
        return True


def references_in(
    resources: Iterable[dict[str, Any]], readable: Container[str]
) -> dict[str, tuple[str, str]]:
    """Every relative reference the resources hold, anywhere in them, to a readable type:
    ``Type/id`` -> (type, id), each once, in the order first met."""
    out: dict[str, tuple[str, str]] = {}
    for resource in resources:
        for ref in _references(resource):
            parsed = relative(ref)
            if parsed is not None and parsed[0] in readable:
                out.setdefault(f"{parsed[0]}/{parsed[1]}", parsed)
    return out


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item
            else:
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)
