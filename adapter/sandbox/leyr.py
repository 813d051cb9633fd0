"""A Leyr simulator: one EHR behind Leyr's unified API (``../shared/vendors/leyr.md``).

Enforced as the contract says: ``x-leyr-client-id`` and ``x-leyr-client-secret`` on every
call (401 ``UNAUTHORIZED`` otherwise); bare JSON arrays for lists; typed ids
(``se_personal_number:...``; a bare value is an ``emr_id``); create-or-return-existing
for patients; a list from appointment creation; PATCH to move or cancel; RFC 7807-like
error bodies with Leyr's ``error_code``s.

Where the contract is silent, this simulator chooses: a bare patient id also matches the
record's ``id``; the EHR takes the id types in ``id_types`` (``emr_id`` and
``se_personal_number`` by default) and answers 400 ``PATIENT_ID_LOOKUP_TYPE_NOT_SUPPORTED``
for the others; patients are upserted by ``external_id``, then ``emr_id``; in a care unit
marked ``cancel_requires_confirmation`` a cancel replaces the appointment by a new one in
``awaiting_confirmation`` (the old id is then gone) until confirmed with the code the
sandbox holds (:meth:`LeyrSandbox.confirmation_code`); a booking must not overlap an
active appointment of the same resource, nor lie in the past.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from adapter.sandbox.common import Reply, Table, json_response, parse_date, random_hex
from adapter.sandbox.data import LeyrData, generate_leyr
from adapter.sandbox.faults import FaultMiddleware, Faults, SandboxTransport

__all__ = ["LeyrSandbox"]

PATIENT_ID_TYPES = ("emr_id", "se_personal_number", "no_personal_number", "nhs_number")
GENDERS = ("male", "female", "other", "unknown")
ACTIVE = ("booked", "awaiting_confirmation")
MAX_COMMENT = 500
MAX_SLOT_DAYS = 31
_DOCS = "https://docs.leyr.io/api/error-handling/"


def error(status: int, code: str, title: str, *errors: tuple[str, str, str | None]) -> Reply:
    """A Leyr error: ``errors`` are (error_code, details, path)."""
    return Reply(
        status,
        {
            "code": code,
            "type": _DOCS + code.lower(),
            "title": title,
            "status": status,
            "detail": errors[0][1] if errors else title,
            "instance": str(uuid.uuid4()),
            "errors": [
                {"details": d, "emr_error": None, "error_code": c, "path": p} for c, d, p in errors
            ],
        },
    )


def bad(code: str, details: str, path: str | None = None) -> Reply:
    return error(400, "BAD_REQUEST", "Request validation failed", (code, details, path))


def not_found(what: str) -> Reply:
    return error(404, "NOT_FOUND", f"{what} not found", ("NOT_FOUND", f"{what} not found", None))


class LeyrSandbox:
    """State and app of one simulated EHR; ``.app`` is the ASGI app to serve."""

    vendor = "leyr"

    def __init__(
        self,
        data: LeyrData | None = None,
        *,
        seed: int = 7,
        patients: int = 200,
        emr: str = "webdoc",
        timezone: str = "Europe/Stockholm",
        id_types: tuple[str, ...] = ("emr_id", "se_personal_number"),
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.data = data if data is not None else generate_leyr(seed, patients)
        self.emr = emr
        self.timezone = timezone
        self.zone = ZoneInfo(timezone)
        self.id_types = tuple(id_types)
        self.faults = faults or Faults()
        self.clock = clock
        self._rng = random.Random(seed)
        self.client_id = f"sandbox-{random_hex(8, self._rng)}"
        self.client_secret = random_hex(24, self._rng)
        self.care_units = {str(u["id"]): u for u in self.data.care_units}
        self.patients = {cu: Table() for cu in self.care_units}
        self.appointments = {cu: Table() for cu in self.care_units}
        for record in self.data.patients:
            self.patients.setdefault(str(record.get("care_unit_id")), Table()).put(record)
        for record in self.data.appointments:
            self.appointments.setdefault(str(record.get("care_unit_id")), Table()).put(record)
        self.resources = self.data.resources
        self.services = self.data.healthcare_services
        self._codes: dict[str, str] = {}
        self._serial = 0
        self.app = FaultMiddleware(self._build(), self.faults, _error_body)

    def defaults(self) -> dict[str, Any]:
        """Source configuration that reaches this sandbox."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "emr": self.emr,
            "care_units": list(self.care_units),
            "timezone": self.timezone,
        }

    def transport(self) -> SandboxTransport:
        return SandboxTransport(app=self.app)

    def confirmation_code(self, appointment_id: str) -> str | None:
        """The code that confirms a cancel (a real EHR sends it to the patient)."""
        return self._codes.get(appointment_id)

    # -- the app ------------------------------------------------------------------------

    def _gate(self, request: Request, emr: str, care_unit: str | None = None) -> None:
        if (
            request.headers.get("x-leyr-client-id") != self.client_id
            or request.headers.get("x-leyr-client-secret") != self.client_secret
        ):
            raise error(
                401,
                "UNAUTHORIZED",
                "Unauthorized",
                ("UNAUTHORIZED", "Application with the provided client ID was not found.", None),
            )
        if emr != self.emr:
            raise error(404, "NOT_FOUND", "EHR not found", ("NOT_FOUND", "Unknown EHR code", None))
        if care_unit is not None and care_unit not in self.care_units:
            raise bad("INVALID_CARE_UNIT_ID", "Care unit not found", "care_unit_id")

    def _build(self) -> FastAPI:
        app = FastAPI(title="Leyr API (sandbox)", openapi_url=None, docs_url=None)
        cu_path = "/emrs/{emr}/care-units/{cu}"

        @app.exception_handler(Reply)
        async def _reply(request: Request, exc: Reply) -> Response:
            return json_response(exc.body, exc.status)

        @app.exception_handler(HTTPException)
        async def _http(request: Request, exc: HTTPException) -> Response:
            reply = error(
                exc.status_code,
                "NOT_FOUND" if exc.status_code == 404 else "UNKNOWN_ERROR",
                "Route not found",
            )
            return json_response(reply.body, exc.status_code)

        @app.get("/emrs/{emr}/care-units")
        async def care_units(request: Request, emr: str) -> Response:
            self._gate(request, emr)
            return json_response(
                [{"id": u["id"], "name": u.get("name")} for u in self.care_units.values()]
            )

        @app.get(cu_path + "/patients")
        async def list_patients(request: Request, emr: str, cu: str) -> Response:
            self._gate(request, emr, cu)
            q = request.query_params
            rows = list(self.patients[cu])
            for param, key in (("first_name", "first_name"), ("last_name", "last_name")):
                if value := q.get(param):
                    rows = [p for p in rows if str(p.get(key, "")).casefold() == value.casefold()]
            return json_response(rows)

        @app.get(cu_path + "/patients/{patient_id}")
        async def read_patient(request: Request, emr: str, cu: str, patient_id: str) -> Response:
            self._gate(request, emr, cu)
            return json_response(self._patient(cu, patient_id))

        @app.post(cu_path + "/patients")
        async def upsert_patient(request: Request, emr: str, cu: str) -> Response:
            self._gate(request, emr, cu)
            body = await _body(request)
            existing = self._same_person(cu, body)
            if existing is not None:
                return json_response(existing)
            patient = self._new_patient(cu, body)
            self.patients[cu].put(patient)
            return json_response(patient, 201)

        @app.get(cu_path + "/appointments")
        async def list_appointments(request: Request, emr: str, cu: str) -> Response:
            self._gate(request, emr, cu)
            q = request.query_params
            rows = list(self.appointments[cu])
            if value := q.get("patient_id"):
                patient = self._patient(cu, value, missing=None)
                wanted = patient["id"] if patient else value
                rows = [a for a in rows if a.get("patient_id") == wanted]
            if value := q.get("resource_id"):
                rows = [a for a in rows if a.get("resource_id") == value]
            lo, hi = q.get("start_date"), q.get("end_date")
            if lo is not None or hi is not None:
                first, last = parse_date(lo), parse_date(hi)
                if (lo is not None and first is None) or (hi is not None and last is None):
                    raise bad("BAD_INPUT", "start_date and end_date must be dates", "start_date")
                rows = [a for a in rows if _within(_day(a), first, last)]
            return json_response(rows)

        @app.get(cu_path + "/appointments/{appointment_id}")
        async def read_appointment(
            request: Request, emr: str, cu: str, appointment_id: str
        ) -> Response:
            self._gate(request, emr, cu)
            found = self.appointments[cu].get(appointment_id)
            if found is None:
                raise not_found("Appointment")
            return json_response(found)

        @app.post(cu_path + "/appointments")
        async def book(request: Request, emr: str, cu: str) -> Response:
            self._gate(request, emr, cu)
            body = await _body(request)
            appointment = self._new_appointment(cu, body)
            self.appointments[cu].put(appointment)
            return json_response([appointment], 201)

        @app.patch(cu_path + "/appointments/{appointment_id}")
        async def update(request: Request, emr: str, cu: str, appointment_id: str) -> Response:
            self._gate(request, emr, cu)
            found = self.appointments[cu].get(appointment_id)
            if found is None:
                raise error(
                    400, "BAD_REQUEST", "Request validation failed",
                    ("INVALID_APPOINTMENT_ID", "Appointment not found", "appointment_id"),
                )  # fmt: skip
            body = await _body(request)
            return json_response(self._update(cu, found, body))

        @app.get(cu_path + "/resources")
        async def resources(request: Request, emr: str, cu: str) -> Response:
            self._gate(request, emr, cu)
            return json_response([_public(r) for r in self.resources if _in_unit(r, cu)])

        @app.get(cu_path + "/resources/{resource_id}")
        async def resource(request: Request, emr: str, cu: str, resource_id: str) -> Response:
            self._gate(request, emr, cu)
            found = self._resource(cu, resource_id)
            if found is None:
                raise not_found("Resource")
            return json_response(_public(found))

        @app.get(cu_path + "/healthcare-services")
        async def services(request: Request, emr: str, cu: str) -> Response:
            self._gate(request, emr, cu)
            return json_response([_public(s) for s in self.services if _in_unit(s, cu)])

        @app.get(cu_path + "/timeslots")
        async def timeslots(request: Request, emr: str, cu: str) -> Response:
            self._gate(request, emr, cu)
            q = request.query_params
            service = self._service(cu, q.get("healthcare_service_id"))
            resource_ids = [q["resource_id"]] if q.get("resource_id") else [
                r["id"] for r in self.resources if _in_unit(r, cu)
            ]  # fmt: skip
            for rid in resource_ids:
                if self._resource(cu, rid) is None:
                    raise bad("INVALID_RESOURCE_ID", "Resource not found", "resource_id")
            first, last = parse_date(q.get("start_date")), parse_date(q.get("end_date"))
            if first is None or last is None or last < first:
                raise bad("BAD_INPUT", "start_date and end_date are required dates", "start_date")
            if (last - first).days >= MAX_SLOT_DAYS:
                raise bad("MAX_ITEMS_EXCEEDED", f"At most {MAX_SLOT_DAYS} days", "end_date")
            minutes = int(service.get("duration_minutes") or 30)
            out = []
            for rid in resource_ids:
                for start in self._free(cu, rid, first, last, minutes):
                    end = start + timedelta(minutes=minutes)
                    out.append(
                        {
                            "start": start.isoformat(),
                            "end": end.isoformat(),
                            "resource_id": rid,
                            "healthcare_service_id": service["id"],
                        }
                    )
            return json_response(out)

        return app

    # -- patients -----------------------------------------------------------------------

    def _patient(self, cu: str, typed: str, missing: Any = ...) -> dict[str, Any] | None:
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
        if missing is ...:
            raise not_found("Patient")
        return missing

    def _same_person(self, cu: str, body: dict[str, Any]) -> dict[str, Any] | None:
        for key in ("external_id", "emr_id"):
            value = body.get(key)
            if isinstance(value, str) and value:
                for record in self.patients[cu]:
                    if record.get(key) == value:
                        return record
        return None

    def _next(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}-sbx-{self._serial}"

    def _new_patient(self, cu: str, body: dict[str, Any]) -> dict[str, Any]:
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
        record_id = self._next("p")
        patient = {"id": record_id, "emr_id": body.get("emr_id") or record_id, "care_unit_id": cu}
        for key, value in body.items():
            if key not in ("id", "emr_id", "care_unit_id") and value is not None:
                patient[key] = value
        return patient

    # -- appointments -------------------------------------------------------------------

    def _resource(self, cu: str, resource_id: str | None) -> dict[str, Any] | None:
        if not resource_id:
            return None
        kind, _, value = resource_id.partition(":")
        for r in self.resources:
            if not _in_unit(r, cu):
                continue
            if r.get("id") == resource_id or (kind == "hsa_id" and r.get("hsa_id") == value):
                return r
        return None

    def _service(self, cu: str, service_id: str | None) -> dict[str, Any]:
        for s in self.services:
            if _in_unit(s, cu) and s.get("id") == service_id:
                return s
        raise bad(
            "INVALID_HEALTHCARE_SERVICE_ID", "Healthcare service not found", "healthcare_service_id"
        )

    def _busy(
        self, cu: str, resource_id: str, start: datetime, end: datetime, skip: str | None
    ) -> bool:
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

    def _free(self, cu: str, rid: str, first: date, last: date, minutes: int) -> list[datetime]:
        out = []
        step = timedelta(minutes=minutes)
        day = first
        while day <= last:
            if day.weekday() < 5:
                start = datetime.combine(day, clock_time(9), self.zone)
                close = datetime.combine(day, clock_time(17), self.zone)
                while start + step <= close:
                    future = start.timestamp() > self.clock()
                    if future and not self._busy(cu, rid, start, start + step, None):
                        out.append(start)
                    start += step
            day += timedelta(days=1)
        return out

    def _times(self, body: dict[str, Any], minutes: int | None) -> tuple[datetime, datetime]:
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

    def _new_appointment(self, cu: str, body: dict[str, Any]) -> dict[str, Any]:
        missing = [
            ("MISSING_REQUIRED_FIELD", f"{key} is required", key)
            for key in ("patient_id", "resource_id", "healthcare_service_id", "start")
            if not body.get(key)
        ]
        if missing:
            raise error(400, "BAD_REQUEST", "Request validation failed", *missing)
        patient = self._patient(cu, str(body["patient_id"]), missing=None)
        if patient is None:
            raise bad("INVALID_PATIENT_ID", "Patient not found", "patient_id")
        resource = self._resource(cu, str(body["resource_id"]))
        if resource is None:
            raise bad("INVALID_RESOURCE_ID", "Resource not found", "resource_id")
        service = self._service(cu, str(body["healthcare_service_id"]))
        _check_comment(body)
        start, end = self._times(body, service.get("duration_minutes"))
        if start.timestamp() <= self.clock() or self._busy(cu, resource["id"], start, end, None):
            raise bad("NO_TIMESLOTS_AVAILABLE", "The requested time is not available", "start")
        appointment = {
            "id": self._next("a"),
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

    def _update(self, cu: str, found: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        if "confirmation" in body:
            code = (body.get("confirmation") or {}).get("code")
            if found["status"] != "awaiting_confirmation":
                raise bad("BAD_INPUT", "Nothing awaits confirmation", "confirmation")
            if code != self._codes.get(found["id"]):
                raise bad("BAD_INPUT", "Wrong confirmation code", "confirmation.code")
            found["status"] = "cancelled"
            del self._codes[found["id"]]
            return found
        if "status" in body:
            if body["status"] != "cancelled" or set(body) - {"status"}:
                raise bad("NOT_SUPPORTED", "Only a cancel may change the status", "status")
            if found["status"] not in ACTIVE:
                raise bad(
                    "BAD_INPUT", f"An appointment {found['status']} cannot be cancelled", "status"
                )
            if not self.care_units[cu].get("cancel_requires_confirmation"):
                found["status"] = "cancelled"
                return found
            replacement = {**found, "id": self._next("a"), "status": "awaiting_confirmation"}
            self.appointments[cu].remove(found["id"])
            self.appointments[cu].put(replacement)
            self._codes[replacement["id"]] = f"{self._rng.randrange(10**6):06d}"
            return replacement
        unknown = set(body) - {"start", "end", "resource_id", "comment"}
        if unknown:
            raise bad(
                "NOT_SUPPORTED", f"Cannot change {', '.join(sorted(unknown))}", sorted(unknown)[0]
            )
        if found["status"] not in ACTIVE:
            raise bad("BAD_INPUT", f"An appointment {found['status']} cannot be changed", "status")
        _check_comment(body)
        changed = dict(found)
        if "resource_id" in body:
            resource = self._resource(cu, str(body["resource_id"]))
            if resource is None:
                raise bad("INVALID_RESOURCE_ID", "Resource not found", "resource_id")
            changed["resource_id"] = resource["id"]
        if "start" in body or "end" in body:
            length = datetime.fromisoformat(found["end"]) - datetime.fromisoformat(found["start"])
            start, end = self._times(
                {"start": body.get("start", found["start"]), "end": body.get("end")},
                int(length.total_seconds() // 60),
            )
            changed["start"], changed["end"] = start.isoformat(), end.isoformat()
        start, end = (
            datetime.fromisoformat(changed["start"]),
            datetime.fromisoformat(changed["end"]),
        )
        moved = (changed["start"], changed["resource_id"]) != (found["start"], found["resource_id"])
        if moved and (
            start.timestamp() <= self.clock()
            or self._busy(cu, changed["resource_id"], start, end, found["id"])
        ):
            raise bad("NO_TIMESLOTS_AVAILABLE", "The requested time is not available", "start")
        if "comment" in body:
            if body["comment"]:
                changed["comment"] = body["comment"]
            else:
                changed.pop("comment", None)
        found.clear()
        found.update(changed)
        return found


def _check_comment(body: dict[str, Any]) -> None:
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        raise bad(
            "INVALID_COMMENT_LENGTH", f"comment holds at most {MAX_COMMENT} characters", "comment"
        )


def _digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isalnum())


def _day(appointment: dict[str, Any]) -> date | None:
    try:
        return datetime.fromisoformat(appointment["start"]).date()
    except (KeyError, TypeError, ValueError):
        return None


def _within(day: date | None, lo: date | None, hi: date | None) -> bool:
    return day is not None and (lo is None or day >= lo) and (hi is None or day <= hi)


def _in_unit(record: dict[str, Any], cu: str) -> bool:
    return record.get("care_unit_id") in (None, cu)


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "care_unit_id"}


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise bad("BAD_INPUT", "Request body must be JSON") from None
    if not isinstance(body, dict):
        raise bad("BAD_INPUT", "Request body must be a JSON object")
    return body


def _error_body(status: int) -> bytes:
    return orjson.dumps(
        error(
            status, "UNKNOWN_ERROR", "Unknown error", ("UNKNOWN_ERROR", "Temporary failure", None)
        ).body
    )
