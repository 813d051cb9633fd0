"""Leyr's directory as FHIR R4: resources (practitioners and equipment), their schedules,
care units and healthcare services.

- a resource of ``type`` ``"equipment"`` (a room, a machine) is a Device
  (https://hl7.org/fhir/R4/device.html), any other a Practitioner
  (https://hl7.org/fhir/R4/practitioner.html); each has one Schedule
  (https://hl7.org/fhir/R4/schedule.html) with the same id;
- a care unit is both a Location and an Organization with the same id, the one Leyr
  patients' ``managingOrganization`` and appointments' Location participants reference;
- a healthcare service (an appointment type) is a HealthcareService
  (https://hl7.org/fhir/R4/healthcareservice.html).

These have no way back: Leyr's directory is read-only. Nothing is invented: a name the
vendor does not give is left out. Fields this project does not know, and values no standard
element can carry, are kept in the vendor-extra extension. Field by field, see
``mappings/README.md``.
"""

from __future__ import annotations

from typing import Any

from mappings.common.context import LeyrContext
from mappings.common.fhir import EXT_DURATION, extra_extension, identifier_system, minutes
from mappings.common.names import split_name
from mappings.common.national_ids import HSA_ID, national_system
from mappings.common.record import VendorRecord, is_code
from mappings.errors import IdError
from mappings.leyr.appointment import healthcare_service_system
from mappings.leyr.ids import hsa_identifier

__all__ = [
    "is_equipment",
    "to_fhir_device",
    "to_fhir_healthcare_service",
    "to_fhir_location",
    "to_fhir_organization",
    "to_fhir_practitioner",
    "to_fhir_resource",
    "to_fhir_schedule",
]

VENDOR = "Leyr"
# Leyr resource `type` values, each carried by the resource type it maps to.
_PRACTITIONER = "practitioner"
_EQUIPMENT = "equipment"


def is_equipment(record: Any) -> bool:
    """Whether a Leyr resource record is equipment (a Device) rather than a person."""
    return isinstance(record, dict) and record.get("type") == _EQUIPMENT


def to_fhir_resource(record: dict[str, Any], ctx: LeyrContext) -> dict[str, Any]:
    """A Leyr resource as a Device when it is equipment, else as a Practitioner."""
    if is_equipment(record):
        return to_fhir_device(record, ctx)
    return to_fhir_practitioner(record, ctx)


def to_fhir_practitioner(record: dict[str, Any], ctx: LeyrContext) -> dict[str, Any]:
    """A Leyr resource (a practitioner) as a FHIR R4 Practitioner dict."""
    r, fhir_id, vendor_id, _ = _scoped(record, ctx)
    practitioner: dict[str, Any] = {"resourceType": "Practitioner", "id": fhir_id}
    practitioner["meta"] = {"source": ctx.source}
    _kind(r, _PRACTITIONER)
    practitioner["identifier"] = _identifiers(r, vendor_id, ctx)
    name = r.loose_text("name")
    if name is not None:
        practitioner["name"] = [split_name(name)]
    return _finish(r, practitioner)


def to_fhir_device(record: dict[str, Any], ctx: LeyrContext) -> dict[str, Any]:
    """A Leyr resource (equipment: a room, a machine) as a FHIR R4 Device dict, owned by
    and located at its care unit."""
    r, fhir_id, vendor_id, cu = _scoped(record, ctx)
    device: dict[str, Any] = {"resourceType": "Device", "id": fhir_id}
    device["meta"] = {"source": ctx.source}
    _kind(r, _EQUIPMENT)
    device["identifier"] = _identifiers(r, vendor_id, ctx)
    name = r.loose_text("name")
    if name is not None:
        device["deviceName"] = [{"name": name, "type": "user-friendly-name"}]
    device["owner"] = _unit_ref(ctx, "Organization", cu)
    device["location"] = _unit_ref(ctx, "Location", cu)
    return _finish(r, device)


def to_fhir_schedule(record: dict[str, Any], ctx: LeyrContext) -> dict[str, Any]:
    """The Schedule of a Leyr resource: same id as its Practitioner or Device.

    Leyr gives no slot length per resource (lengths belong to healthcare services) and no
    planning horizon, so the Schedule holds neither; the resource's other fields are its
    Practitioner's or Device's, not repeated here.
    """
    r, fhir_id, _, _ = _scoped(record, ctx)
    kind = "Device" if is_equipment(record) else "Practitioner"
    actor: dict[str, Any] = {"reference": f"{kind}/{fhir_id}"}
    name = r.loose_text("name")
    if name is not None:
        actor["display"] = name
    return {
        "resourceType": "Schedule",
        "id": fhir_id,
        "meta": {"source": ctx.source},
        "actor": [actor],
    }


def to_fhir_location(care_unit: dict[str, Any], ctx: LeyrContext) -> dict[str, Any]:
    """A Leyr care unit as a FHIR R4 Location, managed by the care unit's Organization."""
    r, fhir_id, cu = _care_unit(care_unit, ctx)
    location: dict[str, Any] = {"resourceType": "Location", "id": fhir_id}
    location["meta"] = {"source": ctx.source}
    location["identifier"] = [_care_unit_identifier(cu, ctx)]
    name = r.loose_text("name")
    organization: dict[str, Any] = {"reference": f"Organization/{fhir_id}"}
    if name is not None:
        location["name"] = name
        organization["display"] = name
    location["managingOrganization"] = organization
    return _finish(r, location)


