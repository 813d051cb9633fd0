"""Free time as FHIR Slots (https://hl7.org/fhir/R4/slot.html), for booking.

A Slot search names one practitioner (``schedule.actor=Practitioner/{id}``) and a start
window (``start=ge...&start=lt...``, at most 31 days): vendors give free time per doctor
and day. Each Slot's Schedule has the practitioner's id, so ``schedule.actor`` reads back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from adapter.connectors.base import Page, ResourceCapability, offset_page
from adapter.fhir.dates import search_window
from adapter.fhir.match import matches
from adapter.fhir.search import SearchRequest, UnsupportedParameter
from mappings.common.context import SourceContext

__all__ = [
    "MAX_DAYS",
    "SLOT_PARAMS",
    "SlotQuery",
    "slot_capability",
    "slot_page",
    "slot_query",
    "slot_resource",
]

MAX_DAYS = 31
SLOT_PARAMS = frozenset({"schedule.actor", "start", "status"})


def slot_capability(*extra_params: str) -> ResourceCapability:
    """Slots are searched, never read by id: the vendors hold no such record."""
    return ResourceCapability(
        SLOT_PARAMS | set(extra_params), interactions=frozenset({"search-type"})
    )


def slot_page(
    slots: list[dict[str, Any]], request: SearchRequest, cursor: str | None, zone: tzinfo
) -> Page:
    """A page of the free slots that match every parameter (the vendor list is whole)."""
    return offset_page(
        [s for s in slots if matches(s, request.params, zone)], request.count, cursor
    )


@dataclass(frozen=True)
class SlotQuery:
    practitioner: str  # the FHIR id
    first: date
    last: date
    empty: bool = False  # asks only for busy slots: none are served


def slot_query(request: SearchRequest, zone: tzinfo) -> SlotQuery:
    actors = request.named("schedule.actor")
    if len(actors) != 1 or len(actors[0].values) != 1:
        raise UnsupportedParameter("schedule.actor", "a Slot search names one Practitioner")
    practitioner = actors[0].values[0].rsplit("/", 1)[-1]
    first, last = search_window(request.named("start"), zone)
    if first is None or last is None:
        raise UnsupportedParameter("start", "a Slot search needs start=ge... and start=lt...")
    first_day, last_day = date.fromisoformat(first), date.fromisoformat(last)
    if (last_day - first_day).days > MAX_DAYS + 1:  # the window is a day wider each side
        raise UnsupportedParameter("start", f"a Slot search spans at most {MAX_DAYS} days")
    statuses = {v for p in request.named("status") for v in p.values}
    return SlotQuery(
        practitioner, first_day, last_day, empty=bool(statuses) and "free" not in statuses
    )


def slot_resource(
    ctx: SourceContext,
    practitioner_id: str,
    vendor_resource: str,
    scope: str | None,
    start: datetime,
    end: datetime,
    service: dict[str, Any] | None = None,
) -> dict[str, Any]:
    stamp = start.astimezone(UTC).strftime("%Y%m%dT%H%M")
    slot: dict[str, Any] = {
        "resourceType": "Slot",
        "id": ctx.id(f"{vendor_resource}-{stamp}", scope),
        "meta": {"source": ctx.source},
        "schedule": {"reference": f"Schedule/{practitioner_id}"},
        "status": "free",
        "start": start.isoformat(),
        "end": end.isoformat(),
    }
    if service is not None:
        slot["serviceType"] = [{"coding": [service]}]
    return slot
