"""What a Subscription may ask for, checked before it is kept.

- The resource must be a valid R4 Subscription (the R4B model of ``fhir.resources``).
- ``criteria``: an ``Appointment?...`` or ``Patient?...`` search the facade accepts in
  strict mode (``_source`` included), each of whose parameters can be matched against
  a changed resource in memory; a paging cursor is not a criteria, and what shapes a
  result (``_count``, ``_sort``, ``_elements``, ``_include``...) is taken and has no
  effect: a notification holds the changed resources themselves. ``_lastUpdated`` is
  refused: what is told has just changed.
- ``channel.type``: ``rest-hook``; ``channel.payload``: absent (ping only) or
  ``application/fhir+json``.
- ``channel.endpoint``: https, to a name that resolves to public addresses only (no
  private, loopback, link-local, reserved or multicast address), unless it matches a glob
  of ``[subscriptions] allowed_endpoints`` (over ``scheme://host:port``): the service
  must not become a way to reach what stands behind it.
- ``channel.header`` values are the subscriber's secrets: kept for delivery, never
  logged, and masked in what a read shows (:func:`for_reading`).
"""

from __future__ import annotations

import asyncio
import copy
import fnmatch
import ipaddress
import socket
from collections.abc import Sequence
from datetime import UTC
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pydantic
from fhir.resources.R4B.subscription import Subscription

from adapter.facade import Caller, Facade
from adapter.fhir.match import matches
from adapter.fhir.outcome import FhirError
from adapter.fhir.search import SearchRequest, UnsupportedParameter

__all__ = [
    "CRITERIA_TYPES",
    "PAYLOAD",
    "check_endpoint",
    "criteria_of",
    "for_reading",
    "parsed_criteria",
    "validate",
]

CRITERIA_TYPES = ("Appointment", "Patient")
PAYLOAD = "application/fhir+json"
MASK = "***"


def _invalid(text: str, where: str) -> FhirError:
    return FhirError.one(422, "invalid", text, where)


def criteria_of(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The resource type and search parameters of a criteria (not checked)."""
    resource_type, _, query = text.partition("?")
    return resource_type, parse_qsl(query, keep_blank_values=True)


def parsed_criteria(facade: Facade, text: str) -> tuple[str, SearchRequest]:
    """A criteria's resource type and search, as the facade parses it (strict): a
    :class:`FhirError` for one it does not accept."""
    resource_type, items = criteria_of(text)
    return resource_type, facade.parse(resource_type, items, strict=True).request


def _check_criteria(facade: Facade, text: str, caller: Caller) -> None:
    resource_type, items = criteria_of(text)
    where = "Subscription.criteria"
    if resource_type not in CRITERIA_TYPES or resource_type not in facade.declared.types:
        raise _invalid("the criteria must be an Appointment?... or Patient?... search", where)
    if any(name == "_cursor" for name, _ in items):
        raise _invalid("a paging cursor is not a criteria", where)
    if any(name.partition(":")[0] == "_lastUpdated" for name, _ in items):
        # every change told is one just made: a bound on when would match all or none
        raise _invalid("the criteria's _lastUpdated cannot be matched against a change", where)
    try:
        _, request = parsed_criteria(facade, text)
    except FhirError as exc:
        detail = "; ".join(issue.diagnostics for issue in exc.issues)
        raise _invalid(
            f"the criteria is not a search this server accepts: {detail}", where
        ) from None
    if not caller.may_read(resource_type):
        raise FhirError.one(
            403,
            "forbidden",
            f"the token's scopes do not allow read of {resource_type}: its changes cannot "
            "be subscribed to",
            where,
        )
    unseen = sorted(s for s in request.sources or () if not caller.sees(s))
    if unseen:
        raise _invalid(f"the criteria's _source names no source: {', '.join(unseen)}", where)
    try:  # a change is matched in memory: each parameter must be one that can be
        for param in request.params:
            matches({"resourceType": resource_type}, [param], UTC)
    except UnsupportedParameter as exc:
        raise _invalid(
            f"the criteria's {exc.parameter} cannot be matched against a change", where
        ) from None


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


async def check_endpoint(endpoint: str, allowed: Sequence[str]) -> None:
    """422 unless ``endpoint`` may be called (see the module's description)."""
    where = "Subscription.channel.endpoint"
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        raise _invalid("the endpoint is not a URL", where) from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        raise _invalid("the endpoint must be an http(s) URL without credentials", where)
    port = port or (443 if parts.scheme == "https" else 80)
    authority = f"[{host}]" if ":" in host else host
    if any(fnmatch.fnmatchcase(f"{parts.scheme}://{authority}:{port}", g) for g in allowed):
        return
    if parts.scheme != "https":
        raise _invalid("the endpoint must be https", where)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise _invalid("the endpoint's host does not resolve", where) from None
    if not infos or not all(_public(str(info[4][0])) for info in infos):
        raise _invalid("the endpoint resolves to a private, loopback or link-local address", where)


async def validate(
    body: Any, facade: Facade, allowed: Sequence[str], caller: Caller = Caller()
) -> dict[str, Any]:
    """The Subscription to keep (status ``requested``), or a 4xx naming what is wrong: a
    403 when ``caller`` may not read the criteria's type."""
    if not isinstance(body, dict) or body.get("resourceType") != "Subscription":
        raise FhirError.one(400, "invalid", "the body must be a Subscription", "Subscription")
    resource = {k: v for k, v in body.items() if k not in ("id", "meta", "error")}
    resource["status"] = "requested"
    try:
        Subscription.model_validate(resource)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first.get("loc", ()) if not isinstance(p, int))
        where = "Subscription" + (f".{path}" if path and path != "__root__" else "")
        raise _invalid(f"not a valid Subscription: {first.get('msg', '')}", where) from None
    channel = resource.get("channel") or {}
    if channel.get("type") != "rest-hook":
        raise _invalid("only the rest-hook channel is served", "Subscription.channel.type")
    if channel.get("payload") not in (None, PAYLOAD):
        raise _invalid(
            f"the payload must be absent (ping only) or {PAYLOAD}", "Subscription.channel.payload"
        )
    for header in channel.get("header") or []:
        name, colon, _ = str(header).partition(":")
        if not colon or not name.strip() or any(c in str(header) for c in "\r\n"):
            raise _invalid('each header must be "Name: value"', "Subscription.channel.header")
    _check_criteria(facade, str(resource.get("criteria", "")), caller)
    await check_endpoint(str(channel.get("endpoint") or ""), allowed)
    return resource


def for_reading(resource: dict[str, Any]) -> dict[str, Any]:
    """The Subscription as a read shows it: each header's value masked."""
    shown = copy.deepcopy(resource)
    channel = shown.get("channel") or {}
    if channel.get("header"):
        channel["header"] = [f"{str(h).partition(':')[0]}: {MASK}" for h in channel["header"]]
    return shown
