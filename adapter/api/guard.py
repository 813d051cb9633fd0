"""Around every request: size limits, the bearer token and its scopes, the client's rate
limit, and for each ``/fhir`` request its timing, one console line and one audit record.

- URL over 8 KiB: 414; request headers over 16 KiB: 431 (bodies are limited per route).
- Every ``/fhir`` route but ``metadata`` needs ``Authorization: Bearer <token>``: 401 with
  ``WWW-Authenticate`` when it is missing, expired, altered or not ours; 403 when its
  scopes lack the interaction. The client is then ``scope["fhir.client"]``; the routes
  show it only its own sources.
- Each client has ``per_minute`` requests (fixed minute windows, shared through Redis when
  configured): every answer says ``X-RateLimit-Limit/Remaining/Reset``; past it, 429 with
  ``Retry-After``.
- ``/fhir`` requests go to the FHIR routes (:class:`adapter.api.routes.FhirRoutes`);
  anything else to the app. Anything unhandled below becomes its OperationOutcome
  through :func:`adapter.facade.outcome_of` (a 500 logged by type and place only).
- The audit record (logger ``fhir_adapter.audit``, one JSON object per line) holds the
  client, interaction, resource type, sources and ids touched, status, outcome and
  duration; never a patient data value or a secret.
- Each ``/fhir`` request is timed into ``fhir_requests_seconds`` and told on the console
  (:mod:`adapter.ops.metrics`, :mod:`adapter.ops.logs`) by its route template, never its
  path or query as sent, and by the count of ids it touched, never the ids. The labels
  come from fixed sets (a resource type not served is ``other``): a client must not be
  able to grow the metrics or put its own words in the operator's log.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from adapter.auth.scopes import allows
from adapter.auth.tokens import TokenError, TokenService
from adapter.facade import outcome_of
from adapter.fhir.outcome import FhirError
from adapter.ops.logs import log_request
from adapter.ops.metrics import observe_request

__all__ = ["Guard", "MemoryLimiter", "RedisLimiter", "interaction_of", "route_of"]

audit_log = logging.getLogger("fhir_adapter.audit")
log = logging.getLogger("fhir_adapter")
MAX_URL = 8192
MAX_HEADERS = 16384
_OPEN = {"/fhir/metadata", "/fhir/.well-known/smart-configuration"}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Path segments kept in a route template; any other segment is a placeholder.
_LITERALS = frozenset({"_search", "_history"})
_PLACEHOLDERS = ("{type}", "{id}", "{part}")


def interaction_of(method: str, path: str) -> tuple[str | None, str | None]:
    """(interaction, resource type) of a ``/fhir`` request."""
    parts = [p for p in path.split("/")[2:] if p]
    if not parts:
        return None, None
    resource_type = parts[0]
    if method == "GET" and len(parts) == 1:
        return "search", resource_type
    if method == "POST" and len(parts) == 2 and parts[1] == "_search":
        return "search", resource_type
    if method == "GET" and len(parts) == 2:
        return "read", resource_type
    if method == "POST" and len(parts) == 1:
        return "create", resource_type
    if method in ("PUT", "PATCH") and len(parts) == 2:
        return "update", resource_type
    if method == "DELETE":
        return "delete", resource_type
    return "read", resource_type


def route_of(path: str) -> str:
    """The template of a ``/fhir`` path (``/fhir/{type}/{id}``): what a log may say of it.
    The segments a client chose (types, ids) become placeholders."""
    if path in _OPEN:
        return path
    parts = [p for p in path.split("/")[2:] if p]
    return "/fhir/" + "/".join(
        p if p in _LITERALS else _PLACEHOLDERS[min(i, 2)] for i, p in enumerate(parts)
    )


class MemoryLimiter:
    """Fixed one-minute windows per client, in this process."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[int, int]] = {}

    async def hit(self, client: str, limit: int) -> tuple[int, float]:
        """(requests in this window including this one, when the window ends)."""
        now = self._clock()
        window = int(now // 60)
        start, count = self._windows.get(client, (window, 0))
        count = count + 1 if start == window else 1
        self._windows[client] = (window, count)
        return count, (window + 1) * 60.0


class RedisLimiter:
    """The same windows, counted in Redis so every worker shares them."""

    def __init__(self, redis: Any, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._clock = clock

    async def hit(self, client: str, limit: int) -> tuple[int, float]:
        window = int(self._clock() // 60)
        key = f"fhir-adapter:rate:{client}:{window}"
        count = await self._redis.incr(key)
        if count == 1:
            await self._redis.expire(key, 120)
        return int(count), (window + 1) * 60.0


class Guard:
    def __init__(
        self,
        app: Any,
        *,
        settings: Any,
        tokens: TokenService | None,
        limiter: Any,
        audit_file: Any = None,
        fhir: Any = None,
        types: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.fhir = fhir or app  # the /fhir routes
        self.settings = settings
        self.tokens = tokens
        self.limiter = limiter
        self.audit_file = audit_file
        self.types = frozenset(types)  # the served resource types: the metrics' type labels
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("path", "")
        interaction, resource_type = (
            interaction_of(scope["method"], path) if path.startswith("/fhir/") else (None, None)
        )
        audit: dict[str, Any] = {"ids": [], "client": None}
        scope["fhir.audit"] = audit
        status_seen: list[int] = []
        extra_headers: list[tuple[bytes, bytes]] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen.append(message["status"])
                if extra_headers:
                    message = {**message, "headers": [*message.get("headers", []), *extra_headers]}
            await send(message)

        try:
            refusal = self._limits(scope)
            if refusal is None and path.startswith("/fhir/") and path not in _OPEN:
                refusal = await self._authorize(
                    scope, interaction, resource_type, audit, extra_headers
                )
            if refusal is not None:
                await _send_error(watch, refusal)
            elif path.startswith("/fhir/"):
                await self.fhir(scope, receive, watch)
            else:
                await self.app(scope, receive, watch)
        except Exception as exc:
            error = outcome_of(exc, where=f"{scope['method']} {path}")
            if not status_seen:
                await _send_error(watch, error)
        finally:
            if path.startswith("/fhir/"):
                self._finish(
                    scope["method"], path, audit, interaction, resource_type, status_seen, started
                )

    def _limits(self, scope: Scope) -> FhirError | None:
        url_length = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        if url_length > MAX_URL:
            return FhirError.one(414, "too-long", f"the URL is over {MAX_URL} bytes")
        header_bytes = sum(len(k) + len(v) for k, v in scope.get("headers") or ())
        if header_bytes > MAX_HEADERS:
            return FhirError.one(
                431, "too-long", f"the request headers are over {MAX_HEADERS} bytes"
            )
        return None

    async def _authorize(
        self,
        scope: Scope,
        interaction: str | None,
        resource_type: str | None,
        audit: dict[str, Any],
        extra_headers: list[tuple[bytes, bytes]],
    ) -> FhirError | None:
        if self.tokens is None:  # open access (development)
            return None
        header = ""
        for key, value in scope.get("headers") or ():
            if key == b"authorization":
                header = value.decode("latin-1")
        realm = 'Bearer realm="fhir-adapter"'
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            return FhirError.one(
                401, "login", "a bearer token is required", **{"WWW-Authenticate": realm}
            )
        try:
            name, grant = self.tokens.verify(header[7:].strip())
        except TokenError as exc:
            challenge = f'{realm}, error="invalid_token", error_description="{exc}"'
            return FhirError.one(
                401, "login", f"the token was refused: {exc}", **{"WWW-Authenticate": challenge}
            )
        client = self.settings.clients.get(name)
        if client is None:  # the client was removed from the configuration
            challenge = f'{realm}, error="invalid_token"'
            return FhirError.one(
                401, "login", "the token was refused", **{"WWW-Authenticate": challenge}
            )
        audit["client"] = name
        count, reset = await self.limiter.hit(name, client.per_minute)
        remaining = max(0, client.per_minute - count)
        extra_headers += [
            (b"x-ratelimit-limit", str(client.per_minute).encode()),
            (b"x-ratelimit-remaining", str(remaining).encode()),
            (b"x-ratelimit-reset", str(int(reset)).encode()),
        ]
        if count > client.per_minute:
            wait = str(max(1, math.ceil(reset - self.clock())))
            return FhirError.one(
                429, "throttled", "too many requests; try later", **{"Retry-After": wait}
            )
        if (
            interaction is not None
            and resource_type is not None
            and not allows(grant, resource_type, interaction)
        ):
            challenge = f'{realm}, error="insufficient_scope"'
            return FhirError.one(
                403,
                "forbidden",
                f"the token's scopes do not allow {interaction} of {resource_type}",
                **{"WWW-Authenticate": challenge},
            )
        scope["fhir.client"] = client
        return None

    def _finish(
        self,
        method: str,
        path: str,
        audit: dict[str, Any],
        interaction: str | None,
        resource_type: str | None,
        status_seen: list[int],
        started: float,
    ) -> None:
        """A ``/fhir`` request answered: its timing, its console line, its audit record."""
        seconds = time.perf_counter() - started
        status = status_seen[0] if status_seen else 500
        if path in _OPEN:
            kind, type_label = "capabilities", "-"
        else:
            kind = interaction or "unknown"
            type_label = (
                resource_type
                if resource_type in self.types
                else ("-" if resource_type is None else "other")
            )
        observe_request(kind, type_label, status, seconds)
        logging_on = log.isEnabledFor(logging.INFO)
        auditing = path not in _OPEN and (
            self.audit_file is not None or audit_log.isEnabledFor(logging.INFO)
        )
        if not (logging_on or auditing):
            return
        # A global id begins with its source's name (which holds no dot).
        sources = {fhir_id.split(".", 1)[0] for fhir_id in audit["ids"]}
        if logging_on:
            log_request(
                method=method if method in _METHODS else "other",
                route=route_of(path),
                interaction=kind,
                resource_type=type_label,
                status=status,
                duration_ms=round(seconds * 1000, 1),
                client=audit["client"],
                sources=sources,
                count=len(audit["ids"]),
            )
        if auditing:
            self._audit(audit, interaction, resource_type, status, sources, seconds)

    def _audit(
        self,
        audit: dict[str, Any],
        interaction: str | None,
        resource_type: str | None,
        status: int,
        sources: set[str],
        seconds: float,
    ) -> None:
        record = {
            "event": "fhir.request",
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock())),
            "client": audit["client"],
            "interaction": interaction,
            "type": resource_type,
            "sources": sorted(sources),
            "ids": audit["ids"][:200],
            "status": status,
            "outcome": "success" if status < 400 else "failure",
            "duration_ms": round(seconds * 1000, 1),
        }
        audit_log.info(orjson.dumps(record).decode())
        if self.audit_file is not None:
            self.audit_file.write(orjson.dumps(_audit_event(record)) + b"\n")
            self.audit_file.flush()


def _audit_event(record: dict[str, Any]) -> dict[str, Any]:
    """The record as a FHIR R4 AuditEvent (https://hl7.org/fhir/R4/auditevent.html)."""
    action = {"create": "C", "read": "R", "search": "E", "update": "U", "delete": "D"}
    outcome = "0" if record["status"] < 400 else ("4" if record["status"] < 500 else "8")
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "action": action.get(record["interaction"] or "", "E"),
        "recorded": record["at"],
        "outcome": outcome,
        "agent": [{"who": {"display": record["client"] or "anonymous"}, "requestor": True}],
        "source": {"observer": {"display": "fhir-adapter"}},
    }
    if record["interaction"]:
        event["subtype"] = [
            {"system": "http://hl7.org/fhir/restful-interaction", "code": record["interaction"]}
        ]
    entities = [{"what": {"reference": f"{record['type']}/{i}"}} for i in record["ids"][:50]]
    if entities:
        event["entity"] = entities
    return event


async def _send_error(send: Send, error: FhirError) -> None:
    headers = [(b"content-type", b"application/fhir+json; charset=utf-8")]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": orjson.dumps(error.body())})
