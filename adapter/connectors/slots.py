"""Free time as FHIR Slots (https://hl7.org/fhir/R4/slot.html), for booking.

A Slot search names one practitioner (``schedule.actor=Practitioner/{id}``) and a start
window (``start=ge...&start=lt...``, at most 31 days): vendors give free time per doctor
and day. Each Slot's Schedule has the practitioner's id, so ``schedule.actor`` reads back.

A Slot's id says where to look for it again: the vendor's resource (doctor), the start
(UTC, to the minute) and, where a vendor's free time depends on the kind of visit (Leyr),
a short digest of the service. Reading a Slot asks the vendor whether that time is still
free; booking by Slot (``Appointment.slot``) takes start, end, practitioner and service
from it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from adapter.connectors.base import Page, ResourceCapability, WriteRefused, offset_page
from adapter.fhir.dates import search_window
from adapter.fhir.match import CODE_SYSTEMS, actor_references, matches, token_matches
from adapter.fhir.search import SearchRequest, UnsupportedParameter
from mappings import MappingError, decode_id
from mappings.common.context import SourceContext

__all__ = [
    "MAX_DAYS",
    "SLOT_PARAMS",
    "SlotKey",
    "SlotQuery",
    "booked_from_slot",
    "parse_slot_id",
    "service_digest",
    "slot_capability",
    "slot_of",
    "slot_page",
    "slot_query",
    "slot_resource",
]

MAX_DAYS = 31
SLOT_PARAMS = frozenset({"_id", "schedule", "schedule.actor", "start", "status"})
_STAMP = "%Y%m%dT%H%M"


# The starts a Slot id may hold: a day either side of them, in any zone, is a date.
_FIRST_START = datetime(1, 1, 3, tzinfo=UTC)
_LAST_START = datetime(9999, 12, 29, tzinfo=UTC)


def slot_capability(*extra_params: str) -> ResourceCapability:
    """Slots are searched, and read by the id a search gave (while the time is free)."""
    return ResourceCapability(SLOT_PARAMS | set(extra_params))


def service_digest(service_id: str) -> str:
    """Eight hex digits standing for a service in a Slot id (ids must stay short)."""
    return hashlib.blake2b(service_id.encode(), digest_size=4).hexdigest()


@dataclass(frozen=True)
class SlotKey:
    """What a Slot id says: the source, the scope (Leyr: care unit), the vendor's resource
    (doctor), the start (UTC) and the service's digest (Leyr)."""

    source: str
    scope: str | None
    resource: str
    start: datetime
    service: str | None = None


def slot_id(
    ctx: SourceContext,
    vendor_resource: str,
    scope: str | None,
    start: datetime,
    service: str | None,
) -> str:
    stamp = start.astimezone(UTC).strftime(_STAMP)
    tail = f"-{service_digest(service)}" if service is not None else ""
    return ctx.id(f"{vendor_resource}-{stamp}{tail}", scope)


