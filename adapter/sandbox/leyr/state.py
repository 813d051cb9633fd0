"""The records of one simulated EHR, by care unit, its credentials, the care units' opening
hours, and the lookups the routes and rules make (typed patient ids, resources, services,
busy times, whether a time is within opening hours)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, datetime
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

from adapter.sandbox.common import Record, Table, dated_between, random_hex
from adapter.sandbox.data import LeyrData, generate_leyr
from adapter.sandbox.leyr.errors import bad, not_found

__all__ = ["ACTIVE", "DEFAULT_HOURS", "WEEKDAYS", "LeyrState", "in_unit", "opening_hours", "public"]

PATIENT_ID_TYPES = ("emr_id", "se_personal_number", "no_personal_number", "nhs_number")
ACTIVE = ("booked", "awaiting_confirmation")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Leyr's contract names no opening hours; a care unit without its own ``opening_hours``
# is open on weekdays, 09:00-17:00 in the EHR's time zone.
DEFAULT_HOURS: Record = {day: [{"start": "09:00", "end": "17:00"}] for day in WEEKDAYS[:5]}

Week = list[list[tuple[clock_time, clock_time]]]


class LeyrState:
    """Seeded (or loaded) data and credentials of one EHR, and the lookups over them."""

    def __init__(
        self,
        data: LeyrData | None,
        *,
        seed: int,
        patients: int,
        emr: str,
        timezone: str,
        id_types: tuple[str, ...],
        clock: Callable[[], float],
    ) -> None:
        self.data = data if data is not None else generate_leyr(seed, patients)
        self.emr = emr
        self.timezone = timezone
        self.zone = ZoneInfo(timezone)
        self.id_types = tuple(id_types)
        self.clock = clock
        # One generator, drawn in a fixed order: the same seed gives the same credentials
        # and confirmation codes.
        self.rng = random.Random(seed)
        self.client_id = f"sandbox-{random_hex(8, self.rng)}"
        self.client_secret = random_hex(24, self.rng)
        self.care_units = {str(u["id"]): u for u in self.data.care_units}
        self.hours = {cu: opening_hours(unit) for cu, unit in self.care_units.items()}
        self.patients = {cu: Table() for cu in self.care_units}
        self.appointments = {cu: Table() for cu in self.care_units}
        for record in self.data.patients:
            self.patients.setdefault(str(record.get("care_unit_id")), Table()).put(record)
        for record in self.data.appointments:
            self.appointments.setdefault(str(record.get("care_unit_id")), Table()).put(record)
        self.resources = self.data.resources
        self.services = self.data.healthcare_services
        self.codes: dict[str, str] = {}  # appointment id -> code that confirms its cancel
        self._serial = 0

    def next_id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}-sbx-{self._serial}"

    # -- patients -----------------------------------------------------------------------

    def find_patient(self, cu: str, typed: str) -> Record | None:
        """The patient a typed id names (a bare value is an ``emr_id``), or None; 400 for a
        type that is no patient id type, or one this EHR does not look up by."""
        kind, _, value = typed.partition(":")
        if not value or (kind not in PATIENT_ID_TYPES and kind != "hsa_id"):
            kind, value = "emr_id", typed
        if kind not in PATIENT_ID_TYPES:
            raise bad("INVALID_PATIENT_ID_TYPE", f"{kind} is not a patient id type", "patient_id")
        if kind not in self.id_types:
            raise bad(
                "PATIENT_ID_LOOKUP_TYPE_NOT_SUPPORTED",
                f"This EHR does not support lookup by {kind}",
                "patient_id",
            )
        for record in self.patients[cu]:
            if kind == "emr_id" and value in (record.get("emr_id"), record.get("id")):
                return record
            if kind != "emr_id" and _digits(record.get("external_id")) == _digits(value):
                return record
        return None

    def patient(self, cu: str, typed: str) -> Record:
        found = self.find_patient(cu, typed)
        if found is None:
            raise not_found("Patient")
        return found

    def same_person(self, cu: str, body: Record) -> Record | None:
        """The patient a create names by ``external_id``, else by ``emr_id`` (the upsert)."""
        for key in ("external_id", "emr_id"):
            value = body.get(key)
            if isinstance(value, str) and value:
                for record in self.patients[cu]:
                    if record.get(key) == value:
                        return record
        return None

    def patients_named(self, cu: str, first: str | None, last: str | None) -> list[Record]:
        rows = list(self.patients[cu])
        for key, value in (("first_name", first), ("last_name", last)):
            if value:
                rows = [p for p in rows if str(p.get(key, "")).casefold() == value.casefold()]
        return rows

    # -- appointments, resources, services ----------------------------------------------

    def appointments_matching(
        self,
        cu: str,
        patient_id: str | None,
        resource_id: str | None,
        start_date: str | None,
        end_date: str | None,
    ) -> list[Record]:
        rows = list(self.appointments[cu])
        if patient_id:
            patient = self.find_patient(cu, patient_id)
            wanted = patient["id"] if patient else patient_id
            rows = [a for a in rows if a.get("patient_id") == wanted]
        if resource_id:
            rows = [a for a in rows if a.get("resource_id") == resource_id]
        return dated_between(
            rows,
            start_date,
            end_date,
            _day,
            lambda: bad("BAD_INPUT", "start_date and end_date must be dates", "start_date"),
        )

    def resource(self, cu: str, resource_id: str | None) -> Record | None:
        """The resource by id, or by ``hsa_id:<HSA id>``."""
        if not resource_id:
            return None
        kind, _, value = resource_id.partition(":")
        for r in self.resources:
            if not in_unit(r, cu):
                continue
            if r.get("id") == resource_id or (kind == "hsa_id" and r.get("hsa_id") == value):
                return r
        return None

    def service(self, cu: str, service_id: str | None) -> Record:
        for s in self.services:
            if in_unit(s, cu) and s.get("id") == service_id:
                return s
        raise bad(
            "INVALID_HEALTHCARE_SERVICE_ID", "Healthcare service not found", "healthcare_service_id"
        )

    def busy(
        self, cu: str, resource_id: str, start: datetime, end: datetime, skip: str | None
    ) -> bool:
        """Whether an active appointment of the resource (other than ``skip``) overlaps."""
        for a in self.appointments[cu]:
            if (
                a.get("resource_id") != resource_id
                or a.get("status") not in ACTIVE
                or a["id"] == skip
            ):
                continue
            try:
                s, e = datetime.fromisoformat(a["start"]), datetime.fromisoformat(a["end"])
            except (KeyError, TypeError, ValueError):
                continue
            if s < end and start < e:
                return True
        return False

    # -- opening hours ------------------------------------------------------------------

    def opening(self, cu: str, day: date) -> list[tuple[datetime, datetime]]:
        """The care unit's opening times on ``day`` (a local date), from opening to close."""
        return [
            (datetime.combine(day, opens, self.zone), datetime.combine(day, closes, self.zone))
            for opens, closes in self.hours[cu][day.weekday()]
        ]

    def is_open(self, cu: str, start: datetime, end: datetime) -> bool:
        """Whether ``start`` to ``end`` (aware) lies within one opening time of the unit."""
        day = start.astimezone(self.zone).date()
        return any(opens <= start and end <= closes for opens, closes in self.opening(cu, day))


