"""A NyraAI External Hospital API simulator (``../shared/vendors/nyra.md``).

One hospital. Enforced as the contract says: the three locks (``x-api-key``,
``x-api-secret``, ``Authorization: Bearer <hospital token>``) with 401 for any wrong,
missing or expired one; per-key permissions (403 naming the permission); keys locked to a
branch see only that branch; ``{success, data}`` envelopes; ``page``/``limit`` paging with
``limit`` capped at 100; and per-key rate limits (12 per second, 60 per minute, fixed
windows, settings so tests can scale time down) with ``X-RateLimit-Limit``,
``-Remaining`` and ``-Reset`` on every answer and 429 + ``Retry-After`` past them.

Where the contract is silent, this simulator chooses (and the connector must not rely on
more): requests are counted against the presented API key before its secret and token
are checked, 429s included; lists keep insertion order; a booking must fall inside the
doctor's weekly availability, on a time no active appointment of that doctor holds, and
not in the past; ``PATCH /appointments/:id/status`` accepts any documented status.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from adapter.sandbox.common import Reply, Table, json_response, parse_date, random_hex
from adapter.sandbox.data import NYRA_STATUSES, NYRA_TYPES, NyraData, generate_nyra
from adapter.sandbox.faults import FaultMiddleware, Faults, SandboxTransport

__all__ = ["ALL_PERMISSIONS", "NyraGrant", "NyraSandbox", "RateLimits"]

ALL_PERMISSIONS = frozenset(
    {
        "patients:read",
        "patients:create",
        "appointments:read",
        "appointments:write",
        "doctor_slots:read",
        "doctor_slots:write",
        "ws:ticket",
        "calls:read",
        "analytics:read",
    }
)
WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
MAX_LIMIT = 100
_UNAUTHORIZED = {"success": False, "error": "Unauthorized", "message": "Invalid API credentials"}


@dataclass(frozen=True)
class RateLimits:
    per_second: int = 12
    per_minute: int = 60
    second_window: float = 1.0
    minute_window: float = 60.0


@dataclass
class NyraGrant:
    """One issued API key: what ``POST /api/hospitals/:id/api-keys`` hands out."""

    key: str
    secret: str
    token: str
    permissions: frozenset[str] = ALL_PERMISSIONS
    branch_id: str | None = None
    token_expires_at: float = math.inf
    requests: int = 0
    limited: int = 0
    _windows: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)

    def credentials(self) -> dict[str, str]:
        return {"key": self.key, "secret": self.secret, "token": self.token}

    def __repr__(self) -> str:  # the secret and token stay out of logs
        return f"NyraGrant(key={self.key[:9]}..., permissions={sorted(self.permissions)})"


class NyraSandbox:
    """State and app of one simulated hospital; ``.app`` is the ASGI app to serve."""

    vendor = "nyra"

    def __init__(
        self,
        data: NyraData | None = None,
        *,
        seed: int = 7,
        patients: int = 200,
        keys: int = 1,
        timezone: str = "Asia/Kolkata",
        limits: RateLimits | None = None,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.data = data if data is not None else generate_nyra(seed, patients)
        self.zone = ZoneInfo(timezone)
        self.timezone = timezone
        self.limits = limits or RateLimits()
        self.faults = faults or Faults()
        self.clock = clock
        self._rng = random.Random(seed)
        self.patients = Table(self.data.patients)
        self.appointments = Table(self.data.appointments)
        self.doctors = Table(self.data.doctors)
        self.availability = {d["id"]: _default_availability(d) for d in self.doctors}
        self.grants: dict[str, NyraGrant] = {}
        for _ in range(keys):
            self.issue_key()
        self.app = FaultMiddleware(self._build(), self.faults, _error_body)

    # -- keys ---------------------------------------------------------------------------

    def issue_key(
        self,
        permissions: frozenset[str] | set[str] = ALL_PERMISSIONS,
        *,
        branch_id: str | None = None,
        ttl: float = 24 * 3600,
    ) -> NyraGrant:
        """A new API key (hospital token valid for ``ttl`` seconds, about 24 h by default)."""
        unknown = set(permissions) - ALL_PERMISSIONS
        if unknown:
            raise ValueError(f"unknown Nyra permission(s): {sorted(unknown)}")
        grant = NyraGrant(
            key="nyra_" + random_hex(16, self._rng),
            secret=random_hex(24, self._rng),
            token=random_hex(32, self._rng),
            permissions=frozenset(permissions),
            branch_id=branch_id,
            token_expires_at=self.clock() + ttl,
        )
        self.grants[grant.key] = grant
        return grant

    def expire_token(self, grant: NyraGrant) -> None:
        grant.token_expires_at = self.clock() - 1

    def api_keys(self) -> list[NyraGrant]:
        return list(self.grants.values())

    def limited_total(self) -> int:
        """429s answered so far, over every key."""
        return sum(g.limited for g in self.grants.values())

    def defaults(self) -> dict[str, Any]:
        """Source configuration that reaches this sandbox with every key it issued."""
        keys = [g.credentials() for g in self.grants.values()]
        config: dict[str, Any] = {"keys": keys, "timezone": self.timezone}
        if self.limits != RateLimits():  # scaled down: the client must keep the same pace
            config["rate_limit"] = asdict(self.limits)
        return config

    def transport(self) -> SandboxTransport:
        return SandboxTransport(app=self.app)

    # -- the gate: limits, locks, permissions ---------------------------------------------

    def _limit(self, grant: NyraGrant | None, headers: dict[str, str]) -> bool:
        """Count one request against ``grant``; False when it is over a limit."""
        lim, now = self.limits, self.clock()
        minute = int(now // lim.minute_window)
        reset = (minute + 1) * lim.minute_window
        if grant is None:
            headers.update(_rate_headers(lim.per_minute, lim.per_minute, reset))
            return True
        second = int(now // lim.second_window)
        s_index, s_count = grant._windows.get("s", (second, 0))
        m_index, m_count = grant._windows.get("m", (minute, 0))
        s_count = s_count if s_index == second else 0
        m_count = m_count if m_index == minute else 0
        over_second, over_minute = s_count >= lim.per_second, m_count >= lim.per_minute
        grant._windows["s"] = (second, s_count + 1)
        grant._windows["m"] = (minute, m_count + 1)
        grant.requests += 1
        remaining = max(0, lim.per_minute - m_count - 1)
        headers.update(_rate_headers(lim.per_minute, remaining, reset))
        if over_second or over_minute:
            grant.limited += 1
            until = reset if over_minute else (second + 1) * lim.second_window
            headers["Retry-After"] = _delay(until - now)
            return False
        return True

    def _gate(self, request: Request, permission: str) -> NyraGrant:
        headers: dict[str, str] = {}
        request.state.headers = headers
        presented = request.headers.get("x-api-key", "")
        grant = self.grants.get(presented)
        if not self._limit(grant, headers):
            raise Reply(
                429,
                {"success": False, "error": "Too Many Requests", "message": "Rate limit exceeded"},
            )
        auth = request.headers.get("authorization", "")
        if (
            grant is None
            or request.headers.get("x-api-secret") != grant.secret
            or auth != f"Bearer {grant.token}"
            or self.clock() >= grant.token_expires_at
            or self.faults.expired_token
        ):
            raise Reply(401, _UNAUTHORIZED)
        if permission not in grant.permissions:
            raise Reply(
                403,
                {
                    "success": False,
                    "error": "Forbidden",
                    "message": f"Missing required permission: {permission}",
                },
            )
        return grant

    # -- the app ------------------------------------------------------------------------

    def _build(self) -> FastAPI:
        app = FastAPI(title="NyraAI External API (sandbox)", openapi_url=None, docs_url=None)

        @app.exception_handler(Reply)
        async def _reply(request: Request, exc: Reply) -> Response:
            return json_response(exc.body, exc.status, getattr(request.state, "headers", None))

        @app.exception_handler(HTTPException)
        async def _http(request: Request, exc: HTTPException) -> Response:
            headers = getattr(request.state, "headers", None) or {}
            if not headers:
                self._limit(self.grants.get(request.headers.get("x-api-key", "")), headers)
            error = "Not Found" if exc.status_code == 404 else "Error"
            body = {"success": False, "error": error, "message": "Route not found"}
            return json_response(body, exc.status_code, headers)

        def ok(request: Request, data: Any, status: int = 200, message: str | None = None):
            body: dict[str, Any] = {"success": True}
            if message:
                body["message"] = message
            body["data"] = data
            return json_response(body, status, request.state.headers)

        @app.get("/patients")
        async def list_patients(request: Request) -> Response:
            grant = self._gate(request, "patients:read")
            q = request.query_params
            rows = self._visible(self.patients, grant, q.get("branch_id"))
            rows = _matching(rows, q.get("q"), ("name", "phone", "email"))
            for key in ("status", "doctor_id"):
                if value := q.get(key):
                    rows = [p for p in rows if p.get(key) == value]
            return ok(request, _page(rows, q))

        @app.get("/patients/{patient_id}")
        async def read_patient(request: Request, patient_id: str) -> Response:
            grant = self._gate(request, "patients:read")
            return ok(request, self._one(self.patients, patient_id, grant, "Patient"))

        @app.post("/patients")
        async def create_patient(request: Request) -> Response:
            grant = self._gate(request, "patients:create")
            body = await _body(request)
            patient = self._new_patient(body, grant)
            data: dict[str, Any] = {"patient_id": patient["id"]}
            appointment = None
            if body.get("appointment_time") is not None or body.get("doctor_id") is not None:
                when = body.get("appointment_time")
                if not isinstance(when, str) or body.get("doctor_id") is None:
                    raise _bad("appointment_time and doctor_id are both needed to book")
                appointment = self._new_appointment(
                    {**body, **_split_local(when, self.zone), "patient_id": patient["id"]},
                    grant,
                    patient,
                )
                data["appointment_id"] = appointment["id"]
            self.patients.put(patient)
            if appointment is not None:
                self.appointments.put(appointment)
            return ok(request, data, 201, "Patient created successfully")

        @app.get("/appointments")
        async def list_appointments(request: Request) -> Response:
            grant = self._gate(request, "appointments:read")
            q = request.query_params
            rows = self._visible(self.appointments, grant, q.get("branch_id"))
            rows = _matching(rows, q.get("q"), ("patient_name", "doctor_name"))
            for key in ("status", "patient_id", "doctor_id"):
                if value := q.get(key):
                    rows = [a for a in rows if a.get(key) == value]
            first, last = q.get("date_from"), q.get("date_to")
            if first is not None or last is not None:
                lo, hi = parse_date(first), parse_date(last)
                if (first is not None and lo is None) or (last is not None and hi is None):
                    raise _bad("date_from and date_to must be dates (YYYY-MM-DD)")
                rows = [a for a in rows if _within(self._local_day(a), lo, hi)]
            return ok(request, _page(rows, q))

        @app.get("/appointments/{appointment_id}")
        async def read_appointment(request: Request, appointment_id: str) -> Response:
            grant = self._gate(request, "appointments:read")
            return ok(request, self._one(self.appointments, appointment_id, grant, "Appointment"))

        @app.post("/appointments")
        async def create_appointment(request: Request) -> Response:
            grant = self._gate(request, "appointments:write")
            body = await _body(request)
            patient = None
            if body.get("patient_id") is not None:
                patient = self.patients.get(str(body["patient_id"]))
                if patient is None or not _sees(grant, patient):
                    raise Reply(404, _not_found("Patient"))
            elif not body.get("patient_phone") or not body.get("patient_name"):
                raise _bad("patient_id, or patient_phone and patient_name, is required")
            appointment = self._new_appointment(body, grant, patient)
            if patient is None:
                patient = self._new_patient(
                    {"name": body["patient_name"], "phone": body["patient_phone"]}, grant
                )
                appointment["patient_id"] = patient["id"]
                self.patients.put(patient)
            self.appointments.put(appointment)
            return ok(request, {"appointment_id": appointment["id"]}, 201)

        @app.patch("/appointments/{appointment_id}/status")
        async def set_status(request: Request, appointment_id: str) -> Response:
            grant = self._gate(request, "appointments:write")
            appointment = self._one(self.appointments, appointment_id, grant, "Appointment")
            body = await _body(request)
            status = body.get("status")
            if status not in NYRA_STATUSES:
                raise _bad(f"status must be one of {', '.join(NYRA_STATUSES)}")
            appointment["status"] = status
            return ok(request, appointment)

        @app.get("/doctors/{doctor_id}/slots")
        async def slots(request: Request, doctor_id: str) -> Response:
            self._gate(request, "doctor_slots:read")
            doctor = self.doctors.get(doctor_id)
            if doctor is None:
                raise Reply(404, _not_found("Doctor"))
            raw = request.query_params.get("date")
            day = parse_date(raw) if raw is not None else self._today() + timedelta(days=1)
            if day is None:
                raise _bad("date must be YYYY-MM-DD")
            free = [
                {"time": s.strftime("%H:%M:%S"), "end_time": e.strftime("%H:%M:%S")}
                for s, e in self._free_slots(doctor_id, day)
            ]
            minutes = self.availability[doctor_id]["slot_duration_minutes"]
            return ok(
                request,
                {
                    "doctor_id": doctor_id,
                    "date": day.isoformat(),
                    "slot_duration_minutes": minutes,
                    "slots": free,
                },
            )

        @app.get("/doctors/{doctor_id}/availability")
        async def get_availability(request: Request, doctor_id: str) -> Response:
            self._gate(request, "doctor_slots:read")
            if doctor_id not in self.availability:
                raise Reply(404, _not_found("Doctor"))
            return ok(request, self.availability[doctor_id])

        @app.put("/doctors/{doctor_id}/availability")
        async def put_availability(request: Request, doctor_id: str) -> Response:
            self._gate(request, "doctor_slots:write")
            if doctor_id not in self.availability:
                raise Reply(404, _not_found("Doctor"))
            body = await _body(request)
            current = dict(self.availability[doctor_id])
            minutes = body.get("slot_duration_minutes", current["slot_duration_minutes"])
            if not isinstance(minutes, int) or not 5 <= minutes <= 240:
                raise _bad("slot_duration_minutes must be an integer from 5 to 240")
            weekly = body.get("weekly", current["weekly"])
            if not isinstance(weekly, dict) or set(weekly) - set(WEEKDAYS):
                raise _bad("weekly must map weekday names to time ranges")
            for ranges in weekly.values():
                for r in ranges:
                    if not _range_ok(r):
                        raise _bad("each range needs start and end as HH:MM, start before end")
            current.update(slot_duration_minutes=minutes, weekly=weekly)
            if "consultation_fee" in body:
                current["consultation_fee"] = body["consultation_fee"]
            self.availability[doctor_id] = current
            return ok(request, current)

        @app.post("/ws-ticket")
        async def ws_ticket(request: Request) -> Response:
            self._gate(request, "ws:ticket")
            ticket = ".".join(random_hex(16, self._rng) for _ in range(3))
            return ok(
                request,
                {"token": ticket, "ws_url": str(request.base_url).rstrip("/"), "ws_path": "/ws"},
            )

        return app

    # -- helpers ------------------------------------------------------------------------

    def _today(self) -> date:
        return datetime.fromtimestamp(self.clock(), self.zone).date()

    def _visible(self, table: Table, grant: NyraGrant, branch: str | None) -> list[dict]:
        # A branch-locked key ignores the branch_id filter and sees only its branch.
        branch = grant.branch_id or branch
        return [r for r in table if r.get("branch_id") == branch] if branch else list(table)

    def _one(self, table: Table, record_id: str, grant: NyraGrant, kind: str) -> dict[str, Any]:
        record = table.get(record_id)
        if record is None or not _sees(grant, record):
            raise Reply(404, _not_found(kind))
        return record

    def _local_day(self, appointment: dict[str, Any]) -> date | None:
        try:
            return (
                datetime.fromisoformat(appointment["appointment_time"]).astimezone(self.zone).date()
            )
        except (KeyError, TypeError, ValueError):
            return None

    def _now_z(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def _new_patient(self, body: dict[str, Any], grant: NyraGrant) -> dict[str, Any]:
        name, phone = body.get("name"), body.get("phone")
        if not isinstance(name, str) or not name.strip():
            raise _bad("name is required")
        if not isinstance(phone, str) or not phone.strip():
            raise _bad("phone is required")
        gender = body.get("gender")
        if gender is not None and gender not in ("MALE", "FEMALE", "OTHER"):
            raise _bad("gender must be MALE, FEMALE or OTHER")
        born = body.get("date_of_birth")
        if born is not None and parse_date(born) is None:
            raise _bad("date_of_birth must be YYYY-MM-DD")
        now = self._now_z()
        patient: dict[str, Any] = {
            "id": str(_uuid(self._rng)),
            "name": name.strip(),
            "phone": phone,
        }
        for key in ("gender", "date_of_birth", "email", "address", "doctor_id"):
            if body.get(key) is not None:
                patient[key] = body[key]
        if born is not None:
            b, today = parse_date(born), self._today()
            patient["age"] = today.year - b.year - ((today.month, today.day) < (b.month, b.day))
        elif isinstance(body.get("age"), int):
            patient["age"] = body["age"]
        patient["status"] = (
            body.get("status") if body.get("status") in ("ACTIVE", "INACTIVE") else "ACTIVE"
        )
        branch = grant.branch_id or body.get("branch_id") or self._first_branch()
        if branch is not None:
            patient["branch_id"] = branch
        patient["created_at"] = patient["updated_at"] = now
        return patient

    def _first_branch(self) -> str | None:
        for doctor in self.doctors:
            if doctor.get("branch_id"):
                return doctor["branch_id"]
        return None

    def _new_appointment(
        self, body: dict[str, Any], grant: NyraGrant, patient: dict[str, Any] | None
    ) -> dict[str, Any]:
        doctor = self.doctors.get(str(body.get("doctor_id")))
        if doctor is None:
            raise _bad("doctor_id does not name a doctor of this hospital")
        day = parse_date(body.get("appointment_date"))
        try:
            at = clock_time.fromisoformat(body.get("appointment_time") or "")
        except (TypeError, ValueError):
            at = None
        if day is None or at is None or len(str(body.get("appointment_time"))) != 8:
            raise _bad("appointment_date (YYYY-MM-DD) and appointment_time (HH:MM:SS) are required")
        kind = body.get("type", "CONSULTATION")
        if kind not in NYRA_TYPES:
            raise _bad(f"type must be one of {', '.join(NYRA_TYPES)}")
        start = datetime.combine(day, at, self.zone)
        if start.timestamp() <= self.clock():
            raise _bad("appointment time must be in the future")
        if at not in {s.time() for s, _ in self._free_slots(doctor["id"], day)}:
            raise Reply(
                409, {"success": False, "error": "Conflict", "message": "Slot not available"}
            )
        name = patient["name"] if patient else body.get("patient_name")
        record: dict[str, Any] = {
            "id": str(_uuid(self._rng)),
            "patient_id": patient["id"] if patient else None,
            "patient_name": name,
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
        record["created_at"] = self._now_z()
        return record

    def _free_slots(self, doctor_id: str, day: date) -> list[tuple[datetime, datetime]]:
        plan = self.availability[doctor_id]
        step = timedelta(minutes=plan["slot_duration_minutes"])
        taken = {
            a["appointment_time"]
            for a in self.appointments
            if a.get("doctor_id") == doctor_id and a.get("status") != "CANCELLED"
        }
        taken_at = set()
        for text in taken:
            try:
                taken_at.add(
                    datetime.fromisoformat(text).astimezone(self.zone).replace(tzinfo=None)
                )
            except (TypeError, ValueError):
                continue
        out = []
        for r in plan["weekly"].get(WEEKDAYS[day.weekday()], []):
            start = datetime.combine(day, clock_time.fromisoformat(r["start"]))
            end = datetime.combine(day, clock_time.fromisoformat(r["end"]))
            while start + step <= end:
                if start not in taken_at:
                    out.append((start, start + step))
                start += step
        return out


def _default_availability(doctor: dict[str, Any]) -> dict[str, Any]:
    hours = [{"start": "09:00", "end": "17:00"}]
    return {
        "doctor_id": doctor["id"],
        "slot_duration_minutes": doctor.get("slot_duration_minutes", 15),
        "consultation_fee": doctor.get("consultation_fee", 500),
        "weekly": {day: (hours if i < 5 else []) for i, day in enumerate(WEEKDAYS)},
    }


def _range_ok(r: Any) -> bool:
    try:
        return clock_time.fromisoformat(r["start"]) < clock_time.fromisoformat(r["end"])
    except (KeyError, TypeError, ValueError):
        return False


def _uuid(rng: random.Random) -> Any:
    import uuid

    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _matching(rows: list[dict], q: str | None, keys: tuple[str, ...]) -> list[dict]:
    """Nyra's ``q``: a case-insensitive substring of any of ``keys``."""
    if not q:
        return rows
    needle = q.casefold()
    return [r for r in rows if any(needle in str(r.get(k) or "").casefold() for k in keys)]


