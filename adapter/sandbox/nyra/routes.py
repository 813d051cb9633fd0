"""The NyraAI External API as a FastAPI app: each route passes the gate (rate limit, the
three locks, the permission), parses the request, asks the state and rules, and answers
in Nyra's ``{success, data}`` envelope with the rate headers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from adapter.sandbox.common import (
    Record,
    Reply,
    answer_reply,
    dated_between,
    json_response,
    parse_date,
    random_hex,
    read_object,
)
from adapter.sandbox.nyra import rules
from adapter.sandbox.nyra.errors import bad, failure, not_found
from adapter.sandbox.nyra.keys import NyraGrant, count_request
from adapter.sandbox.nyra.state import NyraState

__all__ = ["build_app"]


def build_app(state: NyraState) -> FastAPI:
    app = FastAPI(title="NyraAI External API (sandbox)", openapi_url=None, docs_url=None)
    app.exception_handler(Reply)(answer_reply)

    @app.exception_handler(HTTPException)
    async def _no_route(request: Request, exc: HTTPException) -> Response:
        headers: dict[str, str] = getattr(request.state, "headers", None) or {}
        if not headers:  # no gate was passed: an unknown route counts against the key too
            grant = state.grants.get(request.headers.get("x-api-key", ""))
            count_request(state.limits, grant, state.clock(), headers)
        error = "Not Found" if exc.status_code == 404 else "Error"
        body = {"success": False, "error": error, "message": "Route not found"}
        return json_response(body, exc.status_code, headers)

    _patient_routes(app, state)
    _appointment_routes(app, state)
    _doctor_routes(app, state)
    return app


def _gate(state: NyraState, request: Request, permission: str) -> NyraGrant:
    """The presented key, counted against its limits before anything is checked (429s
    included), then its secret and unexpired token (401) and the permission (403)."""
    headers: dict[str, str] = {}
    request.state.headers = headers
    grant = state.grants.get(request.headers.get("x-api-key", ""))
    if not count_request(state.limits, grant, state.clock(), headers):
        raise failure(429, "Too Many Requests", "Rate limit exceeded")
    auth = request.headers.get("authorization", "")
    if (
        grant is None
        or request.headers.get("x-api-secret") != grant.secret
        or auth != f"Bearer {grant.token}"
        or state.clock() >= grant.token_expires_at
        or state.faults.expired_token
    ):
        raise failure(401, "Unauthorized", "Invalid API credentials")
    if permission not in grant.permissions:
        raise failure(403, "Forbidden", f"Missing required permission: {permission}")
    return grant


def _ok(request: Request, data: Any, status: int = 200, message: str | None = None) -> Response:
    body: Record = {"success": True}
    if message:
        body["message"] = message
    body["data"] = data
    return json_response(body, status, request.state.headers)


async def _body(request: Request) -> Record:
    return await read_object(request, lambda what: bad(f"request body must be {what}"))


def _patient_routes(app: FastAPI, state: NyraState) -> None:
    @app.get("/patients")
    async def list_patients(request: Request) -> Response:
        grant = _gate(state, request, "patients:read")
        q = request.query_params
        rows = state.visible(state.patients, grant, q.get("branch_id"))
        rows = rules.matching(rows, q.get("q"), ("name", "phone", "email"))
        for key in ("status", "doctor_id"):
            if value := q.get(key):
                rows = [p for p in rows if p.get(key) == value]
        return _ok(request, rules.page(rows, q.get("page"), q.get("limit")))

    @app.get("/patients/{patient_id}")
    async def read_patient(request: Request, patient_id: str) -> Response:
        grant = _gate(state, request, "patients:read")
        return _ok(request, state.one(state.patients, patient_id, grant, "Patient"))

    @app.post("/patients")
    async def create_patient(request: Request) -> Response:
        grant = _gate(state, request, "patients:create")
        body = await _body(request)
        data = rules.register_patient(state, body, grant)
        return _ok(request, data, 201, "Patient created successfully")


def _appointment_routes(app: FastAPI, state: NyraState) -> None:
    @app.get("/appointments")
    async def list_appointments(request: Request) -> Response:
        grant = _gate(state, request, "appointments:read")
        q = request.query_params
        rows = state.visible(state.appointments, grant, q.get("branch_id"))
        rows = rules.matching(rows, q.get("q"), ("patient_name", "doctor_name"))
        for key in ("status", "patient_id", "doctor_id"):
            if value := q.get(key):
                rows = [a for a in rows if a.get(key) == value]
        rows = dated_between(
            rows,
            q.get("date_from"),
            q.get("date_to"),
            state.local_day,
            lambda: bad("date_from and date_to must be dates (YYYY-MM-DD)"),
        )
        return _ok(request, rules.page(rows, q.get("page"), q.get("limit")))

    @app.get("/appointments/{appointment_id}")
    async def read_appointment(request: Request, appointment_id: str) -> Response:
        grant = _gate(state, request, "appointments:read")
        return _ok(request, state.one(state.appointments, appointment_id, grant, "Appointment"))

    @app.post("/appointments")
    async def create_appointment(request: Request) -> Response:
        grant = _gate(state, request, "appointments:write")
        body = await _body(request)
        appointment = rules.book(state, body, grant)
        return _ok(request, {"appointment_id": appointment["id"]}, 201)

    @app.patch("/appointments/{appointment_id}/status")
    async def set_status(request: Request, appointment_id: str) -> Response:
        grant = _gate(state, request, "appointments:write")
        appointment = state.one(state.appointments, appointment_id, grant, "Appointment")
        body = await _body(request)
        return _ok(request, rules.status_change(appointment, body))


def _doctor_routes(app: FastAPI, state: NyraState) -> None:
    @app.get("/doctors/{doctor_id}/slots")
    async def slots(request: Request, doctor_id: str) -> Response:
        _gate(state, request, "doctor_slots:read")
        if state.doctors.get(doctor_id) is None:
            raise not_found("Doctor")
        raw = request.query_params.get("date")
        day = parse_date(raw) if raw is not None else state.today() + timedelta(days=1)
        if day is None:
            raise bad("date must be YYYY-MM-DD")
        free = [
            {"time": s.strftime("%H:%M:%S"), "end_time": e.strftime("%H:%M:%S")}
            for s, e in state.free_slots(doctor_id, day)
        ]
        minutes = state.availability[doctor_id]["slot_duration_minutes"]
        data = {
            "doctor_id": doctor_id,
            "date": day.isoformat(),
            "slot_duration_minutes": minutes,
            "slots": free,
        }
        return _ok(request, data)

    @app.get("/doctors/{doctor_id}/availability")
    async def get_availability(request: Request, doctor_id: str) -> Response:
        _gate(state, request, "doctor_slots:read")
        if doctor_id not in state.availability:
            raise not_found("Doctor")
        return _ok(request, state.availability[doctor_id])

    @app.put("/doctors/{doctor_id}/availability")
    async def put_availability(request: Request, doctor_id: str) -> Response:
        _gate(state, request, "doctor_slots:write")
        if doctor_id not in state.availability:
            raise not_found("Doctor")
        body = await _body(request)
        current = rules.changed_availability(dict(state.availability[doctor_id]), body)
        state.availability[doctor_id] = current
        return _ok(request, current)

    @app.post("/ws-ticket")
    async def ws_ticket(request: Request) -> Response:
        _gate(state, request, "ws:ticket")
        ticket = ".".join(random_hex(16, state.rng) for _ in range(3))
        data = {"token": ticket, "ws_url": str(request.base_url).rstrip("/"), "ws_path": "/ws"}
        return _ok(request, data)
