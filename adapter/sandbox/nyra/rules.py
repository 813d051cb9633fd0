"""What the hospital accepts: patient and booking validation, availability changes, and
how lists are searched and paged."""

from __future__ import annotations

import math
from datetime import datetime
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

from adapter.sandbox.common import Record, parse_date
from adapter.sandbox.data import NYRA_STATUSES, NYRA_TYPES
from adapter.sandbox.nyra.errors import bad, failure, not_found
from adapter.sandbox.nyra.keys import NyraGrant
from adapter.sandbox.nyra.state import WEEKDAYS, NyraState, sees

__all__ = [
    "book",
    "changed_availability",
    "matching",
    "page",
    "register_patient",
    "status_change",
]

MAX_LIMIT = 100


# -- patients ---------------------------------------------------------------------------


def register_patient(state: NyraState, body: Record, grant: NyraGrant) -> Record:
    """``POST /patients``: store the patient, and book an appointment when the body asks
    for one; the ids made. Nothing is stored unless both are valid."""
    patient = _new_patient(state, body, grant)
    data: Record = {"patient_id": patient["id"]}
    appointment = None
    if body.get("appointment_time") is not None or body.get("doctor_id") is not None:
        when = body.get("appointment_time")
        if not isinstance(when, str) or body.get("doctor_id") is None:
            raise bad("appointment_time and doctor_id are both needed to book")
        appointment = _new_appointment(
            state,
            {**body, **_split_local(when, state.zone), "patient_id": patient["id"]},
            grant,
            patient,
        )
        data["appointment_id"] = appointment["id"]
    state.patients.put(patient)
    if appointment is not None:
        state.appointments.put(appointment)
    return data


def _new_patient(state: NyraState, body: Record, grant: NyraGrant) -> Record:
    name, phone = body.get("name"), body.get("phone")
    if not isinstance(name, str) or not name.strip():
        raise bad("name is required")
    if not isinstance(phone, str) or not phone.strip():
        raise bad("phone is required")
    gender = body.get("gender")
    if gender is not None and gender not in ("MALE", "FEMALE", "OTHER"):
        raise bad("gender must be MALE, FEMALE or OTHER")
    born = body.get("date_of_birth")
    born_on = parse_date(born) if born is not None else None
    if born is not None and born_on is None:
        raise bad("date_of_birth must be YYYY-MM-DD")
    now = state.now_z()
    patient: Record = {"id": state.new_id(), "name": name.strip(), "phone": phone}
    for key in ("gender", "date_of_birth", "email", "address", "doctor_id"):
        if body.get(key) is not None:
            patient[key] = body[key]
    if born_on is not None:
        today = state.today()
        before_birthday = (today.month, today.day) < (born_on.month, born_on.day)
        patient["age"] = today.year - born_on.year - before_birthday
    elif isinstance(body.get("age"), int):
        patient["age"] = body["age"]
    patient["status"] = (
        body.get("status") if body.get("status") in ("ACTIVE", "INACTIVE") else "ACTIVE"
    )
    branch = grant.branch_id or body.get("branch_id") or state.first_branch()
    if branch is not None:
        patient["branch_id"] = branch
    patient["created_at"] = patient["updated_at"] = now
    return patient


def _split_local(when: str, zone: ZoneInfo) -> dict[str, str]:
    """``appointment_time`` given as one timestamp, as the booking form's date and time."""
    try:
        moment = datetime.fromisoformat(when)
    except ValueError:
        raise bad("appointment_time must be an ISO 8601 date and time") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(zone)
    return {
        "appointment_date": moment.date().isoformat(),
        "appointment_time": moment.strftime("%H:%M:%S"),
    }


# -- appointments -----------------------------------------------------------------------


def book(state: NyraState, body: Record, grant: NyraGrant) -> Record:
    """``POST /appointments``: store the appointment (and a new patient when the body
    names one by phone and name only); the appointment."""
    patient = None
    if body.get("patient_id") is not None:
        patient = state.patients.get(str(body["patient_id"]))
        if patient is None or not sees(grant, patient):
            raise not_found("Patient")
    elif not body.get("patient_phone") or not body.get("patient_name"):
        raise bad("patient_id, or patient_phone and patient_name, is required")
    appointment = _new_appointment(state, body, grant, patient)
    if patient is None:
        patient = _new_patient(
            state, {"name": body["patient_name"], "phone": body["patient_phone"]}, grant
        )
        appointment["patient_id"] = patient["id"]
        state.patients.put(patient)
    state.appointments.put(appointment)
    return appointment


