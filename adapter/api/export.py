"""Bulk data export over HTTP (FHIR Bulk Data Access IG v2.0.0).

- Kick-off: ``GET|POST /fhir/$export`` (every type a source can list),
  ``/fhir/Patient/$export`` and ``/fhir/Group/{id}/$export`` (a Group is a source, by
  name): the patient compartment (Patients and their Appointments) and, of the directory
  types ``_type`` names, what those reference. With ``Prefer: respond-async``;
  ``_outputFormat`` (NDJSON), ``_type``, ``_since``, ``_typeFilter``
  (:mod:`adapter.export.filters`; a filter the export cannot apply is a 400 naming it,
  whatever the handling), ``_elements`` and ``patient`` (:mod:`adapter.export.elements`,
  each a 400 naming it when it cannot be honoured); a POST may carry them in a
  ``Parameters`` body (``patient`` as ``valueReference``). Any other parameter is a 400,
  or ignored under ``Prefer: handling=lenient``. The answer is 202 with the status URL in
  ``Content-Location``.
- Status: ``GET /fhir/$export-poll/{job}``: 202 with ``X-Progress`` and ``Retry-After``
  while it runs, 200 with the manifest when done; ``DELETE`` cancels it (then 404).
- Files: ``GET /fhir/$export-file/{job}/{name}``, NDJSON, from ``[export] dir`` or
  streamed from object storage; with ``[export] signed_urls`` the manifest names
  pre-signed storage URLs instead (``requiresAccessToken: false``). Storage that fails is a
  503 OperationOutcome naming only the operation and the storage's error code.

Who: the token's scopes must allow reading each type exported (403 otherwise); only the
client's own sources are exported; a job's status and files are the asking client's
alone (another's is a 404). Jobs run in the background (:mod:`adapter.export.jobs`).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import FileResponse, Response, StreamingResponse

from adapter.api.fhir import (
    ERROR_RESPONSES,
    base_url,
    caller,
    facade,
    negotiate,
    parse_form,
    read_body,
)
from adapter.export.elements import checked_patients, parse_elements
from adapter.export.engine import (
    COMPARTMENT_TYPES,
    EXPORT_TYPES,
    ExportState,
    manifest,
    parse_instant,
)
from adapter.export.filters import parse_type_filters, split_type_filters
from adapter.export.jobs import ExportRunner
from adapter.export.outputs import LocalOutput, ObjectOutput
from adapter.export.storage import StorageError
from adapter.fhir import jsonbody
from adapter.fhir.outcome import FhirError
from adapter.fhir.params import preferences

__all__ = ["EXPORT_TYPES", "router"]

OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
_KNOWN = frozenset(
    {
        "_outputFormat",
        "_type",
        "_since",
        "_typeFilter",
        "_elements",
        "patient",
        "_format",
        "_pretty",
    }
)
RETRY_SECONDS = 2
_MAX_PARAMETERS = 64 * 1024

router = APIRouter(prefix="/fhir", responses=ERROR_RESPONSES, default_response_class=Response)

_KICK_OFF: dict[str, Any] = {
    "summary": "Bulk data export: kick-off",
    "description": "Needs Prefer: respond-async. 202 with the status URL in "
    "Content-Location; _outputFormat (ndjson), _type, _since, _typeFilter.",
    "status_code": 202,
    "responses": {202: {"description": "Accepted: poll the Content-Location URL"}},
}
_GROUP_ID = {
    "name": "group_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "a source's name: its Patients and their Appointments",
}
_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "the export job, as the kick-off's Content-Location names it",
}


DEFAULT_MAX_EXPORTS = 2  # without clients (open access): jobs at once
QUOTA_RETRY_SECONDS = 30  # when one more export may be asked for: about a poll's pace


def runner(request: Request) -> ExportRunner:
    return request.app.state.exports  # type: ignore[no-any-return]


@router.get("/$export", **_KICK_OFF)
@router.post("/$export", **_KICK_OFF)
async def export_system(request: Request) -> Response:
    return await _kick_off(request, None, patient_level=False)


@router.get("/Patient/$export", **_KICK_OFF)
@router.post("/Patient/$export", **_KICK_OFF)
async def export_patients(request: Request) -> Response:
    return await _kick_off(request, None, patient_level=True)


@router.get("/Group/{group_id}/$export", openapi_extra={"parameters": [_GROUP_ID]}, **_KICK_OFF)
@router.post("/Group/{group_id}/$export", openapi_extra={"parameters": [_GROUP_ID]}, **_KICK_OFF)
async def export_group(request: Request) -> Response:
    return await _kick_off(request, request.path_params["group_id"], patient_level=True)


@router.get(
    "/$export-poll/{job_id}",
    summary="Bulk data export: status",
    description="202 with X-Progress and Retry-After while the export runs; 200 with the "
    "manifest when it is done.",
    responses={
        200: {"description": "the manifest"},
        202: {"description": "still running (X-Progress, Retry-After)"},
    },
    openapi_extra={"parameters": [_JOB_ID]},
)
async def export_status(request: Request) -> Response:
    negotiate(request)
    job = await _job(request)
    state = job["state"]
    if job["status"] == "running":
        written = sum(p["written"] for p in state["parts"])
        finished = sum(1 for p in state["parts"] if p["done"])
        progress = f"{written} resources written; {finished} of {len(state['parts'])} parts done"
        return Response(
            status_code=202,
            headers={"X-Progress": progress, "Retry-After": str(RETRY_SECONDS)},
        )
    if job["status"] != "done" and job.get("failure"):
        raise FhirError.one(
            503, "transient", f"the export failed, {job['failure']}; kick it off again"
        )
    if job["status"] != "done":
        raise FhirError.one(500, "exception", "the export failed; kick it off again")
    base = base_url(request)
    output = runner(request).output
    exported = ExportState.from_json(state)
    signed: dict[str, str] = {}
    if isinstance(output, ObjectOutput) and not output.requires_token:
        names = [f.name for p in exported.parts for f in p.files if f.count]
        names += [f.name for f in (exported.errors, exported.deleted) if f.count]
        try:
            signed = {n: await output.signed_url(job["id"], n) for n in names}
        except StorageError as exc:
            raise _unavailable(exc) from None
    body = manifest(
        exported,
        job["transaction_time"],
        job["request"],
        lambda name: signed.get(name) or f"{base}/$export-file/{job['id']}/{name}",
    )
    body["requiresAccessToken"] = output.requires_token
    return Response(orjson.dumps(body), 200, media_type="application/json")


@router.delete(
    "/$export-poll/{job_id}",
    summary="Bulk data export: cancel",
    status_code=202,
    responses={202: {"description": "cancelled; its status is then a 404"}},
    openapi_extra={"parameters": [_JOB_ID]},
)
async def export_cancel(request: Request) -> Response:
    if not await runner(request).cancel(request.path_params["job_id"], caller(request).name):
        raise _no_job()
    return Response(status_code=202)


@router.get(
    "/$export-file/{job_id}/{name}",
    summary="Bulk data export: one output file",
    responses={200: {"description": "NDJSON, one resource a line"}},
    openapi_extra={
        "parameters": [
            _JOB_ID,
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
        ]
    },
)
async def export_file(request: Request) -> Response:
    job = await _job(request)
    name = request.path_params["name"]
    state = job["state"]
    names = {f["name"] for p in state["parts"] for f in p["files"]} | {state["errors"]["name"]}
    if "deleted" in state:
        names.add(state["deleted"]["name"])
    if job["status"] != "done" or name not in names:
        raise FhirError.one(404, "not-found", "no such export file")
    output = runner(request).output
    if isinstance(output, ObjectOutput):
        return await _streamed(output, job["id"], name)
    assert isinstance(output, LocalOutput)
    path = output.folder(job["id"]) / name
    if not path.is_file():
        raise FhirError.one(404, "not-found", "no such export file")
    return FileResponse(path, media_type="application/fhir+ndjson")


async def _streamed(output: ObjectOutput, job_id: str, name: str) -> Response:
    """The object, streamed chunk by chunk; its first chunk read before answering, so that
    an object missing or storage failing is an OperationOutcome, not a broken stream."""
    chunks = output.chunks(job_id, name)
    try:
        first = await anext(chunks, b"")
    except StorageError as exc:
        if exc.missing:
            raise FhirError.one(404, "not-found", "no such export file") from None
        raise _unavailable(exc) from None

    async def body() -> Any:
        yield first
        async for chunk in chunks:
            yield chunk

    return StreamingResponse(body(), media_type="application/fhir+ndjson")


def _unavailable(exc: StorageError) -> FhirError:
    return FhirError.one(503, "transient", f"{exc}; try again later", **{"Retry-After": "5"})


async def _job(request: Request) -> dict[str, Any]:
    job = await runner(request).find(request.path_params["job_id"], caller(request).name)
    if job is None:
        raise _no_job()
    return job


def _no_job() -> FhirError:
    return FhirError.one(404, "not-found", "no such export job (finished ones expire)")


async def _kick_off(request: Request, group: str | None, *, patient_level: bool) -> Response:
    negotiate(request)
    prefer = preferences(request.headers.get("prefer"))
    if "respond-async" not in prefer:
        raise FhirError.one(400, "invalid", "$export needs the header Prefer: respond-async")
    lenient = "handling=lenient" in prefer
    items = parse_form(request.scope.get("query_string", b""), "the query")
    if request.method == "POST":
        items += await _parameters(request)
    params: dict[str, list[str]] = {}
    for name, value in items:
        params.setdefault(name, []).append(value)
    unknown = sorted(set(params) - _KNOWN)
    if unknown and not lenient:
        raise FhirError.one(
            400,
            "not-supported",
            f"$export does not take {', '.join(unknown)} (Prefer: handling=lenient ignores it)",
            *unknown,
        )
    for value in params.get("_outputFormat", []):
        if value not in OUTPUT_FORMATS:
            raise FhirError.one(
                400,
                "not-supported",
                "_outputFormat must be application/fhir+ndjson",
                "_outputFormat",
            )
    since = None
    if params.get("_since"):
        since = params["_since"][-1]
        try:
            parse_instant(since)
        except ValueError as exc:
            raise FhirError.one(400, "invalid", f"_since {exc}", "_since") from None
    served = [t for t in EXPORT_TYPES if t in facade(request).declared.types]
    # A Patient or Group export holds the patient compartment; a directory type only
    # when _type names it, and then what the compartment references.
    default = [t for t in served if t in COMPARTMENT_TYPES] if patient_level else served
    who = caller(request)
    if params.get("_type"):
        types: list[str] = []
        for value in params["_type"]:
            for name in (v.strip() for v in value.split(",")):
                if name not in served:
                    raise FhirError.one(
                        400, "not-supported", f"{name!r} is not exported here", "_type"
                    )
                if name not in types:
                    types.append(name)
        refused = [t for t in types if not who.may_read(t)]
        if patient_level and not any(t in COMPARTMENT_TYPES for t in types):
            raise FhirError.one(
                400,
                "not-supported",
                "a Patient or Group export holds the directory resources its Patients and "
                "Appointments reference: _type must name Patient or Appointment too",
                "_type",
            )
    else:  # every type the token may read
        types = [t for t in default if who.may_read(t)]
        refused = [] if types else default
    if refused:
        raise FhirError.one(
            403,
            "forbidden",
            f"the token's scopes do not allow read of {', '.join(refused)}",
            **{"WWW-Authenticate": 'Bearer realm="fhir-adapter", error="insufficient_scope"'},
        )
    type_filters = split_type_filters(params.get("_typeFilter", []))
    parse_type_filters(facade(request), type_filters, types)  # a 400 for one not applied
    elements = parse_elements(params.get("_elements", []), types)
    declared = facade(request).declared
    if group is not None and (group not in declared.sources or not who.sees(group)):
        raise FhirError.one(404, "not-found", f"Group/{group} is not known")
    if params.get("patient") and not patient_level:
        raise FhirError.one(
            400, "not-supported", "patient narrows a Patient or Group export only", "patient"
        )
    patients = await checked_patients(facade(request), params.get("patient", []), who, group)
    pairs = [
        (source, resource_type)
        for resource_type in types
        for source in declared.serving(resource_type)
        if (group is None or source == group) and who.sees(source)
    ]
    client = request.scope.get("fhir.client")
    most = client.max_exports if client is not None else DEFAULT_MAX_EXPORTS
    if await runner(request).running_for(who.name) >= most:
        raise FhirError.one(
            429,
            "throttled",
            f"this client already runs {most} export job{'s' if most != 1 else ''}, as many "
            "as it may at once ([clients.NAME] max_exports): wait for one to finish, or "
            "cancel one",
            **{"Retry-After": str(QUOTA_RETRY_SECONDS)},
        )
    query = request.scope.get("query_string", b"").decode()
    asked = f"{base_url(request)}{request.scope.get('path', '').removeprefix('/fhir')}"
    job = await runner(request).submit(
        client=who.name,
        request=f"{asked}?{query}" if query else asked,
        pairs=pairs,
        patient_level=patient_level,
        since=since,
        type_filters=type_filters,
        elements=elements,
        patients=patients,
    )
    where = f"{base_url(request)}/$export-poll/{job['id']}"
    return Response(status_code=202, headers={"Content-Location": where})


async def _parameters(request: Request) -> list[tuple[str, str]]:
    """A POST kick-off's ``Parameters`` body (or a form), as name/value pairs."""
    body = await read_body(request, _MAX_PARAMETERS, "the Parameters body")
    if not body.strip():
        return []
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        return parse_form(body, "the form body")
    try:
        resource = jsonbody.loads(body)
    except orjson.JSONDecodeError:
        raise FhirError.one(400, "invalid", "the body is not a JSON Parameters resource") from None
    except jsonbody.BodyRefused as exc:
        raise FhirError.one(400, "invalid", str(exc)) from None
    if not isinstance(resource, dict) or resource.get("resourceType") != "Parameters":
        raise FhirError.one(400, "invalid", "the body must be a Parameters resource")
    items = []
    for parameter in resource.get("parameter") or []:
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise FhirError.one(400, "invalid", "each parameter needs a name")
        values = [v for k, v in parameter.items() if k.startswith("value") and isinstance(v, str)]
        reference = parameter.get("valueReference")
        if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
            values.append(reference["reference"])  # patient: a Reference to a Patient
        if len(values) != 1:
            raise FhirError.one(400, "invalid", f"parameter {parameter['name']} needs a value")
        items.append((parameter["name"], values[0]))
    return items
