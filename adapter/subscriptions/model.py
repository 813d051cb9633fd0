"""What a Subscription may ask for, checked before it is kept.

- The resource must be a valid R4 Subscription (the R4B model of ``fhir.resources``).
- ``criteria``: a topic's canonical URL (a topic-based Subscription, :func:`chosen_topic`),
  or an ``Appointment?...`` or ``Patient?...`` search the facade accepts in
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
- ``channel.header``: at most :data:`MAX_HEADERS` lines of visible ASCII, each
  ``Name: value`` with a token for a name, at most :data:`MAX_HEADER` characters, and
  none of the headers that frame the request (``Host``, ``Content-Length``...). Their
  values are the subscriber's secrets: kept for delivery, never logged, and masked in
  what a read shows (:func:`for_reading`).
- ``end``: an R4 instant, strictly (a string with a date, a time and a zone; not a leap
  second; within years 1-9999 in UTC).
- A topic-based Subscription (the R4 backport IG's ``backport-subscription``): its
  ``backport-filter-criteria`` extensions on ``_criteria`` are searches of the topic's
  type using only the filters the topic takes (each value a comma list, no modifier);
  ``_source`` must name sources the caller sees. ``channel.payload`` is
  ``application/fhir+json`` with a ``backport-payload-content`` extension (``empty``,
  ``id-only``, ``full-resource``); ``backport-heartbeat-period`` (seconds, at least
  :data:`MIN_HEARTBEAT`), ``backport-timeout`` (1 to :data:`MAX_TIMEOUT` seconds) and
  ``backport-max-count`` (events in one notification, at most :data:`MAX_COUNT`) are
  taken on ``channel``.
- The endpoint's address is judged again at each delivery, and the notification goes to
  the very address judged (:func:`check_endpoint` returns it): a name that resolves
  elsewhere between the check and the connection cannot redirect it.
"""

from __future__ import annotations

import asyncio
import copy
import fnmatch
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pydantic
from fhir.resources.R4B.subscription import Subscription

from adapter.facade import Caller, Facade
from adapter.fhir.dates import parse_instant
from adapter.fhir.match import matches
from adapter.fhir.outcome import FhirError
from adapter.fhir.search import SearchRequest, UnsupportedParameter
from adapter.fhir.validation import fhir_problems
from adapter.subscriptions.topics import BACKPORT, CONTENTS, TOPICS, topic_named

__all__ = [
    "CRITERIA_TYPES",
    "MASK",
    "MAX_COUNT",
    "MAX_HEADER",
    "MAX_HEADERS",
    "MAX_TIMEOUT",
    "MIN_HEARTBEAT",
    "PAYLOAD",
    "Target",
    "check_endpoint",
    "chosen_topic",
    "criteria_of",
    "for_reading",
    "is_topic_based",
    "parsed_criteria",
    "validate",
]