def _new_appointment(
    state: NyraState, body: Record, grant: NyraGrant, patient: Record | None
) -> Record:
    doctor = state.doctors.get(str(body.get("doctor_id")))
    if doctor is None:
        raise bad("doctor_id does not name a doctor of this hospital")
    day = parse_date(body.get("appointment_date"))
    try:
        at: clock_time | None = clock_time.fromisoformat(body.get("appointment_time") or "")
    except (TypeError, ValueError):
        at = None
    if day is None or at is None or len(str(body.get("appointment_time"))) != 8:
        raise bad("appointment_date (YYYY-MM-DD) and appointment_time (HH:MM:SS) are required")
    kind = body.get("type", "CONSULTATION")
    if kind not in NYRA_TYPES:
        raise bad(f"type must be one of {', '.join(NYRA_TYPES)}")
    start = datetime.combine(day, at, state.zone)
    if start.timestamp() <= state.clock():
        raise bad("appointment time must be in the future")
    if at not in {s.time() for s, _ in state.free_slots(doctor["id"], day)}:
        raise failure(409, "Conflict", "Slot not available")
    record: Record = {
        "id": state.new_id(),
        "patient_id": patient["id"] if patient else None,
        "patient_name": patient["name"] if patient else body.get("patient_name"),
        "doctor_id": doctor["id"],
        "doctor_name": doctor.get("name"),
        "appointment_time": start.isoformat(),
        "status": "BOOKED",
        "branch_id": grant.branch_id or body.get("branch_id") or doctor.get("branch_id"),
        "type": kind,
    }
    if body.get("notes"):
        record["notes"] = body["notes"]
    record["booking_source"] = body.get("booking_source") or "API"
    record["created_at"] = state.now_z()
    return record


def status_change(appointment: Record, body: Record) -> Record:
    status = body.get("status")
    if status not in NYRA_STATUSES:
        raise bad(f"status must be one of {', '.join(NYRA_STATUSES)}")
    appointment["status"] = status
    return appointment


# -- availability -----------------------------------------------------------------------


def changed_availability(current: Record, body: Record) -> Record:
    """``current`` (a copy) with what a ``PUT .../availability`` body changes."""
    minutes = body.get("slot_duration_minutes", current["slot_duration_minutes"])
    if not isinstance(minutes, int) or not 5 <= minutes <= 240:
        raise bad("slot_duration_minutes must be an integer from 5 to 240")
    weekly = body.get("weekly", current["weekly"])
    if not isinstance(weekly, dict) or set(weekly) - set(WEEKDAYS):
        raise bad("weekly must map weekday names to time ranges")
    for ranges in weekly.values():
        for r in ranges:
            if not _range_ok(r):
                raise bad("each range needs start and end as HH:MM, start before end")
    current.update(slot_duration_minutes=minutes, weekly=weekly)
    if "consultation_fee" in body:
        current["consultation_fee"] = body["consultation_fee"]
    return current


def _range_ok(r: Any) -> bool:
    try:
        return clock_time.fromisoformat(r["start"]) < clock_time.fromisoformat(r["end"])
    except (KeyError, TypeError, ValueError):
        return False


# -- lists ------------------------------------------------------------------------------


def matching(rows: list[Record], q: str | None, keys: tuple[str, ...]) -> list[Record]:
    """Nyra's ``q``: a case-insensitive substring of any of ``keys``."""
    if not q:
        return rows
    needle = q.casefold()
    return [r for r in rows if any(needle in str(r.get(k) or "").casefold() for k in keys)]


def page(rows: list[Record], raw_page: str | None, raw_limit: str | None) -> Record:
    """One page of ``rows`` (``limit`` capped at :data:`MAX_LIMIT`), as Nyra's list data."""
    number, limit = _positive(raw_page, 1, "page"), _positive(raw_limit, 20, "limit")
    limit = min(limit, MAX_LIMIT)
    start = (number - 1) * limit
    return {
        "total": len(rows),
        "results": rows[start : start + limit],
        "page": number,
        "limit": limit,
        "total_pages": math.ceil(len(rows) / limit),
    }


def _positive(raw: str | None, default: int, name: str) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise bad(f"{name} must be a positive integer")
    return int(raw)