def opening_hours(unit: Record) -> Week:
    """A care unit's weekly opening times, Monday first: its ``opening_hours`` (weekday
    name to ``[{"start": "HH:MM", "end": "HH:MM"}, ...]``, a day left out being closed),
    else (absent or null) :data:`DEFAULT_HOURS`; ValueError for a table of another shape."""
    table = unit.get("opening_hours")
    if table is None:
        table = DEFAULT_HOURS
    problem = f"care unit {unit.get('id')}: opening_hours must map weekday names to lists "
    problem += 'of {"start": "HH:MM", "end": "HH:MM"}, each start before its end'
    if not isinstance(table, dict) or set(table) - set(WEEKDAYS):
        raise ValueError(problem)
    week: Week = []
    for day in WEEKDAYS:
        ranges = table.get(day) or []
        if not isinstance(ranges, list):
            raise ValueError(problem)
        week.append([_range(r, problem) for r in ranges])
    return week


def _range(value: Any, problem: str) -> tuple[clock_time, clock_time]:
    try:
        opens = clock_time.fromisoformat(value["start"])
        closes = clock_time.fromisoformat(value["end"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(problem) from None
    if opens.tzinfo is not None or closes.tzinfo is not None or closes <= opens:
        raise ValueError(problem)
    return opens, closes


def in_unit(record: Record, cu: str) -> bool:
    """Records without a care unit belong to every one."""
    return record.get("care_unit_id") in (None, cu)


def public(record: Record) -> Record:
    return {k: v for k, v in record.items() if k != "care_unit_id"}


def _digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isalnum())


def _day(appointment: Record) -> date | None:
    try:
        return datetime.fromisoformat(appointment["start"]).date()
    except (KeyError, TypeError, ValueError):
        return None
