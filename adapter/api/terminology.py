"""The ConceptMap routes: the vendor code tables, searched, read and ``$translate``-d.

Nothing here asks a source: the maps are the service's own data
(:mod:`adapter.fhir.terminology`). The paths are literal (``/fhir/ConceptMap...``), so
the route table (:mod:`adapter.api.routes`) gives them precedence over the generic
``/fhir/{resource_type}`` routes; a method these paths do not take (a create, an update)
is a 405. Content negotiation, ``_format``, ``_pretty``, the token's scopes (read for read
and ``$translate``, search for search) and errors as OperationOutcomes are as for every
FHIR route.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from adapter.api.fhir import (
    FHIR_JSON,
    FORM_BODY,
    base_url,
    bundle_of,
    caller,
    facade,
    fhir_json_response,
    negotiate,
    parse_form,
    read_body,
    render,
    search_items,
)
from adapter.api.guard import MAX_BODY
from adapter.facade import SearchResult
from adapter.fhir.outcome import FhirError
from adapter.fhir.params import prefers_strict
from adapter.fhir.terminology import (
    SEARCH_PARAMS,
    concept_map,
    search_concept_maps,
    translate,
    translate_body,
    translate_query,
)

__all__ = ["router"]

_JSON_BODIES = {FHIR_JSON, "application/json"}
_STRING = {"type": "string"}
_ID = {
    "name": "fhir_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"},
    "description": "the ConceptMap's id (leyrgender, nyraappointmentstatus, ...)",
}
_SEARCH = [
    {
        "name": "_count",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 0, "maximum": 999999},
        "description": "matches per page; above [server] max_count it is capped, 0 gives "
        "the total alone",
    },
    *(
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": _STRING,
            "description": param.documentation,
        }
        for name, param in sorted(SEARCH_PARAMS.items())
    ),
]
_TRANSLATE = [
    {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
    for name, schema, text in (
        ("url", _STRING, "the ConceptMap to use, by its canonical URL"),
        ("code", _STRING, "the code to translate"),
        ("system", _STRING, "its code system (needed when several maps could take the code)"),
        ("version", _STRING, "the code system's version"),
        ("coding", _STRING, "instead of code and system: system|code"),
        ("source", _STRING, "the value set the code is from"),
        ("target", _STRING, "the value set to translate into"),
        ("targetsystem", _STRING, "the code system to translate into"),
        (
            "reverse",
            {"type": "string", "enum": ["true", "false"]},
            "true: from the maps' targets back to their sources (FHIR code -> vendor codes)",
        ),
    )
]
_PARAMETERS_BODY = {
    "required": True,
    "content": {
        media: {
            "schema": {
                "type": "object",
                "description": "a FHIR R4 Parameters resource: the inputs of $translate",
            }
        }
        for media in sorted(_JSON_BODIES)
    },
}
Responses = dict[int | str, dict[str, Any]]
_BAD: Responses = {
    400: fhir_json_response("OperationOutcome: a bad parameter, named in its expression")
}
_UNKNOWN: Responses = {404: fhir_json_response("OperationOutcome: no ConceptMap has this id")}
_MEDIA: Responses = {
    415: fhir_json_response("OperationOutcome: the body is not of the media type taken")
}

router = APIRouter(prefix="/fhir/ConceptMap", default_response_class=Response, responses=_BAD)


@router.get(
    "",
    summary="ConceptMap search (GET): the vendor code tables",
    responses={200: fhir_json_response("Bundle of type searchset")},
    openapi_extra={"parameters": _SEARCH},
)
async def search_get(request: Request) -> Response:
    return _search(request, _query(request))


@router.post(
    "/_search",
    summary="ConceptMap search (POST, form body)",
    responses={200: fhir_json_response("Bundle of type searchset"), **_MEDIA},
    openapi_extra={"requestBody": FORM_BODY},
)
async def search_post(request: Request) -> Response:
    items = await search_items(request)
    negotiate(request)  # after the form, whose _format counts as the query's would
    return _search(request, items)


@router.get(
    "/$translate",
    summary="$translate (GET): a code through the ConceptMaps that fit its system",
    responses={200: fhir_json_response("Parameters: result, message, match")},
    openapi_extra={"parameters": _TRANSLATE},
)
async def translate_get(request: Request) -> Response:
    return _translate_get(request, None)


@router.post(
    "/$translate",
    summary="$translate (POST, a Parameters body)",
    responses={200: fhir_json_response("Parameters: result, message, match"), **_MEDIA},
    openapi_extra={"requestBody": _PARAMETERS_BODY},
)
async def translate_post(request: Request) -> Response:
    return await _translate_post(request, None)


@router.get(
    "/{fhir_id}",
    summary="ConceptMap read",
    responses={200: fhir_json_response("the ConceptMap"), **_UNKNOWN},
    openapi_extra={"parameters": [_ID]},
)
async def read(request: Request) -> Response:
    negotiate(request)
    return render(request, concept_map(request.path_params["fhir_id"]))


@router.get(
    "/{fhir_id}/$translate",
    summary="$translate (GET) through one ConceptMap",
    responses={200: fhir_json_response("Parameters: result, message, match"), **_UNKNOWN},
    openapi_extra={"parameters": [_ID, *_TRANSLATE]},
)
async def translate_instance_get(request: Request) -> Response:
    return _translate_get(request, request.path_params["fhir_id"])


@router.post(
    "/{fhir_id}/$translate",
    summary="$translate (POST, a Parameters body) through one ConceptMap",
    responses={
        200: fhir_json_response("Parameters: result, message, match"),
        **_UNKNOWN,
        **_MEDIA,
    },
    openapi_extra={"parameters": [_ID], "requestBody": _PARAMETERS_BODY},
)
async def translate_instance_post(request: Request) -> Response:
    return await _translate_post(request, request.path_params["fhir_id"])


def _query(request: Request) -> list[tuple[str, str]]:
    return parse_form(request.scope.get("query_string", b""), "the query")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _strict(request: Request) -> bool:
    return prefers_strict(request.headers.get("prefer"))


def _search(request: Request, items: list[tuple[str, str]]) -> Response:
    negotiate(request)
    served = facade(request)
    page = search_concept_maps(
        items,
        strict=_strict(request),
        default_count=served.limits.default_count,
        max_count=served.limits.max_count,
        cursors=served.cursors,
        client=caller(request).name,
    )
    result = SearchResult(
        "ConceptMap",
        page.self_query,
        matches=page.matches,
        total=page.total,
        next_cursor=page.next_cursor,
        previous_cursor=page.previous_cursor,
    )
    return render(request, bundle_of(result, base_url(request)))


def _translate_get(request: Request, fhir_id: str | None) -> Response:
    negotiate(request)
    if fhir_id is not None:
        concept_map(fhir_id)  # an unknown map is a 404, whatever else is wrong
    asked = translate_query(_query(request), strict=_strict(request))
    return render(request, translate(asked, fhir_id))


async def _translate_post(request: Request, fhir_id: str | None) -> Response:
    negotiate(request)
    if fhir_id is not None:
        concept_map(fhir_id)
    if _media_type(request) not in _JSON_BODIES:
        raise FhirError.one(
            415,
            "not-supported",
            "POST $translate takes a Parameters resource as application/fhir+json",
        )
    raw = await read_body(request, MAX_BODY, "the Parameters body")
    asked = translate_body(raw, strict=_strict(request))
    answer: dict[str, Any] = translate(asked, fhir_id)
    return render(request, answer)