CRITERIA_TYPES = ("Appointment", "Patient")
PAYLOAD = "application/fhir+json"
MASK = "***"
MAX_HEADERS = 10
MAX_HEADER = 1024  # characters of one header line
MAX_COUNT = 100  # events in one notification
MAX_TIMEOUT = 10  # seconds a delivery may take
MIN_HEARTBEAT = 10  # seconds between heartbeats, at least
# A header line: a token (RFC 9110), a colon, and a value of visible ASCII and spaces.
_HEADER = re.compile(
    r"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[ \t]*[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?[ \t]*"
)
# What frames the request, or is the service's own to say.
_RESERVED_HEADERS = frozenset(
    {
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "expect",
        "host",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def _invalid(text: str, where: str) -> FhirError:
    return FhirError.one(422, "invalid", text, where)


def criteria_of(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The resource type and search parameters of a criteria (not otherwise checked);
    ``UnicodeDecodeError`` for a value whose escapes are not UTF-8 (``%ff``)."""
    resource_type, _, query = text.partition("?")
    return resource_type, parse_qsl(query, keep_blank_values=True, errors="strict")


def parsed_criteria(facade: Facade, text: str) -> tuple[str, SearchRequest]:
    """A criteria's resource type and search, as the facade parses it (strict): a
    :class:`FhirError` for one it does not accept."""
    resource_type, items = criteria_of(text)
    return resource_type, facade.parse(resource_type, items, strict=True).request


def is_topic_based(resource: dict[str, Any]) -> bool:
    return str(resource.get("criteria", "")).startswith(("http://", "https://"))


def _extension(holder: Any, name: str) -> list[dict[str, Any]]:
    found = (holder or {}).get("extension") if isinstance(holder, dict) else None
    return [e for e in found or () if isinstance(e, dict) and e.get("url") == BACKPORT + name]


def _whole(channel: dict[str, Any], name: str, low: int, high: int | None) -> int | None:
    where = f"Subscription.channel.extension({name})"
    found = _extension(channel, name)
    if not found:
        return None
    if len(found) > 1:
        raise _invalid(f"{name} is given more than once", where)
    value = next((v for k, v in found[0].items() if k.startswith("value")), None)
    if type(value) is not int or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise _invalid(f"{name} must be a whole number {bound}", where)
    return value


def chosen_topic(resource: dict[str, Any], base: str) -> dict[str, Any]:
    """What a topic-based Subscription asks for: ``{"name", "filters": [[name, value]],
    "content", "heartbeat", "timeout", "max_count"}``; a 422 naming what is wrong."""
    topic = topic_named(base, str(resource.get("criteria", "")))
    if topic is None:
        raise _invalid(
            f"the criteria is no topic of this server's (see {base}/metadata)",
            "Subscription.criteria",
        )
    filters: list[list[str]] = []
    where = "Subscription._criteria.extension(backport-filter-criteria)"
    for extension in _extension(resource.get("_criteria"), "backport-filter-criteria"):
        text = extension.get("valueString")
        if not isinstance(text, str):
            raise _invalid("a filter is a valueString", where)
        try:
            resource_type, items = criteria_of(text)
        except UnicodeDecodeError:
            raise _invalid("a filter holds an escape (%..) that is not UTF-8", where) from None
        if resource_type != topic.resource_type:
            raise _invalid(
                f"the topic {topic.name} is about {topic.resource_type}, not {resource_type}",
                where,
            )
        for name, value in items:
            if name not in topic.filters:
                raise _invalid(
                    f"the topic {topic.name} takes no filter {name} (it takes "
                    f"{', '.join(topic.filters)})",
                    where,
                )
            if not value or any(not v for v in value.split(",")):
                raise _invalid(f"the filter {name} has no value", where)
            filters.append([name, value])
    channel = resource.get("channel") or {}
    contents = _extension(channel.get("_payload"), "backport-payload-content")
    content = contents[0].get("valueCode") if len(contents) == 1 else None
    if channel.get("payload") != PAYLOAD or content not in CONTENTS:
        raise _invalid(
            f"the payload must be {PAYLOAD} with one backport-payload-content extension "
            f"({', '.join(CONTENTS)})",
            "Subscription.channel.payload",
        )
    return {
        "name": topic.name,
        "filters": filters,
        "content": content,
        "heartbeat": _whole(channel, "backport-heartbeat-period", MIN_HEARTBEAT, None),
        "timeout": _whole(channel, "backport-timeout", 1, MAX_TIMEOUT),
        "max_count": _whole(channel, "backport-max-count", 1, MAX_COUNT),
    }


def _check_topic(facade: Facade, chosen: dict[str, Any], caller: Caller) -> None:
    topic_type = TOPICS[chosen["name"]].resource_type
    if topic_type not in facade.declared.types:
        raise _invalid(f"no source serves {topic_type}", "Subscription.criteria")
    if not caller.may_read(topic_type):
        raise FhirError.one(
            403,
            "forbidden",
            f"the token's scopes do not allow read of {topic_type}: its changes cannot "
            "be subscribed to",
            "Subscription.criteria",
        )
    named = {v for name, value in chosen["filters"] if name == "_source" for v in value.split(",")}
    unseen = sorted(s for s in named if s not in facade.sources or not caller.sees(s))
    if unseen:
        raise _invalid(
            f"the filter's _source names no source: {', '.join(unseen)}",
            "Subscription._criteria.extension(backport-filter-criteria)",
        )


def _check_criteria(facade: Facade, text: str, caller: Caller) -> None:
    where = "Subscription.criteria"
    try:
        resource_type, items = criteria_of(text)
    except UnicodeDecodeError:
        raise _invalid("the criteria holds an escape (%..) that is not UTF-8", where) from None
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
    named = {v for name, value in items if name == "_source" for v in value.split(",") if v}
    unseen = sorted(s for s in named if s not in facade.sources or not caller.sees(s))
    if unseen:
        raise _invalid(f"the criteria's _source names no source: {', '.join(unseen)}", where)
    below = [value for name, value in items if name == "_source:below"]
    if below and not any(caller.sees(s) for s in request.sources or ()):
        raise _invalid(f"the criteria's _source:below={below[0]} holds no source", where)
    try:  # a change is matched in memory: each parameter must be one that can be
        for param in request.params:
            matches({"resourceType": resource_type}, [param], UTC)
    except UnsupportedParameter as exc:
        raise _invalid(
            f"the criteria's {exc.parameter} cannot be matched against a change", where
        ) from None


# Where an IPv6 address carries an IPv4 one: NAT64 (RFC 6052, RFC 8215).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _global(address: str) -> bool:
    """Whether ``address`` is one on the public internet (``is_global``), and so is any
    IPv4 address it carries (mapped, 6to4, Teredo, NAT64): never loopback, private,
    shared (100.64/10, cloud metadata), link-local, site-local or reserved."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    inner: list[ipaddress.IPv4Address] = []
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            inner.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            inner.append(ip.sixtofour)
        if ip.teredo is not None:
            inner.extend(ip.teredo)
        if any(ip in net for net in _NAT64):
            inner.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
    return (
        ip.is_global
        and not ip.is_multicast
        and not site_local
        and all(a.is_global and not a.is_multicast for a in inner)
    )


@dataclass(frozen=True)
class Target:
    """Where a notification goes: the ``url`` to POST to (its host the address that was
    judged, when one was), the ``host`` header and TLS name to give (None: the URL's)."""

    url: str
    host: str | None = None
    server_name: str | None = None


async def check_endpoint(endpoint: str, allowed: Sequence[str]) -> Target:
    """Where ``endpoint`` may be called, or a 422 saying why not (see the module's
    description)."""
    where = "Subscription.channel.endpoint"
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        raise _invalid("the endpoint is not a URL", where) from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        raise _invalid("the endpoint must be an http(s) URL without credentials", where)
    if port == 0:
        raise _invalid("the endpoint's port must not be 0", where)
    port = port or (443 if parts.scheme == "https" else 80)
    authority = f"[{host}]" if ":" in host else host
    if any(fnmatch.fnmatchcase(f"{parts.scheme}://{authority}:{port}", g) for g in allowed):
        return Target(endpoint)
    if parts.scheme != "https":
        raise _invalid("the endpoint must be https", where)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise _invalid("the endpoint's host does not resolve", where) from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses or not all(_global(a) for a in addresses):
        raise _invalid(
            "the endpoint resolves to an address that is not public (private, loopback, "
            "link-local, shared or reserved)",
            where,
        )
    pinned = addresses[0].split("%", 1)[0]
    literal = f"[{pinned}]" if ":" in pinned else pinned
    url = parts._replace(netloc=f"{literal}:{port}").geturl()
    shown = authority if port == 443 else f"{authority}:{port}"
    return Target(url, shown, host)


async def validate(
    body: Any,
    facade: Facade,
    allowed: Sequence[str],
    caller: Caller = Caller(),
    base: str = "",
) -> dict[str, Any]:
    """The Subscription to keep (status ``requested``), or a 4xx naming what is wrong: a
    403 when ``caller`` may not read the criteria's type. ``base``: the service's, under
    which its topics' canonical URLs are."""
    if not isinstance(body, dict) or body.get("resourceType") != "Subscription":
        raise FhirError.one(400, "invalid", "the body must be a Subscription", "Subscription")
    resource = {k: v for k, v in body.items() if k not in ("id", "meta", "error")}
    resource["status"] = "requested"
    if "end" in resource:  # before the model, which takes more than R4's instant
        try:
            parse_instant(resource["end"])
        except ValueError as exc:
            raise _invalid(f"end {exc}", "Subscription.end") from None
    try:
        Subscription.model_validate(resource)
    except (TypeError, AttributeError):
        # A validator of the models failing on a value of another JSON type than it
        # expects (a url that is an object): the element, as the write check names it.
        problems = fhir_problems("Subscription", resource)
        where = problems[0].expression[0] if problems and problems[0].expression else ""
        raise _invalid(
            "not a valid Subscription: an element holds a value of the wrong JSON type",
            where or "Subscription",
        ) from None
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first.get("loc", ()) if not isinstance(p, int))
        where = "Subscription" + (f".{path}" if path and path != "__root__" else "")
        raise _invalid(f"not a valid Subscription: {first.get('msg', '')}", where) from None
    channel = resource.get("channel") or {}
    if channel.get("type") != "rest-hook":
        raise _invalid("only the rest-hook channel is served", "Subscription.channel.type")
    if is_topic_based(resource):
        _check_headers(channel.get("header") or [])
        _check_topic(facade, chosen_topic(resource, base), caller)
        await check_endpoint(str(channel.get("endpoint") or ""), allowed)
        return resource
    if channel.get("payload") not in (None, PAYLOAD):
        raise _invalid(
            f"the payload must be absent (ping only) or {PAYLOAD}", "Subscription.channel.payload"
        )
    _check_headers(channel.get("header") or [])
    _check_criteria(facade, str(resource.get("criteria", "")), caller)
    await check_endpoint(str(channel.get("endpoint") or ""), allowed)
    return resource


def _check_headers(headers: list[Any]) -> None:
    where = "Subscription.channel.header"
    if len(headers) > MAX_HEADERS:
        raise _invalid(f"at most {MAX_HEADERS} header lines are taken", where)
    for index, header in enumerate(headers):
        at = f"{where}[{index}]"
        if not isinstance(header, str) or len(header) > MAX_HEADER:
            raise _invalid(f"a header line is a string of at most {MAX_HEADER} characters", at)
        if not _HEADER.fullmatch(header):
            raise _invalid(
                'a header line is "Name: value" in visible ASCII (a token for a name)', at
            )
        name = header.partition(":")[0].lower()
        if name in _RESERVED_HEADERS or name.startswith("proxy-"):
            raise _invalid(f"the {name} header is the service's own to send", at)


def for_reading(resource: dict[str, Any]) -> dict[str, Any]:
    """The Subscription as a read shows it: each header's value masked."""
    shown = copy.deepcopy(resource)
    channel = shown.get("channel") or {}
    if channel.get("header"):
        channel["header"] = [f"{str(h).partition(':')[0]}: {MASK}" for h in channel["header"]]
    return shown
