"""The write routes: ``POST /fhir/{type}`` (create, conditional create) and ``PUT`` (update).

Nothing reaches a vendor until the body has been read within the size limit, parsed,
validated against the R4B model of ``fhir.resources`` (the R4-era models) and mapped into
the vendor's terms; each failure is an OperationOutcome naming what was wrong (with its
FHIRPath expression). Then one call to the facade. ``Idempotency-Key`` replays a write's
first outcome; ``If-None-Exist`` finds before it creates. ``If-Match`` on an update names
the version it changes (412 when the vendor holds another; a client configured with
``require_if_match`` must send it, else 428); on a create it is refused (400): a create
changes no version. A write answers the new version as its ``ETag``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from adapter.api.fhir import (
    ERROR_RESPONSES,
    ID_PARAM,
    TYPE_PARAM,
    base_url,
    caller,
    error_response,
    facade,
    fhir_json_response,
    negotiate,
    path_of,
    read_body,
    render,
    version_headers,
)
from adapter.facade import Written
from adapter.fhir import jsonbody
from adapter.fhir.kept import not_kept
from adapter.fhir.outcome import FhirError, Issue, operation_outcome
from adapter.fhir.params import preferences
from adapter.fhir.validation import fhir_problems
from adapter.fhir.versions import parse_if_match
from adapter.idempotency import IdempotencyStore, Outcome, fingerprint

__all__ = ["MAX_BODY", "MAX_DEPTH", "router"]

MAX_BODY = 1 << 20  # bytes: far above any Patient or Appointment
# Arrays and objects within one another: a Patient or Appointment needs about ten. Deeper
# ones are refused before anything walks them (the model's validation recurses), each
# level of which costs a few bytes to send.
MAX_DEPTH = 64
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_JSON_BODIES = {"application/fhir+json", "application/json"}
Handler = Callable[[bytes], Awaitable[Response]]

router = APIRouter(prefix="/fhir", responses=ERROR_RESPONSES, default_response_class=Response)
_BODY = {"content": {"application/fhir+json": {"schema": {"type": "object"}}}, "required": True}


@router.post(
    "/{resource_type}",
    summary="Create (conditional with If-None-Exist; Idempotency-Key honoured)",
    status_code=201,
    responses={
        201: fhir_json_response("the stored resource, as read back from the vendor"),
        400: fhir_json_response("OperationOutcome: not JSON, or If-Match (updates only)"),
        200: fhir_json_response("If-None-Exist matched one, or the vendor already held it"),
        409: fhir_json_response("OperationOutcome: the time is not free"),
        412: fhir_json_response("OperationOutcome: If-None-Exist matched more than one"),
        413: fhir_json_response("OperationOutcome: the body is too large"),
        415: fhir_json_response("OperationOutcome: the body is not FHIR JSON"),
        422: fhir_json_response("OperationOutcome: not valid, or not what the source can hold"),
    },
    openapi_extra={"parameters": [TYPE_PARAM], "requestBody": _BODY},
)
async def create(request: Request) -> Response:
    resource_type = request.path_params["resource_type"]
    return await _idempotent(request, lambda raw: _create(request, resource_type, raw))


@router.put(
    "/{resource_type}/{fhir_id}",
    summary="Update: move or cancel an Appointment",
    responses={
        200: fhir_json_response("the appointment as the vendor now holds it (ETag: its version)"),
        409: fhir_json_response("OperationOutcome: the time is not free"),
        412: fhir_json_response("OperationOutcome: If-Match names a version no longer current"),
        428: fhir_json_response("OperationOutcome: this client must send If-Match"),
        422: fhir_json_response("OperationOutcome: an element the vendor cannot change"),
    },
    openapi_extra={"parameters": [TYPE_PARAM, ID_PARAM], "requestBody": _BODY},
)
async def update(request: Request) -> Response:
    resource_type = request.path_params["resource_type"]
    fhir_id = request.path_params["fhir_id"]
    return await _idempotent(request, lambda raw: _update(request, resource_type, fhir_id, raw))


async def _idempotent(request: Request, handle: Handler) -> Response:
    negotiate(request)
    raw = await _read_body(request)
    key = request.headers.get("idempotency-key")
    if key is None:
        return await _answer(request, handle, raw)
    if not 1 <= len(key) <= 255:
        raise FhirError.one(400, "invalid", "Idempotency-Key must be 1 to 255 characters")
    store: IdempotencyStore = request.app.state.idempotency
    client = request.scope.get("fhir.client")
    print_ = fingerprint(request.method, path_of(request), raw, client.name if client else "")
    key = f"{client.name if client else ''}\0{key}"  # one client's keys are not another's
    held = await store.claim(key, print_)
    if held is not None:
        if held.fingerprint != print_:
            raise FhirError.one(
                422, "business-rule", "Idempotency-Key was used for another request"
            )
        if held.status is None:
            raise FhirError.one(
                409,
                "conflict",
                "a request with this Idempotency-Key is still running",
                **{"Retry-After": "1"},
            )
        replayed = Response(held.body, held.status)
        for name, value in held.headers:  # as a list: a name may repeat (Warning: 299)
            replayed.headers.append(name, value)
        replayed.headers["Idempotent-Replayed"] = "true"
        return replayed
    response: Response | None = None
    if await store.unknown(key):  # an earlier try may have made it: look before sending
        request.scope["fhir.look_first"] = True
    try:
        response = await _answer(request, handle, raw)
        return response
    finally:
        outcome = None
        if response is not None and response.status_code < 500:  # a 5xx may be tried again
            kept = tuple((k, v) for k, v in response.headers.items() if k != "content-length")
            outcome = Outcome(print_, response.status_code, kept, bytes(response.body))
        # Whatever ended a try with a 5xx (or no answer at all), the vendor may have made
        # the write: the next try looks first.
        await store.finish(key, outcome, unknown=outcome is None)


async def _answer(request: Request, handle: Handler, raw: bytes) -> Response:
    """The write's response, errors included (so an idempotent replay keeps them too)."""
    try:
        return await handle(raw)
    except Exception as exc:
        return error_response(request, exc)


