"""Leyr appointment <-> FHIR R4 Appointment (https://hl7.org/fhir/R4/appointment.html).

Field by field, see ``mappings/README.md``.
"""

from __future__ import annotations

from typing import Any

from mappings.common.appointment import actor, instant_field, status_from_fhir, status_to_fhir
from mappings.common.context import LeyrContext
from mappings.common.fhir import code_system_url, extra_extension, read_extra, resource_str
from mappings.common.record import VendorRecord
from mappings.common.refs import own_id, participant, reference_id
from mappings.errors import IdError, InvalidResource
from mappings.leyr.codes import APPOINTMENT_STATUS
from mappings.leyr.ids import hsa_identifier

__all__ = ["from_fhir_appointment", "healthcare_service_system", "to_fhir_appointment"]

VENDOR = "Leyr"


def healthcare_service_system(source: str) -> str:
    """The CodeSystem of a Leyr source's healthcare services (its appointment types)."""
    return code_system_url(f"{source}/healthcare-service")


def to_fhir_appointment(record: dict[str, Any], ctx: LeyrContext) -> dict[str, Any]:
    """A Leyr appointment record as a FHIR R4 Appointment dict.

    With names in ``ctx.directory``, the care unit, resource and service references carry
    them as ``display``, and a resource that is equipment is referenced as a ``Device``.
    """
    r = VendorRecord(VENDOR, record)
    vendor_id = r.text("id", required=True)
    cu = r.text("care_unit_id", required=True)
    try:
        appointment: dict[str, Any] = {"resourceType": "Appointment", "id": ctx.id(vendor_id, cu)}
    except IdError as exc:
        raise r.error("id", str(exc)) from exc
    appointment["meta"] = {"source": ctx.source}
    extensions = status_to_fhir(r, "status", APPOINTMENT_STATUS, appointment)

    directory = ctx.directory
    service = r.code("healthcare_service_id")
    if service is not None:
        coding = {"system": healthcare_service_system(ctx.source), "code": service}
        service_name = directory.services.get((cu, service))
        if service_name is not None:
            coding["display"] = service_name
        appointment["serviceType"] = [{"coding": [coding]}]
    start = instant_field(r, "start")
    end = instant_field(r, "end")
    if start is not None:
        appointment["start"] = start[1]
    if end is not None:
        appointment["end"] = end[1]
    if start is not None and end is not None and end[0] < start[0]:
        raise r.error("end", "is before start")
    comment = r.text("comment")
    if comment is not None:
        appointment["comment"] = comment

    participants = []
    patient_id = r.text("patient_id")
    if patient_id is not None:
        participants.append(actor(_ref(r, ctx, "Patient", "patient_id", patient_id, cu)))
    resource_id = r.text("resource_id")
    if resource_id is not None:
        # Equipment (a room, a machine) is a Device; the directory says which is which.
        key = (cu, resource_id)
        kind = "Device" if key in directory.devices else "Practitioner"
        ref = _ref(r, ctx, kind, "resource_id", resource_id, cu)
        member = actor(ref, directory.resources.get(key))
        hsa = hsa_identifier(resource_id)
        if hsa is not None:
            member["actor"]["identifier"] = hsa
        participants.append(member)
    participants.append(actor(ctx.ref("Location", cu), directory.care_units.get(cu)))
    appointment["participant"] = participants

    leftovers = r.leftovers()
    if leftovers:
        extensions.append(extra_extension(leftovers, VENDOR))
    if extensions:
        appointment["extension"] = extensions
    return appointment


def _ref(r: VendorRecord, ctx: LeyrContext, kind: str, key: str, value: str, cu: str) -> str:
    try:
        return ctx.ref(kind, value, cu)
    except IdError as exc:
        raise r.error(key, str(exc)) from exc


def from_fhir_appointment(resource: dict[str, Any], ctx: LeyrContext) -> dict[str, Any]:
    """A FHIR R4 Appointment dict as a Leyr appointment record (displays are not read)."""
    record: dict[str, Any] = {}
    cu: str | None = None
    if resource.get("id") is not None:
        gid = own_id(resource["id"], ctx, "Appointment.id", scoped=True)
        record["id"] = gid.vendor_id
        cu = gid.scope
    i, location = participant(resource, "Location")
    if location is not None:
        loc = reference_id(
            location, "Location", ctx, f"Appointment.participant[{i}].actor", scoped=False
        )
        if cu is not None and loc.vendor_id != cu:
            raise InvalidResource(
                f"Appointment.participant[{i}].actor", "is not the appointment's care unit"
            )
        cu = loc.vendor_id
    if cu is None:
        raise InvalidResource("Appointment.participant", "names no Location (Leyr care unit)")
    record["care_unit_id"] = cu
    record["status"] = status_from_fhir(resource, APPOINTMENT_STATUS, VENDOR)

    # Leyr books one resource: a Practitioner, else a Device (equipment).
    for kinds, key in ((("Patient",), "patient_id"), (("Practitioner", "Device"), "resource_id")):
        for kind in kinds:
            i, member = participant(resource, kind)
            if member is not None:
                break
        if member is None:
            continue
        gid = reference_id(member, kind, ctx, f"Appointment.participant[{i}].actor", scoped=True)
        if gid.scope != cu:
            raise InvalidResource(
                f"Appointment.participant[{i}].actor", "belongs to another care unit"
            )
        record[key] = gid.vendor_id

    system = healthcare_service_system(ctx.source)
    for concept in resource.get("serviceType") or ():
        for coding in concept.get("coding") or () if isinstance(concept, dict) else ():
            if isinstance(coding, dict) and coding.get("system") == system:
                record.setdefault("healthcare_service_id", coding.get("code"))
    for key in ("start", "end", "comment"):
        value = resource_str(resource, key, "Appointment")
        if value is not None:
            record[key] = value

    record.update(read_extra(resource, "Appointment"))
    return record
