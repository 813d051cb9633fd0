"""The FHIR routes: parse the request, ask the facade, serialise. Nothing else."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from adapter.facade import Facade
from adapter.fhir.bundle import searchset
from adapter.fhir.capability import capability_statement
from adapter.fhir.cursor import CursorCodec, InvalidCursor
from adapter.fhir.outcome import FhirError
from adapter.fhir.params import ParsedSearch, parse_search, prefers_strict
from adapter.settings import Settings

__all__ = [
    "ERROR_RESPONSES",
    "FHIR_JSON",
    "ID_PARAM",
    "TYPE_PARAM",
    "allowed_sources",
    "base_url",
    "fhir_json_response",
    "negotiate",
    "note_ids",
    "render",
    "require_served",
    "router",
]

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = {"json", "application/json", "application/fhir+json"}
_XML_TYPES = {"xml", "text/xml", "application/xml", "application/fhir+xml"}


def fhir_json_response(description: str) -> dict[str, Any]:
    schema = {"type": "object", "description": "a FHIR R4 resource (JSON)"}
    return {"description": description, "content": {FHIR_JSON: {"schema": schema}}}


ERROR_RESPONSES = {
    status: fhir_json_response(f"OperationOutcome: {why}")
    for status, why in {
        400: "a bad parameter or cursor, named in the issue's expression",
        404: "unknown resource type or id",
        406: "a format other than JSON was asked for",
        502: "a source failed or answered wrongly",
        503: "a source is unavailable or rate limiting (Retry-After when known)",
        504: "a source did not answer in time",
    }.items()
}
TYPE_PARAM = {
    "name": "resource_type",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "a resource type the CapabilityStatement lists (Patient, Appointment)",
}
ID_PARAM = {
    "name": "fhir_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"},
    "description": "the resource's id; it names the source that holds it",
}
router = APIRouter(prefix="/fhir", responses=ERROR_RESPONSES, default_response_class=Response)


def negotiate(request: Request) -> str:
    """The media type to answer with, from ``_format`` or ``Accept``; 406 for XML."""
    chosen = request.scope.get("fhir.media")
    if chosen is None:
        chosen = request.scope["fhir.media"] = _negotiate(request)
    return chosen


def _negotiate(request: Request) -> str:
    wanted = request.query_params.get("_format")
    if wanted is not None:
        wanted = wanted.split(";")[0].strip().lower()
        if wanted in _JSON_TYPES:
            return "application/json" if wanted == "application/json" else FHIR_JSON
        what = "XML" if wanted in _XML_TYPES else repr(wanted)
        raise FhirError.one(
            406, "not-supported", f"_format {what} is not served; use json", "_format"
        )
    accept = request.headers.get("accept")
    if not accept:
        return FHIR_JSON
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if FHIR_JSON in types or any(t in ("*/*", "application/*") for t in types):
        return FHIR_JSON
    if "application/json" in types:
        return "application/json"
    raise FhirError.one(
        406, "not-supported", "only application/fhir+json (or application/json) is served"
    )


def render(request: Request, body: Any, status: int = 200, headers: dict | None = None) -> Response:
    try:
        media = negotiate(request)
    except FhirError:
        media = FHIR_JSON  # an error about the format is itself sent as JSON
    pretty = request.query_params.get("_pretty") == "true"
    content = orjson.dumps(body, option=orjson.OPT_INDENT_2 if pretty else 0)
    return Response(content, status, headers, media_type=f"{media}; charset=utf-8")


def allowed_sources(request: Request) -> frozenset[str] | None:
    """The sources the calling client may use (None: open access, every source)."""
    client = request.scope.get("fhir.client")
    return client.sources if client is not None else None


def note_ids(request: Request, ids: list[str]) -> None:
    """Record the ids a request touched, for its audit record."""
    audit = request.scope.get("fhir.audit")
    if audit is not None:
        audit["ids"].extend(ids)


def _client_name(request: Request) -> str | None:
    client = request.scope.get("fhir.client")
    return client.name if client is not None else None


def _state(request: Request) -> tuple[Facade, Settings, CursorCodec]:
    s = request.app.state
    return s.facade, s.settings, s.cursors


def base_url(request: Request) -> str:
    """``[server] public_base_url``, else this server's own ``.../fhir`` as the client
    reached it (scheme and Host header)."""
    settings: Settings = request.app.state.settings
    if settings.public_base_url:
        return settings.public_base_url
    scope = request.scope
    host = request.headers.get("host")
    if not host:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] in (None, 80, 443) else f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}/fhir"


@router.get(
    "/metadata",
    summary="CapabilityStatement",
    description="What this server does, generated from the configured sources.",
    responses={200: fhir_json_response("CapabilityStatement")},
)
async def metadata(request: Request) -> Response:
    negotiate(request)
    facade, settings, _ = _state(request)
    token = None
    if request.app.state.tokens is not None:
        token = base_url(request).removesuffix("/fhir") + "/auth/token"
    return render(
        request, capability_statement(facade, base_url(request), settings.max_count, token)
    )


@router.get(
    "/{resource_type}",
    summary="Search (GET)",
    description="Search parameters as the CapabilityStatement lists them; paging by the "
    "Bundle's next/previous links (signed _cursor).",
    responses={200: fhir_json_response("Bundle of type searchset")},
    openapi_extra={"parameters": [TYPE_PARAM]},
)
async def search_get(request: Request) -> Response:
    resource_type = request.path_params["resource_type"]
    return await _search(request, resource_type, list(request.query_params.multi_items()))


@router.post(
    "/{resource_type}/_search",
    summary="Search (POST, form body)",
    responses={
        200: fhir_json_response("Bundle of type searchset"),
        415: fhir_json_response("OperationOutcome"),
    },
    openapi_extra={
        "parameters": [TYPE_PARAM],
        "requestBody": {
            "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}
        },
    },
)
async def search_post(request: Request) -> Response:
    resource_type = request.path_params["resource_type"]
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FhirError.one(
            415, "not-supported", "POST _search takes application/x-www-form-urlencoded"
        )
    try:
        form = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise FhirError.one(400, "invalid", "the form body is not UTF-8") from None
    items = list(request.query_params.multi_items()) + form
    return await _search(request, resource_type, items)


@router.get(
    "/{resource_type}/{fhir_id}",
    summary="Read",
    responses={200: fhir_json_response("the resource")},
    openapi_extra={"parameters": [TYPE_PARAM, ID_PARAM]},
)
async def read(request: Request) -> Response:
    resource_type, fhir_id = request.path_params["resource_type"], request.path_params["fhir_id"]
    negotiate(request)
    facade, _, _ = _state(request)
    require_served(facade, resource_type)
    resource = await facade.read(resource_type, fhir_id, allowed_sources(request))
    note_ids(request, [resource["id"]])
    return render(request, resource)


def require_served(facade: Facade, resource_type: str) -> None:
    if resource_type not in facade.resource_types():
        raise FhirError.one(
            404, "not-supported", f"resource type {resource_type!r} is not served here"
        )


async def _search(request: Request, resource_type: str, items: list[tuple[str, str]]) -> Response:
    negotiate(request)
    facade, settings, cursors = _state(request)
    require_served(facade, resource_type)
    parsed = parse_search(
        resource_type,
        items,
        supported=facade.supported_params(resource_type),
        includes=facade.includes(resource_type),
        sources=facade.connectors,
        strict=prefers_strict(request.headers.get("prefer")),
        default_count=settings.default_count,
        max_count=settings.max_count,
    )
    base = base_url(request)
    if parsed.cursor is not None:
        try:
            state = cursors.decode(parsed.cursor)
        except InvalidCursor as exc:
            raise FhirError.one(400, "invalid", f"_cursor: {exc}", "_cursor") from None
        if state.get("t") != resource_type or state.get("cl") != _client_name(request):
            raise FhirError.one(400, "invalid", "_cursor: belongs to another search", "_cursor")
        issues = []
        self_url = f"{base}/{resource_type}?_cursor={parsed.cursor}"
    else:
        if parsed.summary_count or parsed.request.count == 0:
            return await _count_only(request, facade, parsed, base)
        allowed = allowed_sources(request)
        only = tuple(sorted(allowed)) if allowed is not None else None
        state, issues = facade.first_state(parsed, only=only)
        state["cl"] = _client_name(request)
        self_url = _first_url(base, resource_type, parsed)
        if parsed.total == "accurate":
            state["tot"], _ = await facade.count(parsed, allowed)
    page = await facade.search_page(state, issues)
    note_ids(request, [r["id"] for r in page.matches] + [r["id"] for r in page.includes])
    links = {"self": self_url}
    if page.next_state is not None:
        links["next"] = (
            f"{base}/{resource_type}?{urlencode({'_cursor': cursors.encode(page.next_state)})}"
        )
    if page.previous_state is not None:
        links["previous"] = (
            f"{base}/{resource_type}?{urlencode({'_cursor': cursors.encode(page.previous_state)})}"
        )
    bundle = searchset(
        base,
        matches=page.matches,
        includes=page.includes,
        issues=page.issues,
        total=None if parsed.total == "none" else page.total,
        links=links,
    )
    return render(request, bundle)


def _first_url(base: str, resource_type: str, parsed: ParsedSearch) -> str:
    count = f"_count={parsed.request.count}"
    if not parsed.used:
        return f"{base}/{resource_type}?{count}"
    return f"{base}/{resource_type}?{urlencode(parsed.used)}&{count}"


async def _count_only(
    request: Request, facade: Facade, parsed: ParsedSearch, base: str
) -> Response:
    total, issues = await facade.count(parsed, allowed_sources(request))
    links = {"self": _first_url(base, parsed.request.resource_type, parsed)}
    return render(request, searchset(base, matches=[], issues=issues, total=total, links=links))