async def _read_body(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _JSON_BODIES:
        raise FhirError.one(415, "not-supported", "send the resource as application/fhir+json")
    return await read_body(request, MAX_BODY, "the body")


def _deeper_than(raw: bytes, limit: int) -> bool:
    """Does the JSON text ``raw`` nest arrays and objects deeper than ``limit``?

    Counted on the bytes by whole-buffer operations, before anything is parsed (no
    Python step per byte or per value): the strings taken out (escaped backslashes and
    quotes first, so that every quote left opens or closes one), only the brackets kept,
    then each pass takes out every innermost pair (``[]`` or ``{}``), one level of
    nesting. Exact for JSON; of text that is not JSON, the answer only chooses which 400
    it gets."""
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[0::2])
    brackets = outside.translate(_SQUARE, _NOT_BRACKET)
    if b"[" * (limit + 1) in brackets:  # the usual shape of it, found in one scan
        return True
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            return False
        brackets = shorter
    return bool(brackets)


def _too_deep() -> FhirError:
    return FhirError.one(
        400, "structure", f"the body nests arrays and objects deeper than {MAX_DEPTH} levels"
    )


def _resource(raw: bytes, resource_type: str) -> dict[str, Any]:
    if _deeper_than(raw, MAX_DEPTH):  # before the parser and the model's validation
        raise _too_deep()
    try:
        resource = jsonbody.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):  # the parser's own limit (1024 levels)
            raise _too_deep() from None
        raise FhirError.one(400, "structure", "the body is not JSON") from None
    except jsonbody.BodyRefused as exc:
        raise FhirError.one(400, "structure", str(exc)) from None
    if not isinstance(resource, dict):
        raise FhirError.one(400, "structure", "the body is not a JSON object")
    if resource.get("resourceType") != resource_type:
        raise FhirError.one(
            400, "invalid", f"resourceType must be {resource_type}", f"{resource_type}.resourceType"
        )
    problems = fhir_problems(resource_type, resource)  # every one, in one answer
    if problems:
        raise FhirError(422, problems)
    return resource


def _respond(
    request: Request,
    resource_type: str,
    written: Written,
    created_status: int,
    sent: dict[str, Any] | None,
) -> Response:
    """The answer to a write: the resource as stored (``Prefer: return=representation``,
    the default), nothing (``return=minimal``) or an OperationOutcome
    (``return=OperationOutcome``). Elements of ``sent`` the source did not keep are a
    warning issue each in that OperationOutcome, and otherwise a ``Warning: 299`` header
    each (the body then stays the resource exactly as a read gives it)."""
    resource = written.resource
    location = f"{base_url(request)}/{resource_type}/{resource['id']}"
    status = created_status if written.created else 200
    headers = {"Location": location} if status == 201 else {"Content-Location": location}
    headers |= version_headers(resource)
    source = (resource.get("meta") or {}).get("source", "the source")
    lost = [] if sent is None else not_kept(resource_type, sent, resource)
    warnings = [
        Issue("warning", "not-supported", f"not kept: source {source} cannot hold it", (path,))
        for path in lost
    ]
    prefer = preferences(request.headers.get("prefer"))
    if "return=operationoutcome" in prefer:
        what = "created" if status == 201 else "stored"
        body = operation_outcome(
            Issue("information", "informational", f"{resource_type}/{resource['id']} {what}"),
            *warnings,
        )
        return render(request, body, status, headers)
    response = (
        Response(b"", status, headers)
        if "return=minimal" in prefer
        else render(request, resource, status, headers)
    )
    for issue in warnings:
        response.headers.append(
            "Warning", f'299 fhir-adapter "{issue.expression[0]}: {issue.diagnostics}"'
        )
    return response


async def _create(request: Request, resource_type: str, raw: bytes) -> Response:
    facade(request).require_served(resource_type)
    if request.headers.get("if-match") is not None:
        raise FhirError.one(
            400, "not-supported", "If-Match is for updates: a create changes no version"
        )
    sent = _resource(raw, resource_type)
    written = await facade(request).create(
        resource_type,
        sent,
        caller(request),
        if_none_exist=request.headers.get("if-none-exist"),
        look_first=bool(request.scope.get("fhir.look_first")),
    )
    # An existing match (If-None-Exist) was not written: nothing of the body was lost.
    return _respond(request, resource_type, written, 201, sent if written.created else None)


async def _update(request: Request, resource_type: str, fhir_id: str, raw: bytes) -> Response:
    facade(request).require_served(resource_type)
    header = request.headers.get("if-match")
    if_match = None if header is None else parse_if_match(header)
    client = request.scope.get("fhir.client")
    if if_match is None and client is not None and client.require_if_match:
        raise FhirError.one(
            428, "required", 'this client must send If-Match: W/"<versionId>" with an update'
        )
    resource = _resource(raw, resource_type)
    written = await facade(request).update(
        resource_type, fhir_id, resource, caller(request), if_match=if_match
    )
    return _respond(request, resource_type, written, 200, resource)
