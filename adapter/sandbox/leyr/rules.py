"""What the EHR accepts: patient and booking validation, free times, and the PATCH rules
(move, cancel, confirm a cancel)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from adapter.sandbox.common import Record, parse_date
from adapter.sandbox.leyr.errors import bad, error
from adapter.sandbox.leyr.state import ACTIVE, LeyrState, in_unit

__all__ = ["MAX_SLOT_DAYS", "new_appointment", "new_patient", "timeslots", "update"]

GENDERS = ("male", "female", "other", "unknown")
MAX_COMMENT = 500
MAX_SLOT_DAYS = 31
_CHANGEABLE = {"start", "end", "resource_id", "comment"}


# -- patients ---------------------------------------------------------------------------


def new_patient(state: LeyrState, cu: str, body: Record) -> Record:
    """The patient a create makes (not stored yet); 400 naming every problem."""
    problems = [
        ("MISSING_REQUIRED_FIELD", f"{key} is required", key)
        for key in ("first_name", "last_name")
        if not isinstance(body.get(key), str) or not body[key].strip()
    ]
    if body.get("gender") is not None and body["gender"] not in GENDERS:
        problems.append(("BAD_INPUT", f"gender must be one of {', '.join(GENDERS)}", "gender"))
    if body.get("birth_date") is not None and parse_date(body["birth_date"]) is None:
        problems.append(("BAD_INPUT", "birth_date must be YYYY-MM-DD", "birth_date"))
    for key in ("phones", "emails"):
        value = body.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            problems.append(("BAD_INPUT", f"{key} must be a list of strings", key))
    if problems:
        raise error(400, "BAD_REQUEST", "Request validation failed", *problems)
    record_id = state.next_id("p")
    patient = {"id": record_id, "emr_id": body.get("emr_id") or record_id, "care_unit_id": cu}
    for key, value in body.items():
        if key not in ("id", "emr_id", "care_unit_id") and value is not None:
            patient[key] = value
    return patient


# -- free times -------------------------------------------------------------------------


def timeslots(
    state: LeyrState,
    cu: str,
    service_id: str | None,
    resource_id: str | None,
    start_date: str | None,
    end_date: str | None,
) -> list[Record]:
    """Free times of one resource (or each of the unit's) for a service, day by day."""
    service = state.service(cu, service_id)
    resource_ids = [resource_id] if resource_id else [
        r["id"] for r in state.resources if in_unit(r, cu)
    ]  # fmt: skip
    for rid in resource_ids:
        if state.resource(cu, rid) is None:
            raise bad("INVALID_RESOURCE_ID", "Resource not found", "resource_id")
    first, last = parse_date(start_date), parse_date(end_date)
    if first is None or last is None or last < first:
        raise bad("BAD_INPUT", "start_date and end_date are required dates", "start_date")
    if (last - first).days >= MAX_SLOT_DAYS:
        raise bad("MAX_ITEMS_EXCEEDED", f"At most {MAX_SLOT_DAYS} days", "end_date")
    minutes = int(service.get("duration_minutes") or 30)
    out = []
    for rid in resource_ids:
        for start in _free(state, cu, rid, first, last, minutes):
            end = start + timedelta(minutes=minutes)
            out.append(
                {
                    "start": start.isoformat(),
                    "end": end.isoformat(),
                    "resource_id": rid,
                    "healthcare_service_id": service["id"],
                }
            )
    return out


def _free(
    state: LeyrState, cu: str, rid: str, first: date, last: date, minutes: int
) -> list[datetime]:
    # Free times lie within the care unit's opening hours (this simulator's choice; the
    # contract names none), on a grid of the service's length from each opening.
    out = []
    step = timedelta(minutes=minutes)
    day = first
    while day <= last:
        for start, close in state.opening(cu, day):
            while start + step <= close:
                future = start.timestamp() > state.clock()
                if future and not state.busy(cu, rid, start, start + step, None):
                    out.append(start)
                start += step
        day += timedelta(days=1)
    return out


# -- booking ----------------------------------------------------------------------------


def new_appointment(state: LeyrState, cu: str, body: Record) -> Record:
    """The appointment a booking makes (not stored yet), on a free time in the future,
    within the care unit's opening hours."""
    missing = [
        ("MISSING_REQUIRED_FIELD", f"{key} is required", key)
        for key in ("patient_id", "resource_id", "healthcare_service_id", "start")
        if not body.get(key)
    ]
    if missing:
        raise error(400, "BAD_REQUEST", "Request validation failed", *missing)
    patient = state.find_patient(cu, str(body["patient_id"]))
    if patient is None:
        raise bad("INVALID_PATIENT_ID", "Patient not found", "patient_id")
    resource = state.resource(cu, str(body["resource_id"]))
    if resource is None:
        raise bad("INVALID_RESOURCE_ID", "Resource not found", "resource_id")
    service = state.service(cu, str(body["healthcare_service_id"]))
    _check_comment(body)
    start, end = _times(body, service.get("duration_minutes"))
    _check_open(state, cu, start, end)
    if start.timestamp() <= state.clock() or state.busy(cu, resource["id"], start, end, None):
        raise bad("NO_TIMESLOTS_AVAILABLE", "The requested time is not available", "start")
    appointment = {
        "id": state.next_id("a"),
        "status": "booked",
        "care_unit_id": cu,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "patient_id": patient["id"],
        "resource_id": resource["id"],
        "healthcare_service_id": service["id"],
    }
    if body.get("comment"):
        appointment["comment"] = body["comment"]
    return appointment


def _times(body: Record, minutes: int | None) -> tuple[datetime, datetime]:
    try:
        start = datetime.fromisoformat(body["start"])
        end = (
            datetime.fromisoformat(body["end"])
            if body.get("end")
            else start + timedelta(minutes=minutes or 30)
        )
    except (KeyError, TypeError, ValueError):
        raise bad("BAD_INPUT", "start and end must be ISO 8601 times", "start") from None
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise bad("BAD_INPUT", "start and end need offsets, and start before end", "start")
    return start, end


def _check_open(state: LeyrState, cu: str, start: datetime, end: datetime) -> None:
    # Leyr's contract names no opening hours, and no error for them: a time outside the
    # hours is one with no timeslot, refused as a taken or past one is.
    if not state.is_open(cu, start, end):
        raise bad(
            "NO_TIMESLOTS_AVAILABLE",
            "The requested time is outside the care unit's opening hours",
            "start",
        )


def _check_comment(body: Record) -> None:
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        raise bad(
            "INVALID_COMMENT_LENGTH", f"comment holds at most {MAX_COMMENT} characters", "comment"
        )


# -- PATCH: confirm a cancel, cancel, or move -------------------------------------------


def update(state: LeyrState, cu: str, found: Record, body: Record) -> Record:
    """Apply a PATCH to the stored appointment ``found``; the appointment as it now is."""
    if "confirmation" in body:
        return _confirm(state, found, body)
    if "status" in body:
        return _cancel(state, cu, found, body)
    return _change(state, cu, found, body)


def _confirm(state: LeyrState, found: Record, body: Record) -> Record:
    code = (body.get("confirmation") or {}).get("code")
    if found["status"] != "awaiting_confirmation":
        raise bad("BAD_INPUT", "Nothing awaits confirmation", "confirmation")
    if code != state.codes.get(found["id"]):
        raise bad("BAD_INPUT", "Wrong confirmation code", "confirmation.code")
    found["status"] = "cancelled"
    del state.codes[found["id"]]
    return found


def _cancel(state: LeyrState, cu: str, found: Record, body: Record) -> Record:
    if body["status"] != "cancelled" or set(body) - {"status"}:
        raise bad("NOT_SUPPORTED", "Only a cancel may change the status", "status")
    if found["status"] not in ACTIVE:
        raise bad("BAD_INPUT", f"An appointment {found['status']} cannot be cancelled", "status")
    if not state.care_units[cu].get("cancel_requires_confirmation"):
        found["status"] = "cancelled"
        return found
    replacement = {**found, "id": state.next_id("a"), "status": "awaiting_confirmation"}
    state.appointments[cu].remove(found["id"])
    state.appointments[cu].put(replacement)
    state.codes[replacement["id"]] = f"{state.rng.randrange(10**6):06d}"
    return replacement


def _change(state: LeyrState, cu: str, found: Record, body: Record) -> Record:
    unknown = set(body) - _CHANGEABLE
    if unknown:
        raise bad(
            "NOT_SUPPORTED", f"Cannot change {', '.join(sorted(unknown))}", sorted(unknown)[0]
        )
    if found["status"] not in ACTIVE:
        raise bad("BAD_INPUT", f"An appointment {found['status']} cannot be changed", "status")
    _check_comment(body)
    changed = dict(found)
    if "resource_id" in body:
        resource = state.resource(cu, str(body["resource_id"]))
        if resource is None:
            raise bad("INVALID_RESOURCE_ID", "Resource not found", "resource_id")
        changed["resource_id"] = resource["id"]
    if "start" in body or "end" in body:
        length = datetime.fromisoformat(found["end"]) - datetime.fromisoformat(found["start"])
        start, end = _times(
            {"start": body.get("start", found["start"]), "end": body.get("end")},
            int(length.total_seconds() // 60),
        )
        changed["start"], changed["end"] = start.isoformat(), end.isoformat()
    start, end = datetime.fromisoformat(changed["start"]), datetime.fromisoformat(changed["end"])
    if (changed["start"], changed["end"]) != (found["start"], found["end"]):
        _check_open(state, cu, start, end)
    moved = (changed["start"], changed["resource_id"]) != (found["start"], found["resource_id"])
    if moved and (
        start.timestamp() <= state.clock()
        or state.busy(cu, changed["resource_id"], start, end, found["id"])
    ):
        raise bad("NO_TIMESLOTS_AVAILABLE", "The requested time is not available", "start")
    if "comment" in body:
        if body["comment"]:
            changed["comment"] = body["comment"]
        else:
            changed.pop("comment", None)
    # In place: the stored record is the one answered.
    found.clear()
    found.update(changed)
    return found
