"""The FHIR read routes: parse the request, ask the facade once, render. Nothing else.

Also what every route shares: content negotiation, rendering, who the caller is, the
public base URL, and :func:`error_response`, the answer any exception becomes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from adapter.api.guard import MAX_URL, where_of
from adapter.facade import Caller, Facade, SearchResult, outcome_of, readable_types
from adapter.fhir.bundle import searchset
from adapter.fhir.capability import capability_statement
from adapter.fhir.outcome import FhirError
from adapter.fhir.params import prefers_strict
from adapter.fhir.shaping import element_names, subset
from adapter.fhir.versions import etag_of
from adapter.settings import Settings
from adapter.subscriptions import TOPICS, topic_url

__all__ = [
    "ERROR_RESPONSES",
    "FHIR_JSON",
    "FORM_BODY",
    "ID_PARAM",
    "TYPE_PARAM",
    "base_url",
    "bundle_of",
    "caller",
    "error_response",
    "facade",
    "fhir_json_response",
    "negotiate",
    "note_ids",
    "parse_form",
    "path_of",
    "read_body",
    "render",
    "router",
    "search_items",
]

FHIR_JSON = "application/fhir+json"
# The OpenAPI request body of every POST _search: the query's parameters as a form.
FORM_BODY = {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
_JSON_TYPES = {"json", "application/json", "application/fhir+json"}
_XML_TYPES = {"xml", "text/xml", "application/xml", "application/fhir+xml"}
_ANYONE = Caller()
# A ``%`` that does not start two hex digits: the text is not percent-encoded at all.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# A form sent to POST _search is the query it stands for: held to the URL's limit.
MAX_FORM = MAX_URL


def fhir_json_response(description: str) -> dict[str, Any]:
    schema = {"type": "object", "description": "a FHIR R4 resource (JSON)"}
    return {"description": description, "content": {FHIR_JSON: {"schema": schema}}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
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
    wanted = request.scope.get("fhir.format")
    if wanted is None:
        wanted = _query_value(request, "_format")
    if wanted is not None:
        wanted = wanted.split(";")[0].strip().lower()
        if wanted in _JSON_TYPES:
            return "application/json" if wanted == "application/json" else FHIR_JSON
        # Quoted back only when short: it is the caller's own text.
        if wanted in _XML_TYPES:
            what = "_format XML"
        elif len(wanted) <= 40:
            what = f"_format {wanted!r}"
        else:
            what = "this _format"
        raise FhirError.one(406, "not-supported", f"{what} is not served; use json", "_format")
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


def render(
    request: Request, body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    try:
        media = negotiate(request)
    except FhirError:
        media = FHIR_JSON  # an error about the format is itself sent as JSON
    pretty = request.scope.get("fhir.pretty")
    if pretty is None:
        pretty = _query_value(request, "_pretty")
    content = orjson.dumps(body, option=orjson.OPT_INDENT_2 if pretty == "true" else 0)
    return Response(content, status, headers, media_type=f"{media}; charset=utf-8")


def caller(request: Request) -> Caller:
    """Who is asking: the client the guard let in (the sources it may use, the types its
    token may read), or anyone under open access. Made once per request."""
    found: Caller | None = request.scope.get("fhir.caller")
    if found is not None:
        return found
    client = request.scope.get("fhir.client")
    if client is None:
        who = _ANYONE
    else:
        # A client that may use every configured source is told so once (None), rather
        # than asked of each resource.
        sources = None if client.sources >= facade(request).source_names else client.sources
        who = Caller(client.name, sources, readable_types(request.scope.get("fhir.grant")))
    request.scope["fhir.caller"] = who
    return who


def note_ids(request: Request, ids: list[str]) -> None:
    """Record the ids a request touched, for its audit record."""
    audit = request.scope.get("fhir.audit")
    if audit is not None:
        audit["ids"].extend(ids)


def facade(request: Request) -> Facade:
    return request.app.state.facade  # type: ignore[no-any-return]


def error_response(request: Request, exc: BaseException) -> Response:
    """Any exception as its OperationOutcome answer (see :func:`outcome_of`)."""
    error = outcome_of(exc, where=where_of(request.method, path_of(request)))
    return render(request, error.body(), error.status, error.headers)


def path_of(request: Request) -> str:
    """The request's path, as ``request.url.path`` has it but without building the URL:
    that decodes the query too, and raises on one that is not UTF-8."""
    return f"{request.scope.get('root_path', '')}{request.scope.get('path', '')}"


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
    settings: Settings = request.app.state.settings
    token = None
    if request.app.state.tokens is not None:
        token = base_url(request).removesuffix("/fhir") + "/auth/token"
    base = base_url(request)
    topics = [topic_url(base, name) for name in TOPICS]
    statement = capability_statement(
        facade(request).declared, base, settings.max_count, token, topics
    )
    return render(request, statement)


@router.get(
    "/{resource_type}",
    summary="Search (GET)",
    description="Search parameters as the CapabilityStatement lists them; paging by the "
    "Bundle's next/previous links (signed _cursor).",
    responses={200: fhir_json_response("Bundle of type searchset")},
    openapi_extra={"parameters": [TYPE_PARAM]},
)
async def search_get(request: Request) -> Response:
    return await _search(request, _query_items(request))


@router.post(
    "/{resource_type}/_search",
    summary="Search (POST, form body)",
    responses={
        200: fhir_json_response("Bundle of type searchset"),
        415: fhir_json_response("OperationOutcome"),
    },
    openapi_extra={
        "parameters": [TYPE_PARAM],
        "requestBody": FORM_BODY,
    },
)
async def search_post(request: Request) -> Response:
    return await _search(request, await search_items(request))


@router.get(
    "/{resource_type}/{fhir_id}",
    summary="Read",
    responses={200: fhir_json_response("the resource (ETag: its version; Last-Modified)")},
    openapi_extra={"parameters": [TYPE_PARAM, ID_PARAM]},
)
async def read(request: Request) -> Response:
    negotiate(request)
    params = request.path_params
    resource = await facade(request).read(
        params["resource_type"], params["fhir_id"], caller(request)
    )
    note_ids(request, [resource["id"]])
    headers = version_headers(resource)  # of the whole resource, whatever is shown of it
    elements = _query_value(request, "_elements")
    if elements is not None:
        kept = _read_elements(resource["resourceType"], elements, request)
        if kept:
            resource = subset(resource["resourceType"], resource, kept)
    return render(request, resource, headers=headers)


def _read_elements(resource_type: str, raw: str, request: Request) -> tuple[str, ...]:
    """The element names of a read's ``_elements`` the type has; another name is left out,
    or a 400 under ``Prefer: handling=strict``."""
    known = element_names(resource_type)
    names = tuple(dict.fromkeys(n for n in raw.split(",") if n))
    unknown = [n for n in names if n not in known]
    if unknown and prefers_strict(request.headers.get("prefer")):
        raise FhirError.one(
            400,
            "not-supported",
            f"_elements: {resource_type} has no element {unknown[0][:40]}",
            "_elements",
        )
    return tuple(n for n in names if n in known)


def version_headers(resource: dict[str, Any]) -> dict[str, str]:
    """``ETag`` (weak, the resource's ``meta.versionId``) and ``Last-Modified`` (from
    ``meta.lastUpdated``, where there is one)."""
    headers = {"ETag": etag_of(resource)}
    updated = (resource.get("meta") or {}).get("lastUpdated")
    if isinstance(updated, str):
        try:
            moment = datetime.fromisoformat(updated.replace("Z", "+00:00"))
        except ValueError:
            return headers
        if moment.tzinfo is not None:
            headers["Last-Modified"] = format_datetime(moment.astimezone(UTC), usegmt=True)
    return headers


def _query_value(request: Request, name: str) -> str | None:
    """One query parameter's value, its last where it is given more than once; a query
    that never names it (even percent-encoded) is not parsed."""
    if name.lstrip("_").encode() not in request.scope.get("query_string", b""):
        return None
    return request.query_params.get(name)


def _query_items(request: Request) -> list[tuple[str, str]]:
    return parse_form(request.scope.get("query_string", b""), "the query")


async def search_items(request: Request) -> list[tuple[str, str]]:
    """A search's parameters: the query's, and for ``POST .../_search`` its form body's
    after them (415 for a body of another kind), as R4 has both ask the same."""
    items = _query_items(request)
    if request.method != "POST":
        return items
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FhirError.one(
            415, "not-supported", "POST _search takes application/x-www-form-urlencoded"
        )
    form = parse_form(await read_body(request, MAX_FORM, "the form body"), "the form body")
    # A form's _format and _pretty say how to answer, as the query's would (the last
    # given, as there; the query's own, where it has them, come first).
    for name, value in form:
        if name in ("_format", "_pretty") and _query_value(request, name) is None:
            request.scope[f"fhir.{name[1:]}"] = value
            request.scope.pop("fhir.media", None)
    return items + form


def parse_form(raw: bytes, what: str) -> list[tuple[str, str]]:
    """``application/x-www-form-urlencoded`` text (a query or a form body) as its items.

    400 for what is not such text: bytes or percent-escapes that are not UTF-8, or a
    ``%`` that escapes nothing. Read leniently, they would become other characters (or
    stay escapes), and the search would quietly be for something else."""
    try:
        text = raw.decode("utf-8")
        if _BAD_ESCAPE.search(text):
            raise ValueError
        return parse_qsl(text, keep_blank_values=True, errors="strict")
    except ValueError:  # UnicodeDecodeError is one
        raise FhirError.one(
            400, "invalid", f"{what} is not UTF-8 text in percent-encoding"
        ) from None


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request's body, read as it arrives and refused (413) as soon as it passes
    ``limit`` bytes, or at once when its ``Content-Length`` says it will: a large body is
    never held whole."""
    declared = request.headers.get("content-length", "")
    # ASCII digits only (``isdigit`` alone takes "²"), and not converted when there are
    # more of them than any limit has.
    digits = declared.isascii() and declared.isdigit()
    if digits and (len(declared) > 18 or int(declared) > limit):
        raise _too_large(what, limit)
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise _too_large(what, limit)
        body += chunk
    return bytes(body)


def _too_large(what: str, limit: int) -> FhirError:
    return FhirError.one(413, "too-costly", f"{what} is over {limit} bytes")


async def _search(request: Request, items: list[tuple[str, str]]) -> Response:
    negotiate(request)
    strict = prefers_strict(request.headers.get("prefer"))
    resource_type = request.path_params["resource_type"]
    result = await facade(request).search(resource_type, items, caller(request), strict=strict)
    note_ids(request, [r["id"] for r in result.matches] + [r["id"] for r in result.includes])
    return render(request, bundle_of(result, base_url(request)))


def bundle_of(result: SearchResult, base: str) -> dict[str, Any]:
    """A page of a search as a searchset Bundle, with its paging links."""
    here = f"{base}/{result.resource_type}?"
    links = {"self": here + result.self_query}
    if result.next_cursor is not None:
        links["next"] = here + urlencode({"_cursor": result.next_cursor})
    if result.previous_cursor is not None:
        links["previous"] = here + urlencode({"_cursor": result.previous_cursor})
    return searchset(
        base,
        matches=result.matches,
        includes=result.includes,
        issues=result.issues,
        total=result.total,
        links=links,
    )
