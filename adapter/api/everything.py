"""``Patient/$everything``: a patient's record, or every patient's a page at a time.

A searchset Bundle: the Patient(s) as matches; their Appointments, and each resource these
reference (Practitioners, Locations, Devices, Organizations, ...), once each, as includes.
``_type`` restricts the types returned, and so do the token's scopes (read of a type);
``_since`` keeps only what changed after it (:mod:`adapter.journal`). The type-level form
pages by ``_count`` patients and signed cursors. The paths are literal, ahead of the
generic ``/fhir/{resource_type}/{fhir_id}`` routes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from adapter.api.fhir import (
    ID_PARAM,
    base_url,
    caller,
    facade,
    fhir_json_response,
    negotiate,
    note_ids,
    parse_form,
    render,
)
from adapter.facade import SearchResult
from adapter.fhir.bundle import searchset
from adapter.fhir.params import prefers_strict

__all__ = ["router"]


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema or {"type": "string"},
        "description": description,
    }


_SINCE = _query(
    "_since",
    "an instant with a time zone: only resources changed after it (meta.lastUpdated)",
    {"type": "string", "format": "date-time"},
)
_TYPE = _query("_type", "a comma list of the resource types to return")
_COUNT = _query("_count", "patients a page", {"type": "integer", "minimum": 1, "maximum": 999999})
_CURSOR = _query("_cursor", "a later page, from a next or previous link")
_OK: dict[int | str, dict[str, Any]] = {200: fhir_json_response("Bundle of type searchset")}

router = APIRouter(prefix="/fhir/Patient", default_response_class=Response)


@router.get(
    "/$everything",
    summary="Patient/$everything: every patient the caller may see, a page at a time",
    responses={
        **_OK,
        400: fhir_json_response("OperationOutcome: a bad parameter, or too costly a page"),
    },
    openapi_extra={"parameters": [_SINCE, _TYPE, _COUNT, _CURSOR]},
)
async def everyone(request: Request) -> Response:
    return await _everything(request, None)


@router.get(
    "/{fhir_id}/$everything",
    summary="Patient/$everything: one patient's record",
    responses={
        **_OK,
        400: fhir_json_response("OperationOutcome: a bad parameter"),
        404: fhir_json_response("OperationOutcome: no such patient"),
    },
    openapi_extra={"parameters": [ID_PARAM, _SINCE, _TYPE]},
)
async def of_one(request: Request) -> Response:
    return await _everything(request, request.path_params["fhir_id"])


async def _everything(request: Request, patient_id: str | None) -> Response:
    negotiate(request)
    items = parse_form(request.scope.get("query_string", b""), "the query")
    result = await facade(request).everything(
        patient_id,
        items,
        caller(request),
        strict=prefers_strict(request.headers.get("prefer")),
    )
    note_ids(request, [r["id"] for r in result.matches] + [r["id"] for r in result.includes])
    return render(request, _bundle(result, base_url(request), patient_id))


def _bundle(result: SearchResult, base: str, patient_id: str | None) -> dict[str, Any]:
    here = (
        f"{base}/Patient/{patient_id}/$everything" if patient_id else f"{base}/Patient/$everything"
    )
    query = f"?{result.self_query}" if result.self_query else ""
    links = {"self": here + query}
    carried = f"&{result.self_query}" if result.self_query else ""
    if result.next_cursor is not None:
        links["next"] = f"{here}?{urlencode({'_cursor': result.next_cursor})}{carried}"
    if result.previous_cursor is not None:
        links["previous"] = f"{here}?{urlencode({'_cursor': result.previous_cursor})}{carried}"
    return searchset(
        base,
        matches=result.matches,
        includes=result.includes,
        issues=result.issues,
        total=result.total,
        links=links,
    )