def parse_slot_id(fhir_id: str, with_service: bool) -> SlotKey | None:
    """The :class:`SlotKey` of a Slot id, or None for an id no Slot of ours has."""
    try:
        gid = decode_id(fhir_id)
    except MappingError:
        return None
    parts = gid.vendor_id.rsplit("-", 2 if with_service else 1)
    if len(parts) != (3 if with_service else 2) or not parts[0]:
        return None
    try:
        start = datetime.strptime(parts[1], _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None
    if not _FIRST_START <= start <= _LAST_START:
        return None  # no Slot of ours: its day, in any zone, would leave the calendar
    service = parts[2] if with_service else None
    if service is not None and (len(service) != 8 or service.strip("0123456789abcdef")):
        return None
    return SlotKey(gid.source, gid.scope, parts[0], start, service)


def slot_of(resource: dict[str, Any]) -> str | None:
    """The id of the Slot an Appointment to be booked names, if it names one."""
    slots = resource.get("slot")
    if slots is None:
        return None
    if not isinstance(slots, list) or len(slots) != 1 or not isinstance(slots[0], dict):
        raise WriteRefused("Appointment.slot", "name exactly one Slot to book")
    ref = slots[0].get("reference")
    if not isinstance(ref, str) or not ref.startswith("Slot/") or ref.count("/") != 1:
        raise WriteRefused("Appointment.slot", "a Slot is named by its reference, Slot/{id}")
    return ref.split("/", 1)[1]


def booked_from_slot(
    resource: dict[str, Any], slot: dict[str, Any], actor: str, actor_display: str | None = None
) -> dict[str, Any]:
    """The Appointment to book: ``resource`` with start, end, the practitioner (``actor``,
    the Slot's Schedule's actor) and the service taken from ``slot``. A value the body
    gives that contradicts the Slot is :class:`WriteRefused` naming it: the client meant
    something else, and guessing which would book the wrong visit."""
    out = dict(resource)
    slot_ref = f"Slot/{slot['id']}"
    for key in ("start", "end"):
        given = resource.get(key)
        if given is not None and not _same_instant(given, slot[key]):
            raise WriteRefused(f"Appointment.{key}", f"differs from the {key} of {slot_ref}")
        out[key] = slot[key]
    minutes = int(
        (
            datetime.fromisoformat(slot["end"]) - datetime.fromisoformat(slot["start"])
        ).total_seconds()
        // 60
    )
    if resource.get("minutesDuration") not in (None, minutes):
        raise WriteRefused("Appointment.minutesDuration", f"differs from the length of {slot_ref}")
    kind = actor.split("/", 1)[0]
    others = [
        ref
        for ref in actor_references(resource)
        if ref.split("/", 1)[0] in ("Practitioner", "Device") and ref != actor
    ]
    if others:
        raise WriteRefused(
            "Appointment.participant", f"{others[0]} is not the {kind} of {slot_ref}"
        )
    if actor not in actor_references(resource):
        member: dict[str, Any] = {"actor": {"reference": actor}, "status": "accepted"}
        if actor_display:
            member["actor"]["display"] = actor_display
        out["participant"] = [*resource.get("participant", []), member]
    wanted = [c for t in slot.get("serviceType") or () for c in t.get("coding") or ()]
    if wanted:
        systems = {c.get("system") for c in wanted}
        given = [
            c
            for t in resource.get("serviceType") or ()
            for c in (t.get("coding") or ())
            if c.get("system") in systems
        ]
        codes = {c.get("code") for c in wanted}
        if any(c.get("code") not in codes for c in given):
            raise WriteRefused("Appointment.serviceType", f"differs from the service of {slot_ref}")
        out["serviceType"] = slot["serviceType"]
    out.pop("slot", None)
    return out


def _same_instant(a: Any, b: str) -> bool:
    try:
        return datetime.fromisoformat(str(a)) == datetime.fromisoformat(b)
    except ValueError:
        return False


def slot_page(
    slots: list[dict[str, Any]], request: SearchRequest, cursor: str | None, zone: tzinfo
) -> Page:
    """A page of the free slots that match every parameter (the vendor list is whole)."""
    return offset_page(
        [s for s in slots if matches(s, request.params, zone)], request.count, cursor
    )


@dataclass(frozen=True)
class SlotQuery:
    """``first`` to ``last``: local dates (in the zone the query was read in) a day wider
    than asked on each side, for a vendor filter that may count days in another zone."""

    practitioner: str  # the FHIR id
    first: date
    last: date
    empty: bool = False  # asks only for busy slots: none are served

    def days(self) -> list[date]:
        """The local days a slot starting in the window can lie on, in the zone the query
        was read in, each once: for a vendor asked per day in that zone."""
        if self.empty:
            return []
        first, last = self.first + timedelta(days=1), self.last - timedelta(days=1)
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def slot_query(request: SearchRequest, zone: tzinfo) -> SlotQuery:
    # A Schedule has its Practitioner's id: schedule=Schedule/{id} names the same one.
    actors = [*request.named("schedule.actor"), *request.named("schedule")]
    if len(actors) != 1 or len(actors[0].values) != 1:
        raise UnsupportedParameter(
            "schedule.actor", "a Slot search names one Practitioner (or its Schedule)"
        )
    practitioner = actors[0].values[0].rsplit("/", 1)[-1]
    first, last = search_window(request.named("start"), zone)
    if first is None or last is None:
        raise UnsupportedParameter("start", "a Slot search needs start=ge... and start=lt...")
    first_day, last_day = date.fromisoformat(first), date.fromisoformat(last)
    if last_day < first_day:  # the start values contradict each other: nothing matches
        return SlotQuery("", first_day, first_day, empty=True)
    if (last_day - first_day).days > MAX_DAYS + 1:  # the window is a day wider each side
        raise UnsupportedParameter("start", f"a Slot search spans at most {MAX_DAYS} days")
    # Only free time is served: a status that cannot be ``free`` finds nothing.
    busy = any(
        not token_matches(param, [(CODE_SYSTEMS["Slot", "status"], "free")])
        for param in request.named("status")
    )
    return SlotQuery(practitioner, first_day, last_day, empty=busy)


def slot_resource(
    ctx: SourceContext,
    practitioner_id: str,
    vendor_resource: str,
    scope: str | None,
    start: datetime,
    end: datetime,
    service: dict[str, Any] | None = None,
) -> dict[str, Any]:
    slot: dict[str, Any] = {
        "resourceType": "Slot",
        "id": slot_id(
            ctx, vendor_resource, scope, start, None if service is None else service["code"]
        ),
        "meta": {"source": ctx.source},
        "schedule": {"reference": f"Schedule/{practitioner_id}"},
        "status": "free",
        "start": start.isoformat(),
        "end": end.isoformat(),
    }
    if service is not None:
        slot["serviceType"] = [{"coding": [service]}]
    return slot
