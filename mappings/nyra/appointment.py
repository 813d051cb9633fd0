"""NyraAI appointment <-> FHIR R4 Appointment (https://hl7.org/fhir/R4/appointment.html).

Nyra's list items carry ``appointment_time`` with the hospital's offset and no end; the
end is the doctor's slot length later (``NyraContext.slot_for``). Bookings take a local
date and time in the hospital's zone instead: :func:`to_nyra_booking`.
Field by field, see ``mappings/README.md``.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from mappings.common.appointment import actor, status_from_fhir, status_to_fhir
from mappings.common.context import NyraContext
from mappings.common.fhir import extra_extension, read_extra, resource_str
from mappings.common.record import VendorRecord
from mappings.common.refs import own_id, participant, reference_id
from mappings.common.time import (
    format_instant,
    instant_to_local,
    local_to_instant,
    parse_date,
    parse_instant,
    zone,
)
from mappings.errors import IdError, InvalidResource, LocalTimeError
from mappings.nyra.codes import APPOINTMENT_STATUS, APPOINTMENT_TYPE

__all__ = ["from_fhir_appointment", "to_fhir_appointment", "to_nyra_booking"]

VENDOR = "Nyra"


def to_fhir_appointment(record: dict[str, Any], ctx: NyraContext) -> dict[str, Any]:
    """A Nyra appointment record as a FHIR R4 Appointment dict."""
    r = VendorRecord(VENDOR, record)
    vendor_id = r.text("id", required=True)
    try:
        appointment: dict[str, Any] = {"resourceType": "Appointment", "id": ctx.id(vendor_id)}
    except IdError as exc:
        raise r.error("id", str(exc)) from exc
    meta: dict[str, Any] = {"source": ctx.source}
    appointment["meta"] = meta
    updated = _instant(r, "updated_at")
    if updated is not None:
        meta["lastUpdated"] = updated[1]
    extensions = status_to_fhir(r, "status", APPOINTMENT_STATUS, appointment)

    kind = r.code("type")
    if kind is not None:
        # A type this project does not know yet keeps its vendor coding alone.
        coding = [{"system": APPOINTMENT_TYPE.vendor_system, "code": kind}]
        standard = APPOINTMENT_TYPE.to_fhir(kind)
        if standard is not None:
            coding.append({"system": APPOINTMENT_TYPE.fhir_system, "code": standard})
        appointment["appointmentType"] = {"coding": coding}

    doctor_id = r.text("doctor_id")
    start = _start(r, ctx)
    if start is not None:
        minutes = ctx.slot_for(doctor_id)
        appointment["start"] = start[1]
        appointment["end"] = format_instant(start[0] + timedelta(minutes=minutes))
        appointment["minutesDuration"] = minutes
    created = _instant(r, "created_at")
    if created is not None:
        appointment["created"] = created[1]
    notes = r.text("notes")
    if notes is not None:
        appointment["comment"] = notes

    patient_id = r.text("patient_id", required=True)
    participants = [
        actor(_ref(r, ctx, "Patient", "patient_id", patient_id), r.text("patient_name"))
    ]
    doctor_name = r.text("doctor_name")
    if doctor_id is not None:
        ref = _ref(r, ctx, "Practitioner", "doctor_id", doctor_id)
        participants.append(actor(ref, doctor_name))
    elif doctor_name is not None:
        r.used.discard("doctor_name")  # a name with no doctor to attach it to stays as sent
    branch_id = r.text("branch_id")
    if branch_id is not None:
        participants.append(actor(_ref(r, ctx, "Location", "branch_id", branch_id)))
    appointment["participant"] = participants

    leftovers = r.leftovers()
    if leftovers:
        extensions.append(extra_extension(leftovers, VENDOR))
    if extensions:
        appointment["extension"] = extensions
    return appointment


def _instant(r: VendorRecord, key: str) -> tuple[datetime, str] | None:
    text = r.text(key)
    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise r.error(key, str(exc) if "offset" in str(exc) else "not an ISO 8601 time") from None


def _start(r: VendorRecord, ctx: NyraContext) -> tuple[datetime, str] | None:
    """``appointment_time`` as an instant.

    Nyra lists give it with the hospital's offset. Where a response gives the booking
    form instead (a local ``appointment_time``, alone as a naive ISO timestamp or as
    ``HH:MM:SS`` beside ``appointment_date``), it is read in the hospital's zone.
    """
    text = r.text("appointment_time")
    if text is None:
        return None
    try:
        if "T" in text:
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is not None:
                return parse_instant(text)
            local_day, local_clock = parsed.date(), parsed.time()
        else:
            day = r.text("appointment_date", required=True)
            local_day, local_clock = parse_date(day), time.fromisoformat(text)
    except ValueError:
        raise r.error("appointment_time", "not an ISO 8601 time") from None
    try:
        moment = local_to_instant(local_day, local_clock, ctx.timezone)
    except LocalTimeError as exc:
        raise r.error("appointment_time", str(exc)) from None
    return moment, format_instant(moment)


def _ref(r: VendorRecord, ctx: NyraContext, kind: str, key: str, value: str) -> str:
    try:
        return ctx.ref(kind, value)
    except IdError as exc:
        raise r.error(key, str(exc)) from exc


def from_fhir_appointment(resource: dict[str, Any], ctx: NyraContext) -> dict[str, Any]:
    """A FHIR R4 Appointment dict as a Nyra appointment record (the list-item shape)."""
    record: dict[str, Any] = {}
    if resource.get("id") is not None:
        record["id"] = own_id(resource["id"], ctx, "Appointment.id", scoped=False).vendor_id
    record["status"] = status_from_fhir(resource, APPOINTMENT_STATUS, VENDOR)
    for kind, key, display in (
        ("Patient", "patient_id", "patient_name"),
        ("Practitioner", "doctor_id", "doctor_name"),
        ("Location", "branch_id", None),
    ):
        i, member = participant(resource, kind)
        if member is None:
            continue
        expr = f"Appointment.participant[{i}].actor"
        record[key] = reference_id(member, kind, ctx, expr, scoped=False).vendor_id
        if display is not None and isinstance(member.get("display"), str):
            record[display] = member["display"]
    if "patient_id" not in record:
        raise InvalidResource("Appointment.participant", "names no Patient")

    start = resource_str(resource, "start", "Appointment")
    if start is not None:
        record["appointment_time"] = _in_hospital_zone(start, ctx)
    appointment_type = _appointment_type(resource)
    if appointment_type is not None:
        record["type"] = appointment_type
    notes = resource_str(resource, "comment", "Appointment")
    if notes is not None:
        record["notes"] = notes
    created = resource_str(resource, "created", "Appointment")
    # Appointment.created is a dateTime and may be a bare date; Nyra keeps only instants.
    if created is not None and _is_instant(created):
        record["created_at"] = created
    updated = (resource.get("meta") or {}).get("lastUpdated")
    if isinstance(updated, str):
        record["updated_at"] = updated
    record.update(read_extra(resource, "Appointment"))
    return record


def _in_hospital_zone(start: str, ctx: NyraContext) -> str:
    """``start`` with the hospital's offset; unchanged when it already has it."""
    try:
        moment, _ = parse_instant(start)
    except ValueError:
        raise InvalidResource("Appointment.start", "not an instant with offset") from None
    local = moment.astimezone(zone(ctx.timezone))
    if local.utcoffset() == moment.utcoffset():
        return start
    return format_instant(local)