def _sees(grant: NyraGrant, record: dict[str, Any]) -> bool:
    return grant.branch_id is None or record.get("branch_id") == grant.branch_id


def _within(day: date | None, lo: date | None, hi: date | None) -> bool:
    return day is not None and (lo is None or day >= lo) and (hi is None or day <= hi)


def _split_local(when: str, zone: ZoneInfo) -> dict[str, str]:
    """``appointment_time`` given as one timestamp, as the booking form's date and time."""
    try:
        moment = datetime.fromisoformat(when)
    except ValueError:
        raise _bad("appointment_time must be an ISO 8601 date and time") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(zone)
    return {
        "appointment_date": moment.date().isoformat(),
        "appointment_time": moment.strftime("%H:%M:%S"),
    }


def _page(rows: list[dict[str, Any]], q: Any) -> dict[str, Any]:
    page, limit = _positive(q.get("page"), 1, "page"), _positive(q.get("limit"), 20, "limit")
    limit = min(limit, MAX_LIMIT)
    start = (page - 1) * limit
    return {
        "total": len(rows),
        "results": rows[start : start + limit],
        "page": page,
        "limit": limit,
        "total_pages": math.ceil(len(rows) / limit),
    }


def _positive(raw: str | None, default: int, name: str) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise _bad(f"{name} must be a positive integer")
    return int(raw)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise _bad("request body must be JSON") from None
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object")
    return body


def _bad(message: str) -> Reply:
    return Reply(400, {"success": False, "error": "Bad Request", "message": message})


def _not_found(kind: str) -> dict[str, Any]:
    return {"success": False, "error": "Not Found", "message": f"{kind} not found"}


def _rate_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": _seconds(reset),
    }


def _seconds(value: float) -> str:
    """Whole seconds as the contract shows them; fractions only for scaled-down windows."""
    rounded = round(value, 3)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.3f}"


def _delay(seconds: float) -> str:
    """``Retry-After``: whole seconds, rounded up; a fraction only below one second."""
    return str(math.ceil(seconds)) if seconds >= 1 else _seconds(max(seconds, 0.001))


def _error_body(status: int) -> bytes:
    return orjson.dumps(
        {"success": False, "error": "Service Unavailable", "message": "Temporary failure"}
    )
