"""The Subscription routes: a partner asks to be told (rest-hook) when the results of an
``Appointment`` or ``Patient`` search change.

``POST /fhir/Subscription`` checks the Subscription (:mod:`adapter.subscriptions.model`)
and keeps it as ``requested``; the poller makes it ``active`` once the sources it hears
from have been swept. Search (``_id``, ``status``, ``url``: the channel's endpoint,
``criteria``; another parameter is ignored, or a 400 under ``Prefer: handling=strict``),
read, update, delete, ``$status`` and ``$events`` act on the caller's own Subscriptions only:
another client's is a 404. A read never shows the channel's header values. Scopes:
``system/Subscription.cruds`` (``c`` create, ``r`` read, ``u`` update, ``s`` search,
``d`` delete). An update is checked as a create is and sets the Subscription back to
``requested``: one in ``error`` resumes from where it failed.
``$events`` answers from the Subscription's event log (its last events, delivered or
not, kept in ``error`` too) only what the caller may see now.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from adapter.api.fhir import (
    FORM_BODY,
    base_url,
    caller,
    facade,
    fhir_json_response,
    negotiate,
    parse_form,
    read_body,
    render,
    search_items,
)
from adapter.fhir import jsonbody
from adapter.fhir.bundle import searchset
from adapter.fhir.outcome import FhirError
from adapter.fhir.params import prefers_strict
from adapter.subscriptions import (
    CONTENTS,
    MASK,
    Event,
    SubscriptionPoller,
    chosen_topic,
    events_bundle,
    for_reading,
    is_topic_based,
    status_bundle,
    validate,
)

__all__ = ["router"]

MAX_BODY = 64 * 1024
_SEARCH_PARAMS = {
    "_id": "the Subscription's id",
    "status": "the Subscription's status (requested, active, error, off)",
    "url": "the channel's endpoint, exactly",
    "criteria": "the criteria, exactly",
}
_EVENTS_PARAMS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": text,
    }
    for name, text in (
        ("eventsSinceNumber", "the first event number wanted (default 1)"),
        ("eventsUntilNumber", "the last event number wanted (default the last kept)"),
        ("content", "empty, id-only or full-resource (default the Subscription's)"),
    )
]
_ID = {
    "name": "subscription_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"},
    "description": "the Subscription's id",
}

router = APIRouter(
    prefix="/fhir/Subscription",
    default_response_class=Response,
    responses={400: fhir_json_response("OperationOutcome: a bad request, named in it")},
)


def _poller(request: Request) -> SubscriptionPoller:
    poller: SubscriptionPoller = request.app.state.subscriptions
    return poller


DEFAULT_MAX_SUBSCRIPTIONS = 20  # without clients (open access)


def _not_found(sub_id: str) -> FhirError:
    return FhirError.one(404, "not-found", f"Subscription/{sub_id} is not known")


async def _own(request: Request) -> dict[str, Any]:
    sub_id = request.path_params["subscription_id"]
    record = await _poller(request).store.get(sub_id) if _valid_id(sub_id) else None
    if record is None or record.get("owner") != caller(request).name:
        raise _not_found(sub_id)
    return record


def _valid_id(sub_id: str) -> bool:
    return 0 < len(sub_id) <= 64 and all(c.isalnum() or c in "-." for c in sub_id)


@router.post(
    "",
    status_code=201,
    summary="Subscription create: a rest-hook notified of a search's changes",
    responses={
        201: fhir_json_response("the Subscription, status requested"),
        422: fhir_json_response("OperationOutcome: what may not be subscribed, named in it"),
    },
)
async def create(request: Request) -> Response:
    negotiate(request)
    raw = await read_body(request, MAX_BODY, "the body")
    try:
        body = jsonbody.loads(raw)
    except orjson.JSONDecodeError:
        raise FhirError.one(400, "invalid", "the body is not JSON") from None
    except jsonbody.BodyRefused as exc:
        raise FhirError.one(400, "invalid", str(exc)) from None
    poller = _poller(request)
    who = caller(request)
    base = base_url(request)
    resource = await validate(body, facade(request), poller.allowed, who, base)
    client = request.scope.get("fhir.client")
    most = client.max_subscriptions if client is not None else DEFAULT_MAX_SUBSCRIPTIONS
    held = sum(1 for r in await poller.store.all() if r.get("owner") == who.name)
    if held >= most:
        raise FhirError.one(
            422,
            "business-rule",
            f"this client holds {held} Subscriptions, as many as it may "
            f"([clients.NAME] max_subscriptions = {most}): delete one first",
        )
    resource["id"] = secrets.token_hex(12)
    record: dict[str, Any] = {
        "owner": who.name,
        "resource": resource,
        "base": base_url(request),
        # What the token could read: each delivery is held to it (and to the client's
        # scopes then).
        "types": None if who.types is None else sorted(who.types),
    }
    if is_topic_based(resource):
        record["topic"] = chosen_topic(resource, base)
    await poller.store.create(record)
    poller.nudge()  # its first round: active as soon as its feeds are swept
    location = f"{base_url(request)}/Subscription/{resource['id']}"
    return render(request, for_reading(resource), 201, {"Location": location})


@router.post(
    "/_search",
    summary="Subscription search (POST, form body)",
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
    summary="Subscription search: the caller's own Subscriptions",
    responses={200: fhir_json_response("Bundle of type searchset")},
    openapi_extra={
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": text,
            }
            for name, text in _SEARCH_PARAMS.items()
        ]
    },
)
async def search(request: Request) -> Response:
    items = await search_items(request)
    negotiate(request)  # after a form, whose _format counts as the query's would
    strict = prefers_strict(request.headers.get("prefer"))
    wanted: dict[str, set[str]] = {}
    used: list[tuple[str, str]] = []
    for name, value in items:
        if name in _SEARCH_PARAMS:  # _id and status: any of a comma list
            listed = value.split(",") if name in ("_id", "status") else [value]
            wanted.setdefault(name, set()).update(listed)
            used.append((name, value))
        elif strict and name not in ("_format", "_pretty"):
            raise FhirError.one(
                400, "not-supported", f"unknown search parameter {name!r}", "Subscription"
            )
    who = caller(request).name
    found = []
    for record in await _poller(request).store.all():
        resource = record["resource"]
        if record.get("owner") != who:
            continue
        values = {
            "_id": resource.get("id"),
            "status": resource.get("status"),
            "url": (resource.get("channel") or {}).get("endpoint"),
            "criteria": resource.get("criteria"),
        }
        if all(values[name] in allowed for name, allowed in wanted.items()):
            found.append(for_reading(resource))
    base = base_url(request)
    query = urlencode(used)
    here = f"{base}/Subscription" + (f"?{query}" if query else "")
    bundle = searchset(base, matches=found, total=len(found), links={"self": here})
    return render(request, bundle)


@router.get(
    "/{subscription_id}",
    summary="Subscription read: one of the caller's own (header values masked)",
    responses={
        200: fhir_json_response("the Subscription"),
        404: fhir_json_response("OperationOutcome: no Subscription of the caller's has it"),
    },
    openapi_extra={"parameters": [_ID]},
)
async def read(request: Request) -> Response:
    negotiate(request)
    record = await _own(request)
    return render(request, for_reading(record["resource"]))


@router.delete(
    "/{subscription_id}",
    status_code=204,
    summary="Subscription delete: no more notifications",
    responses={
        204: {"description": "deleted"},
        404: fhir_json_response("OperationOutcome: no Subscription of the caller's has it"),
    },
    openapi_extra={"parameters": [_ID]},
)
async def delete(request: Request) -> Response:
    record = await _own(request)
    await _poller(request).store.delete(record["resource"]["id"])
    return Response(status_code=204)


@router.get(
    "/{subscription_id}/$status",
    summary="Subscription $status: its status and, topic-based, the events told",
    responses={
        200: fhir_json_response("Bundle (searchset) of one subscription-status Parameters"),
        404: fhir_json_response("OperationOutcome: no Subscription of the caller's has it"),
    },
    openapi_extra={"parameters": [_ID]},
)
async def status(request: Request) -> Response:
    negotiate(request)
    record = await _own(request)
    base = _poller(request).base_url or record.get("base") or base_url(request)
    told = await _poller(request).store.counted(record["resource"]["id"])
    return render(request, status_bundle(record, str(base), told))


@router.get(
    "/{subscription_id}/$events",
    summary="Subscription $events: a topic-based Subscription's events again, by number",
    responses={
        200: fhir_json_response("Bundle (history) of type query-event"),
        404: fhir_json_response("OperationOutcome: no Subscription of the caller's has it"),
    },
    openapi_extra={"parameters": [_ID, *_EVENTS_PARAMS]},
)
async def events(request: Request) -> Response:
    negotiate(request)
    record = await _own(request)
    chosen = record.get("topic")
    if not chosen:
        raise FhirError.one(
            400, "not-supported", "$events is for topic-based Subscriptions", "Subscription"
        )
    asked = dict(parse_form(request.scope.get("query_string", b""), "the query"))
    since = _number(asked, "eventsSinceNumber") or 1
    until = _number(asked, "eventsUntilNumber")
    content = asked.get("content", chosen["content"])
    if content not in CONTENTS:
        raise FhirError.one(400, "invalid", f"content is one of {', '.join(CONTENTS)}", "content")
    poller = _poller(request)
    sub_id = record["resource"]["id"]
    who = caller(request)
    found = [
        Event(int(e["number"]), e["resource"])
        for e in await poller.store.events(sub_id, since, until)
        if who.may_see(e["resource"])  # what the caller may see now
    ]
    base = str(poller.base_url or record.get("base") or base_url(request))
    told = await poller.store.counted(sub_id)
    return render(request, events_bundle(record, base, told, found, content))


def _number(asked: dict[str, str], name: str) -> int | None:
    if name not in asked:
        return None
    value = asked[name]
    if not value.isdigit() or not 0 < int(value) < 2**63:
        raise FhirError.one(400, "invalid", f"{name} is a whole number from 1", name)
    return int(value)


@router.put(
    "/{subscription_id}",
    summary="Subscription update: changed, and set back to requested (resumes one in error)",
    responses={
        200: fhir_json_response("the Subscription, status requested"),
        404: fhir_json_response("OperationOutcome: no Subscription of the caller's has it"),
        409: fhir_json_response("OperationOutcome: a delivery to it is under way; try again"),
        422: fhir_json_response("OperationOutcome: what may not be subscribed, named in it"),
    },
    openapi_extra={"parameters": [_ID]},
)
async def update(request: Request) -> Response:
    negotiate(request)
    record = await _own(request)
    sub_id = str(record["resource"]["id"])
    raw = await read_body(request, MAX_BODY, "the body")
    try:
        body = jsonbody.loads(raw)
    except orjson.JSONDecodeError:
        raise FhirError.one(400, "invalid", "the body is not JSON") from None
    except jsonbody.BodyRefused as exc:
        raise FhirError.one(400, "invalid", str(exc)) from None
    if not isinstance(body, dict) or body.get("id") != sub_id:
        raise FhirError.one(400, "invalid", f"the body must be Subscription/{sub_id}", "id")
    poller = _poller(request)
    who = caller(request)
    base = base_url(request)
    _keep_masked_headers(body, record["resource"])
    resource = await validate(body, facade(request), poller.allowed, who, base)
    resource["id"] = sub_id
    lease = f"subscription.{sub_id}"
    if not await poller.store.lease(lease, 120.0):
        raise FhirError.one(409, "conflict", "a delivery to this Subscription is under way")
    try:  # its queue, its event log and its count stay: delivery resumes from there
        record.update(
            resource=resource,
            base=base,
            types=None if who.types is None else sorted(who.types),
            topic=chosen_topic(resource, base) if is_topic_based(resource) else None,
            failures=0,
            next_at=0,
        )
        if not await poller.store.update(record):
            raise _not_found(sub_id)
    finally:
        await poller.store.release(lease)
    poller.nudge()
    return render(request, for_reading(resource))


def _keep_masked_headers(body: dict[str, Any], kept: dict[str, Any]) -> None:
    """A header line sent back as a read shows it (``Name: ***``) keeps its value."""
    channel = body.get("channel")
    if not isinstance(channel, dict) or not isinstance(channel.get("header"), list):
        return
    held = {
        str(line).partition(":")[0].strip().lower(): str(line)
        for line in (kept.get("channel") or {}).get("header") or []
    }
    channel["header"] = [
        held.get(line.partition(":")[0].strip().lower(), line)
        if isinstance(line, str) and line.partition(":")[2].strip() == MASK
        else line
        for line in channel["header"]
    ]
