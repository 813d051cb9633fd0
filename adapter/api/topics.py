"""The topics' canonical URLs, resolved: ``GET /fhir/SubscriptionTopic/{name}`` (the URL
a topic-based Subscription names as its ``criteria``, and the CapabilityStatement lists)
and ``GET /fhir/Basic/{name}`` answer the topic as R4 can hold it, a ``Basic`` carrying
the R5 SubscriptionTopic's elements (:func:`adapter.subscriptions.topics.topic_resource`).

Nothing here asks a source: the topics are the service's own data. A topic is read by
whoever may read Subscriptions (the guard checks ``SubscriptionTopic`` paths against the
Subscription scopes) and, as ``Basic``, by whoever may read Basic. An unknown name is a
404 OperationOutcome.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from adapter.api.fhir import (
    FORM_BODY,
    base_url,
    fhir_json_response,
    negotiate,
    render,
    search_items,
)
from adapter.fhir.outcome import FhirError
from adapter.subscriptions.topics import topic_resource

__all__ = ["router"]

_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"},
    "description": "the topic's name (appointment-booked, patient-created, ...)",
}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: fhir_json_response("Basic: the topic, its R5 elements as extensions"),
    404: fhir_json_response("OperationOutcome: no topic has this name"),
}

router = APIRouter(prefix="/fhir", default_response_class=Response)


def _topic(request: Request) -> Response:
    negotiate(request)
    name = request.path_params["name"]
    found = topic_resource(base_url(request), name)
    if found is None:
        raise FhirError.one(404, "not-found", "no topic of this server's has this name")
    return render(request, found)


@router.get(
    "/SubscriptionTopic/{name}",
    summary="A topic, at its canonical URL",
    responses=_ANSWERS,
    openapi_extra={"parameters": [_NAME]},
)
async def read_topic(request: Request) -> Response:
    return _topic(request)


@router.get(
    "/Basic/{name}",
    summary="Basic read: a topic",
    responses=_ANSWERS,
    openapi_extra={"parameters": [_NAME]},
)
async def read_basic(request: Request) -> Response:
    return _topic(request)


_NOT_SEARCHED: dict[int | str, dict[str, Any]] = {
    400: fhir_json_response("OperationOutcome: Basic is read by id here, never searched"),
}


async def _not_searched(request: Request) -> Response:
    await search_items(request)  # a form's _format counts, as for any search
    negotiate(request)
    raise FhirError.one(
        400,
        "not-supported",
        "Basic is not searched here: each topic is read by its name (Basic/{name})",
        "Basic",
    )


@router.get("/Basic", summary="Basic search: not supported", responses=_NOT_SEARCHED)
async def search_basic(request: Request) -> Response:
    return await _not_searched(request)


@router.post(
    "/Basic/_search",
    summary="Basic search (POST): not supported",
    responses=_NOT_SEARCHED,
    openapi_extra={"requestBody": FORM_BODY},
)
async def search_basic_post(request: Request) -> Response:
    return await _not_searched(request)
