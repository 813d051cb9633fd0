"""The Group routes: one Group per source the caller may see, searched and read.

A Group's id is its source's name; it has no member list (``Patient?_source=`` and
``Group/{id}/$export`` give its patients). The paths are literal (``/fhir/Group...``), so
the route table (:mod:`adapter.api.routes`) gives them precedence over the generic
``/fhir/{resource_type}`` routes. Scopes (``system/Group.rs``), content negotiation and
errors are as for every FHIR route.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from adapter.api.fhir import (
    FORM_BODY,
    base_url,
    bundle_of,
    caller,
    facade,
    fhir_json_response,
    negotiate,
    render,
    search_items,
)
from adapter.fhir.groups import SEARCH_PARAMS
from adapter.fhir.params import prefers_strict

__all__ = ["router"]

_ID = {
    "name": "group_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9\\-]{1,32}$"},
    "description": "the Group's id: a source's name",
}
_SEARCH = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": documentation,
    }
    for name, (_, _, documentation) in sorted(SEARCH_PARAMS.items())
]

router = APIRouter(
    prefix="/fhir/Group",
    default_response_class=Response,
    responses={400: fhir_json_response("OperationOutcome: a bad parameter, named in it")},
)


@router.post(
    "/_search",
    summary="Group search (POST, form body)",
    responses={
        200: fhir_json_response("Bundle of type searchset"),
        415: fhir_json_response("OperationOutcome"),
    },
    openapi_extra={"requestBody": FORM_BODY},
)
async def search_post(request: Request) -> Response:
    return await search(request)


@router.get(
    "",
    summary="Group search: one Group per source the caller may see",
    responses={200: fhir_json_response("Bundle of type searchset")},
    openapi_extra={"parameters": _SEARCH},
)
async def search(request: Request) -> Response:
    items = await search_items(request)
    negotiate(request)  # after a form, whose _format counts as the query's would
    strict = prefers_strict(request.headers.get("prefer"))
    result = await facade(request).groups(caller(request), items, strict=strict)
    return render(request, bundle_of(result, base_url(request)))


@router.get(
    "/{group_id}",
    summary="Group read: the patients of one source",
    responses={
        200: fhir_json_response("the Group"),
        404: fhir_json_response("OperationOutcome: no source the caller may see has this name"),
    },
    openapi_extra={"parameters": [_ID]},
)
async def read(request: Request) -> Response:
    negotiate(request)
    group = await facade(request).group(request.path_params["group_id"], caller(request))
    return render(request, group)
