"""Around every request: size limits, the Host it names, the bearer token and its scopes,
the client's rate limit, the time its body may take, the security headers of every answer,
and for each ``/fhir`` request its timing, one console line and one audit record.

- URL over 8 KiB: 414; request headers over 16 KiB: 431; a body over 1 MiB: 413 (routes
  may take less); a body that has not arrived whole within ``[server] body_seconds``
  (10 s): 408, so a client that trickles its body in does not hold a worker's request
  open for as long as it likes.
- The Host header: without ``[server] public_base_url`` the routes build their links (Bundle
  links, ``Location``, the SMART token endpoint) from it, so a Host this server does not
  answer for would put someone else's address into them. With ``trusted_hosts``, any other
  Host is a 400 (which never repeats it); with neither, a request that reached a loopback
  address may name only a loopback Host (a DNS-rebinding page cannot borrow a local
  server), and one that reached another address is refused (``serve`` does not start that
  way; see :func:`host_policy`). With ``public_base_url`` the Host is not used, so not
  checked. The probes (``/healthz``, ``/readyz``, ``/metrics``) build no links and are
  asked by orchestrators by address: they are never refused for their Host.
- Every answer, errors and probes included, says ``Cache-Control: no-store`` (patient data
  must not be kept by a shared cache), ``X-Content-Type-Options: nosniff`` and
  ``Content-Security-Policy: default-src 'none'`` (a JSON answer opened in a browser runs
  nothing).
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

import asyncio
import functools
import ipaddress
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from adapter.auth.scopes import allows
from adapter.auth.tokens import TokenError, TokenService
from adapter.facade import outcome_of
from adapter.fhir.outcome import FhirError, whole_seconds
from adapter.ops.activity import activity
from adapter.ops.caches import Table
from adapter.ops.logs import log_request, write_audit
from adapter.ops.metrics import observe_request
from adapter.transport import cost, lanes

__all__ = [
    "MAX_BODY",
    "SECURITY_HEADERS",
    "Guard",
    "HostPolicy",
    "MemoryLimiter",
    "RedisLimiter",
    "host_policy",
    "interaction_of",
    "route_of",
    "where_of",
]

audit_log = logging.getLogger("fhir_adapter.audit")
log = logging.getLogger("fhir_adapter")
MAX_URL = 8192
MAX_HEADERS = 16384
MAX_BODY = 1 << 20  # bytes: no route takes more (writes: adapter.api.writes.MAX_BODY)
DRAIN_LIMIT = 8 << 20  # bytes of a refused body read and dropped so its answer arrives
DRAIN_IDLE = 1.0  # seconds without a byte of it after which that stops
# Added to every answer that does not set them itself; computed once.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'"),
)
_SECURITY_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)
# Answered whatever their Host: they build no links, and are asked by address.
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
_BODY_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?|\[[0-9a-f:.]+\]")
_OPEN = {"/fhir/metadata", "/fhir/.well-known/smart-configuration"}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The routes outside /fhir a log line may name as they are.
_PLAIN_ROUTES = frozenset(
    {
        "/auth/token",
        "/.well-known/smart-configuration",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
    }
)
# Operations that only read (a type's, or an instance's): ``/fhir/ConceptMap/$translate``
# is a read of ConceptMap, not a resource with the id ``$translate``; ``$everything`` a
# read of Patient.
_READ_OPERATIONS = frozenset({"$translate", "$everything"})
# Bulk data export: kick-off, status and files. Which types it reads is known only from
# its parameters: the route checks the scopes for each (adapter.api.export).
_EXPORT_SEGMENTS = frozenset({"$export", "$export-poll", "$export-file"})
_OPERATION_METHODS = frozenset({"GET", "HEAD", "POST"})
# Path segments kept in a route template; any other segment is a placeholder.
_LITERALS = frozenset({"_search", "_history", *_READ_OPERATIONS, *_EXPORT_SEGMENTS})
_PLACEHOLDERS = ("{type}", "{id}", "{part}")


def interaction_of(method: str, path: str) -> tuple[str | None, str | None]:
    """(interaction, resource type) of a ``/fhir`` request."""
    parts = [p for p in path.split("/")[2:] if p]
    if not parts:
        return None, None
    if any(part in _EXPORT_SEGMENTS for part in parts[:3]):
        return "operation", None
    # A topic (at its canonical URL) is read by whoever may read Subscriptions.
    resource_type = "Subscription" if parts[0] == "SubscriptionTopic" else parts[0]
    if parts[-1] in _READ_OPERATIONS and len(parts) in (2, 3) and method in _OPERATION_METHODS:
        return "read", resource_type  # by GET or by POST (a Parameters body)
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


def where_of(method: str, path: str) -> str:
    """What a log line may say of a request: its method (one of the known ones) and its
    route template, never the path or query a client wrote."""
    shown = method if method in _METHODS else "other"
    if path.startswith("/fhir/"):
        return f"{shown} {route_of(path)}"
    return f"{shown} {path if path in _PLAIN_ROUTES else '(another path)'}"


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

    def __init__(
        self,
        redis: Any,
        clock: Callable[[], float] = time.time,
        namespace: str = "fhir-adapter:",
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._prefix = f"{namespace}rate:"

    async def hit(self, client: str, limit: int) -> tuple[int, float]:
        window = int(self._clock() // 60)
        key = f"{self._prefix}{client}:{window}"
        count = await self._redis.incr(key)
        if count == 1:
            await self._redis.expire(key, 120)
        return int(count), (window + 1) * 60.0


def _split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header value (lower case) as (name, port), or None when it is not one."""
    name, port = value, None
    if value.startswith("["):
        end = value.find("]")
        name, rest = value[: end + 1], value[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            return None
        digits = rest[1:] if rest else None
    else:
        name, colon, digits_ = value.partition(":")
        digits = digits_ if colon else None
    if digits is not None:
        if not digits.isdigit() or len(digits) > 5:
            return None
        port = int(digits)
    if not _HOST_NAME.fullmatch(name):
        return None
    return name, port


def _split_pattern(pattern: str) -> tuple[str, int | str | None]:
    """A ``trusted_hosts`` pattern (checked by :mod:`adapter.settings`) as (name, port)."""
    end = pattern.rfind("]")  # a bracketed IPv6 address holds colons of its own
    name, colon, port = pattern[end + 1 :].partition(":")
    name = pattern[: end + 1] + name
    if not colon:
        return name, None
    return name, "*" if port == "*" else int(port)


@functools.lru_cache(maxsize=1024)  # on every request: parse each name once
def _loopback_name(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


HOSTS_BYTES = 256 << 10  # Host values judged already, per policy


class HostPolicy:
    """Which Host header values a request may name. ``patterns`` as ``[server]
    trusted_hosts`` holds them: ``name``, ``*.name`` (any subdomain of it, not the name
    itself), each with ``:port`` or ``:*`` (any port, or none); a pattern without a port
    takes only a Host that names none, so a client cannot choose the port of the links
    either.
    ``loopback``: instead of patterns, any port of 127.0.0.0/8, ``localhost`` and ``[::1]``."""

    def __init__(self, patterns: Iterable[str] = (), *, loopback: bool = False) -> None:
        self.loopback = loopback
        self._seen: Table[bytes, bool] = Table("hosts", HOSTS_BYTES)  # Host values judged
        # (name, port): the port None for none, "*" for any
        self._exact: set[tuple[str, int | str | None]] = set()
        self._suffixes: list[tuple[str, int | str | None]] = []
        for pattern in patterns:
            name, port = _split_pattern(pattern.strip().lower())
            if name.startswith("*."):
                self._suffixes.append((name[1:], port))
            else:
                self._exact.add((name, port))

    def allows(self, host: bytes) -> bool:
        known = self._seen.get(host)
        if known is None:
            known = self._seen.put(host, self._judge(host))
        return known

    def _judge(self, host: bytes) -> bool:
        split = _split_host(host.decode("latin-1").lower())
        if split is None:
            return False
        name, port = split
        if self.loopback:
            return _loopback_name(name)
        if (name, port) in self._exact or (name, "*") in self._exact:
            return True
        return any(
            name.endswith(suffix) and (wanted == "*" or wanted == port)
            for suffix, wanted in self._suffixes
        )


_LOOPBACK = HostPolicy(loopback=True)
_NOBODY = HostPolicy()


def host_policy(settings: Any, server: Any) -> HostPolicy | None:
    """The Host values a request that reached ``server`` (the ASGI scope's address) may
    name; None: any (the Host is not used, or no server address is known to judge by).

    - ``public_base_url``: None; links come from it, never from the Host.
    - ``trusted_hosts``: those.
    - neither: a request that reached a loopback address (``serve --host 127.0.0.1``, the
      default) may name loopback Hosts only; one that reached another address, none at
      all (``serve`` refuses to start that way, but an app run by other means is held to
      the same); an app served without an IP address (in process, over a Unix socket
      behind a proxy) is not judged here."""
    if settings.public_base_url:
        return None
    if settings.trusted_hosts:
        return _trusted(tuple(settings.trusted_hosts))
    address = server[0] if server else None
    if not isinstance(address, str):
        return None
    return _reached(address)


@functools.lru_cache(maxsize=64)
def _trusted(patterns: tuple[str, ...]) -> HostPolicy:
    return HostPolicy(patterns)


@functools.lru_cache(maxsize=256)
def _reached(address: str) -> HostPolicy | None:
    try:
        reached = ipaddress.ip_address(address)
    except ValueError:
        return None
    return _LOOPBACK if reached.is_loopback else _NOBODY


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
        self._configured_hosts = (
            None
            if settings.public_base_url or not settings.trusted_hosts
            else HostPolicy(settings.trusted_hosts)
        )
        self._body_seconds = float(settings.body_seconds)

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
        standing: lanes.Standing = {}
        spent: cost.Cost | None = None

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen.append(message["status"])
                extra = [*extra_headers, *told(standing)]
                if spent is not None:
                    extra.append(server_timing(spent, time.perf_counter() - started))
                message = {**message, "headers": _secured(message.get("headers") or [], extra)}
            await send(message)

        raw = receive
        try:
            refusal = self._limits(scope)
            if refusal is None and path not in _PROBES:
                refusal = self._host(scope)
            if refusal is None and _has_body(scope):
                refusal = _declared_length(scope)
                receive = self._timed(raw)
            if refusal is None and path.startswith("/fhir/") and path not in _OPEN:
                refusal = await self._authorize(
                    scope, interaction, resource_type, audit, extra_headers
                )
            if refusal is not None:
                if _has_body(scope):
                    await _discard(raw, scope, self._body_seconds)
                await _send_error(watch, refusal)
            elif path.startswith("/fhir/"):
                client = scope.get("fhir.client")
                who = (client.name, client.weight) if client is not None else (lanes.ANONYMOUS,)
                with lanes.client(*who) as standing, cost.counting() as spent:
                    await self.fhir(scope, receive, watch)
            else:
                await self.app(scope, receive, watch)
        except Exception as exc:
            error = outcome_of(exc, where=where_of(scope["method"], path))
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

    def _host(self, scope: Scope) -> FhirError | None:
        """400 when the Host header is not one this server answers for (never quoted: it
        is the caller's own text)."""
        policy = self._configured_hosts
        if policy is None:
            policy = host_policy(self.settings, scope.get("server"))
            if policy is None:
                return None
        hosts = [value for key, value in scope.get("headers") or () if key == b"host"]
        if len(hosts) == 1 and policy.allows(hosts[0]):
            return None
        return FhirError.one(400, "invalid", "the Host header is not one this server answers for")

    def _timed(self, receive: Receive) -> Receive:
        """``receive`` held to ``body_seconds`` for the whole body (counted from the first
        read) and to :data:`MAX_BODY`: a 408 or 413 raised where the route reads it, which
        becomes its OperationOutcome there. What comes after the body (a disconnect) is
        waited for as long as the route likes."""
        seconds = self._body_seconds
        deadline: float | None = None
        size = 0
        done = False

        async def timed() -> Message:
            nonlocal deadline, size, done
            if done:
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + seconds
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                done = True
                raise FhirError.one(
                    408,
                    "timeout",
                    f"the request body did not arrive within {seconds:g} s",
                    Connection="close",
                ) from None
            if message["type"] != "http.request":
                done = True
                return message
            size += len(message.get("body") or b"")
            if size > MAX_BODY:
                done = True
                raise FhirError.one(
                    413, "too-costly", f"the body is over {MAX_BODY} bytes", Connection="close"
                )
            done = not message.get("more_body", False)
            return message

        return timed

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
            wait = str(whole_seconds(reset - self.clock()))
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
        scope["fhir.grant"] = grant
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
        activity.answered(audit["client"], status, seconds)
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
        write_audit(record, self.audit_file)


def _secured(
    headers: Iterable[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """An answer's headers with :data:`SECURITY_HEADERS` (those it does not set itself)
    and ``extra`` (the client's rate limit) added."""
    headers = list(headers)
    present = {name for name, _ in headers if name in _SECURITY_NAMES}
    if present:
        headers += [h for h in SECURITY_HEADERS if h[0] not in present]
    else:
        headers += SECURITY_HEADERS
    headers += extra
    return headers


def told(standing: lanes.Standing) -> list[tuple[bytes, bytes]]:
    """The ``RateLimit-Policy`` and ``RateLimit`` fields (IETF httpapi ratelimit-headers
    draft) of the vendor budgets a request drew on: per source, its budget (``q`` calls
    per ``w`` seconds), and what is left to this client of it in the current window
    (``r``) and when that window's oldest call of the client leaves it (``t``)."""
    if not standing:
        return []
    policies = ", ".join(
        f'"{source}";q={quota};w={math.ceil(window)}'
        for source, (quota, window, _, _) in sorted(standing.items())
    )
    left = ", ".join(
        f'"{source}";r={remaining};t={math.ceil(reset)}'
        for source, (_, _, remaining, reset) in sorted(standing.items())
    )
    return [(b"ratelimit-policy", policies.encode()), (b"ratelimit", left.encode())]


def server_timing(spent: cost.Cost, seconds: float) -> tuple[bytes, bytes]:
    """The ``Server-Timing`` field (W3C Server Timing) of a FHIR answer: the vendor calls
    it made and their time (``vendor``, its ``desc`` counting them), the vendor answers
    taken from the read cache instead (``vendor-cache``, when there were any), the time it
    waited for vendor budget (``budget``) and its own time until the answer began
    (``total``), in milliseconds."""
    calls = "1 call" if spent.calls == 1 else f"{spent.calls} calls"
    value = f'vendor;dur={spent.vendor_seconds * 1000:.1f};desc="{calls}"'
    if spent.cached:
        answers = "1 answer" if spent.cached == 1 else f"{spent.cached} answers"
        value += f', vendor-cache;desc="{answers}"'
    value += f", budget;dur={spent.wait_seconds * 1000:.1f}, total;dur={seconds * 1000:.1f}"
    return (b"server-timing", value.encode())


def _has_body(scope: Scope) -> bool:
    return any(key in _BODY_HEADERS for key, _ in scope.get("headers") or ())


def _declared_length(scope: Scope) -> FhirError | None:
    """413 at once for a ``Content-Length`` over :data:`MAX_BODY`: nothing of it is read."""
    for key, value in scope.get("headers") or ():
        # ASCII digits (bytes.isdigit takes no others), not converted when there are more
        # of them than any limit has.
        if (
            key == b"content-length"
            and value.isdigit()
            and (len(value) > 18 or int(value) > MAX_BODY)
        ):
            return FhirError.one(
                413, "too-costly", f"the body is over {MAX_BODY} bytes", Connection="close"
            )
    return None


async def _discard(receive: Receive, scope: Scope, seconds: float) -> None:
    """Read and drop a refused request's body, up to :data:`DRAIN_LIMIT` bytes, for at most
    ``seconds`` and while it keeps arriving (:data:`DRAIN_IDLE` between reads), before the
    refusal is sent: a client still writing its body then reads the answer, where closing
    on unread bytes would reset the connection under it. A body declared larger than the
    limit is not waited for."""
    for key, value in scope.get("headers") or ():
        if key == b"content-length" and (
            not value.isdigit() or len(value) > 18 or int(value) > DRAIN_LIMIT
        ):
            return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    size = 0
    try:
        while size <= DRAIN_LIMIT:
            async with asyncio.timeout_at(min(deadline, loop.time() + DRAIN_IDLE)):
                message = await receive()
            if message["type"] != "http.request":
                return
            size += len(message.get("body") or b"")
            if not message.get("more_body", False):
                return
    except TimeoutError:
        return


async def _send_error(send: Send, error: FhirError) -> None:
    headers = [(b"content-type", b"application/fhir+json; charset=utf-8")]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": orjson.dumps(error.body())})
