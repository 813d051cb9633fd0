"""NyraAI's directory as FHIR R4: doctors (Practitioner,
https://hl7.org/fhir/R4/practitioner.html), their weekly availability (Schedule,
https://hl7.org/fhir/R4/schedule.html), branches (Location and Organization,
https://hl7.org/fhir/R4/location.html, https://hl7.org/fhir/R4/organization.html) and the
hospital (Organization).

Nyra lists neither doctors nor branches. A doctor is known by ``doctor_id`` and
``doctor_name`` on appointments and by ``GET /doctors/:id/availability``; a branch only by
its id (``branch_id`` on patients and appointments) and has no name; the hospital has
neither id nor name in the API. Nothing is invented: a name Nyra does not give is left out.

The hospital's Organization has the id ``{source}.hospital`` (:func:`hospital_id`). Nyra's
own ids are UUIDs, so no branch can have it; a branch id equal to :data:`HOSPITAL` is
refused rather than mapped onto the hospital. Each branch is an Organization ``partOf``
the hospital, with the id Nyra patients' ``managingOrganization`` already references, and
a Location with the same id, managed by that Organization.

These have no way back: the mappings are read-only. Field by field, see
``mappings/README.md``.
"""

from __future__ import annotations

from typing import Any

from mappings.common.context import NyraContext
from mappings.common.fhir import (
    EXT_SLOT_LENGTH,
    SOURCE_SYSTEM,
    extra_extension,
    identifier_system,
    minutes,
)
from mappings.common.names import split_name
from mappings.common.record import VendorRecord
from mappings.errors import IdError, InvalidVendorRecord

__all__ = [
    "HOSPITAL",
    "hospital_id",
    "slot_minutes_of",
    "to_fhir_location",
    "to_fhir_organization",
    "to_fhir_practitioner",
    "to_fhir_schedule",
]

VENDOR = "Nyra"
#: The vendor id the hospital's own Organization is given (Nyra has none for it).
HOSPITAL = "hospital"


def hospital_id(ctx: NyraContext) -> str:
    """The global id of the hospital's Organization: ``{source}.hospital``.

    Nyra's ids are UUIDs, so this id cannot be a branch's.
    """
    return ctx.id(HOSPITAL)


def slot_minutes_of(answer: Any) -> int | None:
    """The slot length in a Nyra slots or availability ``data`` object
    (``slot_duration_minutes``), when it is a positive integer; else ``None``."""
    value = answer.get("slot_duration_minutes") if isinstance(answer, dict) else None
    return value if type(value) is int and value > 0 else None


def to_fhir_practitioner(doctor: dict[str, Any], ctx: NyraContext) -> dict[str, Any]:
    """A Nyra doctor (``{"id", "name"?}``, as its appointments name it) as a FHIR R4
    Practitioner dict."""
    r = VendorRecord(VENDOR, doctor)
    vendor_id = r.text("id", required=True)
    try:
        fhir_id = ctx.id(vendor_id)
    except IdError as exc:
        raise r.error("id", str(exc)) from exc
    practitioner: dict[str, Any] = {"resourceType": "Practitioner", "id": fhir_id}
    practitioner["meta"] = {"source": ctx.source}
    system = identifier_system(ctx.source, "doctor-id")
    practitioner["identifier"] = [{"system": system, "value": vendor_id}]
    name = r.loose_text("name")
    if name is not None:
        practitioner["name"] = [split_name(name)]
    leftovers = r.leftovers()
    if leftovers:
        practitioner["extension"] = [extra_extension(leftovers, VENDOR)]
    return practitioner


def to_fhir_schedule(
    availability: dict[str, Any], ctx: NyraContext, doctor_name: str | None = None
) -> dict[str, Any]:
    """A doctor's availability (``GET /doctors/:id/availability``) as a FHIR R4 Schedule
    with the id of the doctor's Practitioner.

    ``doctor_name`` is the name Nyra's appointments give the doctor (the availability
    does not carry one); it becomes the actor's display. The slot length is the
    slot-length extension; the weekly hours and the fee, which a Schedule has no element
    for, are kept in vendor-extra. Nyra gives no planning horizon.
    """
    r = VendorRecord(VENDOR, availability)
    doctor_id = r.text("doctor_id", required=True)
    try:
        fhir_id = ctx.id(doctor_id)
    except IdError as exc:
        raise r.error("doctor_id", str(exc)) from exc
    schedule: dict[str, Any] = {"resourceType": "Schedule", "id": fhir_id}
    schedule["meta"] = {"source": ctx.source}
    extensions: list[dict[str, Any]] = []
    slot = r.positive_int("slot_duration_minutes")
    if slot is not None:
        extensions.append({"url": EXT_SLOT_LENGTH, "valueDuration": minutes(slot)})
    leftovers = r.leftovers()
    if leftovers:
        extensions.append(extra_extension(leftovers, VENDOR))
    if extensions:
        schedule["extension"] = extensions
    actor: dict[str, Any] = {"reference": f"Practitioner/{fhir_id}"}
    if type(doctor_name) is str and doctor_name and not doctor_name.isspace():
        actor["display"] = doctor_name
    schedule["actor"] = [actor]
    return schedule


def to_fhir_location(branch_id: str, ctx: NyraContext) -> dict[str, Any]:
    """A Nyra branch as a FHIR R4 Location, managed by the branch's Organization.

    Nyra gives a branch no name, address or status, so the Location holds none.
    """
    fhir_id = _branch_id(branch_id, ctx)
    return {
        "resourceType": "Location",
        "id": fhir_id,
        "meta": {"source": ctx.source},
        "identifier": [_branch_identifier(branch_id, ctx)],
        "managingOrganization": {"reference": f"Organization/{fhir_id}"},
    }


def to_fhir_organization(branch_id: str | None, ctx: NyraContext) -> dict[str, Any]:
    """The hospital's Organization (``branch_id`` None), or a branch's, ``partOf`` the
    hospital.

    Neither has a name: Nyra gives none. R4's org-1 wants a name or an identifier, so a
    branch carries its branch id, and the hospital the source's configured name (system
    ``NS/sid/source``): the only name this facade has for it.
    """
    if branch_id is None:
        return {
            "resourceType": "Organization",
            "id": hospital_id(ctx),
            "meta": {"source": ctx.source},
            "identifier": [{"system": SOURCE_SYSTEM, "value": ctx.source}],
        }
    return {
        "resourceType": "Organization",
        "id": _branch_id(branch_id, ctx),
        "meta": {"source": ctx.source},
        "identifier": [_branch_identifier(branch_id, ctx)],
        "partOf": {"reference": f"Organization/{hospital_id(ctx)}"},
    }


def _branch_identifier(branch_id: str, ctx: NyraContext) -> dict[str, Any]:
    return {"system": identifier_system(ctx.source, "branch-id"), "value": branch_id}


def _branch_id(branch_id: Any, ctx: NyraContext) -> str:
    """The global id of a branch, checked as Nyra records' ``branch_id`` field."""
    if type(branch_id) is not str:
        raise InvalidVendorRecord(
            VENDOR, "branch_id", f"expected a string, got {type(branch_id).__name__}"
        )
    if not branch_id or branch_id.isspace():
        raise InvalidVendorRecord(VENDOR, "branch_id", "missing required field")
    if branch_id == HOSPITAL:
        raise InvalidVendorRecord(
            VENDOR, "branch_id", "is the id reserved for the hospital's Organization"
        )
    try:
        return ctx.id(branch_id)
    except IdError as exc:
        raise InvalidVendorRecord(VENDOR, "branch_id", str(exc)) from exc
