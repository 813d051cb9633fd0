"""Writes through the gate: a create goes to the source the resource belongs to (an
Appointment to its Patient's source, a Patient to ``meta.source`` or the one writable
source), an update to the source its id names. Read-only sources take none; an
``If-None-Exist`` search runs at the target source first."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from adapter.facade import fanout
from adapter.facade.access import Caller
from adapter.facade.failures import not_found, outcome_of
from adapter.fhir.match import actor_references
from adapter.fhir.outcome import FhirError, Issue
from adapter.fhir.params import parse_search
from adapter.protocol import Written

if TYPE_CHECKING:
    from adapter.facade.service import Facade

__all__ = ["create", "update"]

# What pages or shapes a search's answer: no condition a resource could meet.
_NOT_CONDITIONS = frozenset(
    {
        "_count",
        "_cursor",
        "_elements",
        "_format",
        "_include",
        "_pretty",
        "_revinclude",
        "_sort",
        "_summary",
        "_total",
    }
)


async def create(
    facade: Facade,
    resource_type: str,
    resource: dict[str, Any],
    caller: Caller,
    if_none_exist: str | None,
    look_first: bool = False,
) -> Written:
    """Create at the source the resource belongs to; with ``if_none_exist`` (a search),
    the one match instead, if there is one (412 for more). ``look_first``: an earlier try
    of this write (the same Idempotency-Key) ended without a clear answer; the connector
    looks for what it may have made before sending anything."""
    facade.require_served(resource_type)
    with facade.write_deadline():
        written = await _create(facade, resource_type, resource, caller, if_none_exist, look_first)
    return await _versioned(facade, written)


async def _create(
    facade: Facade,
    resource_type: str,
    resource: dict[str, Any],
    caller: Caller,
    if_none_exist: str | None,
    look_first: bool,
) -> Written:
    source = await _source_for_create(facade, resource_type, resource, caller)
    if if_none_exist is not None:
        found = await _matching(facade, resource_type, source, if_none_exist)
        if len(found) > 1:
            raise FhirError.one(412, "duplicate", "If-None-Exist matches more than one resource")
        if found:
            return Written(found[0], created=False)
    connector = facade.connectors[source]
    try:
        if look_first:
            return await connector.create(resource_type, resource, look_first=True)
        return await connector.create(resource_type, resource)
    except Exception as exc:
        raise outcome_of(exc, source, writing=True, where=f"create at {source}") from None


async def update(
    facade: Facade,
    resource_type: str,
    fhir_id: str,
    resource: dict[str, Any],
    caller: Caller,
    if_match: str | None,
) -> Written:
    """Change a resource at the source its id names (an Appointment's move or cancel).
    With ``if_match`` (a version), only if the vendor still holds that version when the
    connector reads it right before the change; else 412, and the vendor is not called to
    change anything."""
    facade.require_served(resource_type)
    if resource.get("id") != fhir_id:
        raise FhirError.one(
            400, "invalid", "the body's id must be the id in the URL", f"{resource_type}.id"
        )
    source = facade.owner(fhir_id, caller)
    if source is None:
        raise not_found(resource_type, fhir_id)
    if source in facade.declared.read_only:
        raise FhirError.one(422, "not-supported", f"source {source} is read-only")
    try:
        with facade.write_deadline():
            connector = facade.connectors[source]
            if if_match is None:
                written = await connector.update(resource_type, fhir_id, resource)
            else:
                written = await connector.update(
                    resource_type, fhir_id, resource, if_match=if_match
                )
    except Exception as exc:
        raise outcome_of(exc, source, writing=True, where=f"update at {source}") from None
    return await _versioned(facade, written)


async def _versioned(facade: Facade, written: Written) -> Written:
    """What a write left, as a read would give it (``meta.versionId``, and
    ``meta.lastUpdated`` from the journal where the vendor gives none)."""
    return replace(written, resource=(await facade.stamped([written.resource]))[0])


async def _source_for_create(
    facade: Facade, resource_type: str, resource: dict[str, Any], caller: Caller
) -> str:
    """Where a new resource goes: an Appointment to its Patient's source; a Patient to
    ``meta.source``, else the one source that takes it, else a 422 saying how to choose."""
    writable = [n for n in facade.declared.writable(resource_type) if caller.sees(n)]
    if not writable:
        raise FhirError.one(405, "not-supported", f"no source takes new {resource_type}s")
    if resource_type == "Appointment":
        return await _patients_source(facade, resource, writable, caller)
    wanted = (resource.get("meta") or {}).get("source")
    where = f"{resource_type}.meta.source"
    if wanted is not None:
        if wanted not in facade.connectors or not caller.sees(wanted):
            choices = ", ".join(writable)
            raise FhirError.one(
                422,
                "not-found",
                f"meta.source names no configured source; use one of: {choices}",
                where,
            )
        if wanted not in writable:
            raise FhirError.one(
                422, "not-supported", f"source {wanted} does not take new {resource_type}s", where
            )
        return str(wanted)
    if len(writable) == 1:
        return writable[0]
    raise FhirError.one(
        422,
        "required",
        f"set meta.source to the source to create in: one of {', '.join(writable)}",
        where,
    )


async def _patients_source(
    facade: Facade, appointment: dict[str, Any], writable: list[str], caller: Caller
) -> str:
    refs = list(actor_references(appointment, "Patient"))
    if len(refs) != 1:
        raise FhirError.one(
            422, "required", "an Appointment names exactly one Patient", "Appointment.participant"
        )
    patient_id = refs[0].split("/", 1)[1]
    source = facade.owner(patient_id, caller)
    if source is not None:
        try:  # whether it is there; nothing of it leaves the service
            await facade.within_deadline(facade.read_at(source, "Patient", patient_id))
        except FhirError as exc:
            if exc.status != 404:
                raise
            source = None
    if source is None:
        raise FhirError.one(
            422, "not-found", f"{refs[0]} is not a known patient", "Appointment.participant"
        )
    if source not in writable:
        raise FhirError.one(422, "not-supported", f"source {source} takes no bookings")
    return source


async def _matching(
    facade: Facade, resource_type: str, source: str, condition: str
) -> list[dict[str, Any]]:
    """What an ``If-None-Exist`` search finds at the target source (two at the most)."""
    try:
        items = parse_qsl(condition.lstrip("?"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise FhirError.one(
            400, "invalid", "If-None-Exist holds an escape (%..) that is not UTF-8", "If-None-Exist"
        ) from None
    if not items:
        raise FhirError.one(400, "invalid", "If-None-Exist holds no search", "If-None-Exist")
    shaping = sorted({name for name, _ in items if name.partition(":")[0] in _NOT_CONDITIONS})
    if shaping:
        raise FhirError.one(
            400,
            "invalid",
            f"If-None-Exist holds the conditions of a search, not {', '.join(shaping)}",
            "If-None-Exist",
        )
    parsed = parse_search(
        resource_type,
        [*items, ("_count", "2")],
        supported=facade.declared.supported_params(resource_type),
        includes=(),
        sources=facade.connectors,
        strict=True,  # a condition that cannot be checked must not create blindly
        default_count=2,
        max_count=2,
    )
    state, issues = fanout.first_state(facade.declared, parsed, frozenset({source}), None)
    if issues:
        refused = [Issue("error", "not-supported", i.diagnostics, i.expression) for i in issues]
        raise FhirError(400, refused)
    return (await fanout.page(facade.connectors, state)).matches
