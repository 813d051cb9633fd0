"""The Leyr API as a FastAPI app: each route checks the client, parses the request, asks
the state and rules, and answers as Leyr does (bare JSON arrays for lists)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from adapter.sandbox.common import Record, Reply, answer_reply, json_response, read_object
from adapter.sandbox.leyr import rules
from adapter.sandbox.leyr.errors import bad, error, not_found
from adapter.sandbox.leyr.state import LeyrState, in_unit, public

__all__ = ["build_app"]

CU_PATH = "/emrs/{emr}/care-units/{cu}"


def build_app(state: LeyrState) -> FastAPI:
    app = FastAPI(title="Leyr API (sandbox)", openapi_url=None, docs_url=None)
    app.exception_handler(Reply)(answer_reply)
    app.exception_handler(HTTPException)(_no_route)
    _patient_routes(app, state)
    _appointment_routes(app, state)
    _directory_routes(app, state)
    return app


async def _no_route(request: Request, exc: HTTPException) -> Response:
    reply = error(
        exc.status_code,
        "NOT_FOUND" if exc.status_code == 404 else "UNKNOWN_ERROR",
        "Route not found",
    )
    return json_response(reply.body, exc.status_code)


def _gate(state: LeyrState, request: Request, emr: str, care_unit: str | None = None) -> None:
    if (
        request.headers.get("x-leyr-client-id") != state.client_id
        or request.headers.get("x-leyr-client-secret") != state.client_secret
    ):
        raise error(
            401,
            "UNAUTHORIZED",
            "Unauthorized",
            ("UNAUTHORIZED", "Application with the provided client ID was not found.", None),
        )
    if emr != state.emr:
        raise error(404, "NOT_FOUND", "EHR not found", ("NOT_FOUND", "Unknown EHR code", None))
    if care_unit is not None and care_unit not in state.care_units:
        raise bad("INVALID_CARE_UNIT_ID", "Care unit not found", "care_unit_id")


async def _body(request: Request) -> Record:
    return await read_object(request, lambda what: bad("BAD_INPUT", f"Request body must be {what}"))


def _patient_routes(app: FastAPI, state: LeyrState) -> None:
    @app.get(CU_PATH + "/patients")
    async def list_patients(request: Request, emr: str, cu: str) -> Response:
        _gate(state, request, emr, cu)
        q = request.query_params
        return json_response(state.patients_named(cu, q.get("first_name"), q.get("last_name")))

    @app.get(CU_PATH + "/patients/{patient_id}")
    async def read_patient(request: Request, emr: str, cu: str, patient_id: str) -> Response:
        _gate(state, request, emr, cu)
        return json_response(state.patient(cu, patient_id))

    @app.post(CU_PATH + "/patients")
    async def upsert_patient(request: Request, emr: str, cu: str) -> Response:
        _gate(state, request, emr, cu)
        body = await _body(request)
        existing = state.same_person(cu, body)
        if existing is not None:
            return json_response(existing)
        patient = rules.new_patient(state, cu, body)
        state.patients[cu].put(patient)
        return json_response(patient, 201)


def _appointment_routes(app: FastAPI, state: LeyrState) -> None:
    @app.get(CU_PATH + "/appointments")
    async def list_appointments(request: Request, emr: str, cu: str) -> Response:
        _gate(state, request, emr, cu)
        q = request.query_params
        rows = state.appointments_matching(
            cu, q.get("patient_id"), q.get("resource_id"), q.get("start_date"), q.get("end_date")
        )
        return json_response(rows)

    @app.get(CU_PATH + "/appointments/{appointment_id}")
    async def read_appointment(
        request: Request, emr: str, cu: str, appointment_id: str
    ) -> Response:
        _gate(state, request, emr, cu)
        found = state.appointments[cu].get(appointment_id)
        if found is None:
            raise not_found("Appointment")
        return json_response(found)

    @app.post(CU_PATH + "/appointments")
    async def book(request: Request, emr: str, cu: str) -> Response:
        _gate(state, request, emr, cu)
        body = await _body(request)
        appointment = rules.new_appointment(state, cu, body)
        state.appointments[cu].put(appointment)
        return json_response([appointment], 201)

    @app.patch(CU_PATH + "/appointments/{appointment_id}")
    async def update(request: Request, emr: str, cu: str, appointment_id: str) -> Response:
        _gate(state, request, emr, cu)
        found = state.appointments[cu].get(appointment_id)
        if found is None:
            raise error(
                400, "BAD_REQUEST", "Request validation failed",
                ("INVALID_APPOINTMENT_ID", "Appointment not found", "appointment_id"),
            )  # fmt: skip
        body = await _body(request)
        return json_response(rules.update(state, cu, found, body))


def _directory_routes(app: FastAPI, state: LeyrState) -> None:
    @app.get("/emrs/{emr}/care-units")
    async def care_units(request: Request, emr: str) -> Response:
        _gate(state, request, emr)
        return json_response(
            [{"id": u["id"], "name": u.get("name")} for u in state.care_units.values()]
        )

    @app.get(CU_PATH + "/resources")
    async def resources(request: Request, emr: str, cu: str) -> Response:
        _gate(state, request, emr, cu)
        return json_response([public(r) for r in state.resources if in_unit(r, cu)])

    @app.get(CU_PATH + "/resources/{resource_id}")
    async def resource(request: Request, emr: str, cu: str, resource_id: str) -> Response:
        _gate(state, request, emr, cu)
        found = state.resource(cu, resource_id)
        if found is None:
            raise not_found("Resource")
        return json_response(public(found))

    @app.get(CU_PATH + "/healthcare-services")
    async def services(request: Request, emr: str, cu: str) -> Response:
        _gate(state, request, emr, cu)
        return json_response([public(s) for s in state.services if in_unit(s, cu)])

    @app.get(CU_PATH + "/timeslots")
    async def timeslots(request: Request, emr: str, cu: str) -> Response:
        _gate(state, request, emr, cu)
        q = request.query_params
        slots = rules.timeslots(
            state,
            cu,
            q.get("healthcare_service_id"),
            q.get("resource_id"),
            q.get("start_date"),
            q.get("end_date"),
        )
        return json_response(slots)