def _is_instant(text: str) -> bool:
    try:
        parse_instant(text)
    except ValueError:
        return False
    return True


def _appointment_type(resource: dict[str, Any]) -> str | None:
    concept = resource.get("appointmentType")
    codings = concept.get("coding") or () if isinstance(concept, dict) else ()
    by_system = {c.get("system"): c.get("code") for c in codings if isinstance(c, dict)}
    vendor = by_system.get(APPOINTMENT_TYPE.vendor_system)
    if isinstance(vendor, str):
        return vendor
    standard = by_system.get(APPOINTMENT_TYPE.fhir_system)
    if isinstance(standard, str):
        code = APPOINTMENT_TYPE.from_fhir(standard)
        if code is None:
            raise InvalidResource(
                "Appointment.appointmentType", f"Nyra has no appointment type for {standard!r}"
            )
        return code
    return None


def to_nyra_booking(resource: dict[str, Any], ctx: NyraContext) -> dict[str, Any]:
    """The body of Nyra's ``POST /appointments`` for a FHIR Appointment.

    Nyra takes the hospital's local date and time and no end: an end other than the
    doctor's slot length is refused rather than silently dropped, and so is an instant the
    local time cannot name (the second pass through a daylight-saving fold).
    """
    record = from_fhir_appointment(resource, ctx)
    if "appointment_time" not in record:
        raise InvalidResource("Appointment.start", "missing required element")
    if "doctor_id" not in record:
        raise InvalidResource("Appointment.participant", "names no Practitioner (Nyra doctor)")
    moment, _ = parse_instant(record.pop("appointment_time"))
    minutes = ctx.slot_for(record["doctor_id"])
    end = resource_str(resource, "end", "Appointment")
    if end is not None:
        try:
            end_moment, _ = parse_instant(end)
        except ValueError:
            raise InvalidResource("Appointment.end", "not an instant with offset") from None
        if end_moment - moment != timedelta(minutes=minutes):
            raise InvalidResource(
                "Appointment.end", f"Nyra appointments last the doctor's slot ({minutes} min)"
            )
    try:
        local = instant_to_local(moment, ctx.timezone)
    except LocalTimeError as exc:
        raise InvalidResource("Appointment.start", str(exc)) from None
    body: dict[str, Any] = {
        k: record[k]
        for k in ("patient_id", "patient_name", "doctor_id", "branch_id", "type", "notes")
        if k in record
    }
    body["appointment_date"] = local.date().isoformat()
    body["appointment_time"] = local.time().isoformat(timespec="seconds")
    # Nyra: booking_source distinguishes manual bookings from integrations.
    body["booking_source"] = "API"
    return body