def to_fhir_organization(care_unit: dict[str, Any], ctx: LeyrContext) -> dict[str, Any]:
    """A Leyr care unit as a FHIR R4 Organization.

    Its identifier is the care unit id, so an unnamed care unit still meets R4's org-1
    (an Organization has a name or an identifier).
    """
    r, fhir_id, cu = _care_unit(care_unit, ctx)
    organization: dict[str, Any] = {"resourceType": "Organization", "id": fhir_id}
    organization["meta"] = {"source": ctx.source}
    organization["identifier"] = [_care_unit_identifier(cu, ctx)]
    name = r.loose_text("name")
    if name is not None:
        organization["name"] = name
    return _finish(r, organization)


def to_fhir_healthcare_service(service: dict[str, Any], ctx: LeyrContext) -> dict[str, Any]:
    """A Leyr healthcare service (an appointment type of a care unit) as a FHIR R4
    HealthcareService, provided by and at its care unit.

    Its ``type`` is the same coding Leyr appointments carry in ``serviceType``, so a
    client can match an appointment to the service it books.
    """
    r, fhir_id, vendor_id, cu = _scoped(service, ctx)
    out: dict[str, Any] = {"resourceType": "HealthcareService", "id": fhir_id}
    out["meta"] = {"source": ctx.source}
    extensions: list[dict[str, Any]] = []
    duration = r.positive_int("duration_minutes")
    if duration is not None:
        extensions.append({"url": EXT_DURATION, "valueDuration": minutes(duration)})
    out["providedBy"] = _unit_ref(ctx, "Organization", cu)
    name = r.loose_text("name")
    if is_code(vendor_id):
        coding: dict[str, Any] = {"system": healthcare_service_system(ctx.source)}
        coding["code"] = vendor_id
        if name is not None:
            coding["display"] = name
        out["type"] = [{"coding": [coding]}]
    out["location"] = [_unit_ref(ctx, "Location", cu)]
    if name is not None:
        out["name"] = name
    return _finish(r, out, extensions)


def _scoped(record: dict[str, Any], ctx: LeyrContext) -> tuple[VendorRecord, str, str, str]:
    """The record, its global id, its vendor id and its care unit (resources, services)."""
    r = VendorRecord(VENDOR, record)
    vendor_id = r.text("id", required=True)
    cu = r.text("care_unit_id", required=True)
    try:
        fhir_id = ctx.id(vendor_id, cu)
    except IdError as exc:
        raise r.error("id", str(exc)) from exc
    return r, fhir_id, vendor_id, cu


def _care_unit(record: dict[str, Any], ctx: LeyrContext) -> tuple[VendorRecord, str, str]:
    """The care unit record, its global id (no scope: care units are the scopes) and its
    vendor id."""
    r = VendorRecord(VENDOR, record)
    cu = r.text("id", required=True)
    try:
        return r, ctx.id(cu), cu
    except IdError as exc:
        raise r.error("id", str(exc)) from exc


def _care_unit_identifier(cu: str, ctx: LeyrContext) -> dict[str, Any]:
    return {"system": identifier_system(ctx.source, "care-unit-id"), "value": cu}


def _kind(r: VendorRecord, expected: str) -> None:
    """``type`` is carried by the resource type when it says what that type means; any
    other value stays in vendor-extra."""
    if r.data.get("type") == expected:
        r.used.add("type")


def _identifiers(r: VendorRecord, vendor_id: str, ctx: LeyrContext) -> list[dict[str, Any]]:
    """The resource id as Leyr gave it, and the HSA-id: from ``hsa_id`` and from a typed
    ``hsa_id:`` resource id, once when both say the same. An ``hsa_id`` that is not an
    HSA-id in form claims nothing (it stays in vendor-extra)."""
    out = [{"system": identifier_system(ctx.source, "resource-id"), "value": vendor_id}]
    hsa = r.data.get("hsa_id")
    if type(hsa) is str and national_system(hsa, "hsa_id") == HSA_ID:
        r.used.add("hsa_id")
        out.append({"system": HSA_ID, "value": hsa})
    typed = hsa_identifier(vendor_id)
    if typed is not None and typed["value"] != hsa:
        out.append(typed)
    return out


def _unit_ref(ctx: LeyrContext, kind: str, cu: str) -> dict[str, Any]:
    """A reference to the care unit's Location or Organization, named when the directory
    knows its name."""
    ref: dict[str, Any] = {"reference": ctx.ref(kind, cu)}
    name = ctx.directory.care_units.get(cu)
    if name is not None:
        ref["display"] = name
    return ref


def _finish(
    r: VendorRecord, resource: dict[str, Any], extensions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Add the vendor-extra extension when the record holds more than the resource shows."""
    extensions = [*(extensions or ())]
    leftovers = r.leftovers()
    if leftovers:
        extensions.append(extra_extension(leftovers, VENDOR))
    if extensions:
        resource["extension"] = extensions
    return resource
