"""One vendor's HTTP client: auth headers per key, limits, retries, typed errors."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import httpx
import orjson

from adapter.ops import telemetry
from adapter.ops.caches import Table, weigh
from adapter.transport import budget, cost, hooks, lanes, scope
from adapter.transport.cache import ReadCache, SharedFlights
from adapter.transport.circuit import Circuit, CircuitOpen, SharedCircuit
from adapter.transport.errors import (
    AuthenticationRejected,
    BudgetRefused,
    CircuitRefused,
    MalformedResponse,
    RateLimited,
    ShareExceeded,
    TemporaryVendorError,
    VendorError,
    VendorTimeout,
    VendorUnavailable,
    classify_status,
)
from adapter.transport.ratelimit import KeyPool, NoKeysLeft, OverShare, QueueFull, SlotTooFar
from adapter.transport.retry import RetryPolicy

__all__ = [
    "BudgetRefused",
    "CircuitRefused",
    "Classifier",
    "VendorClient",
    "default_classify",
    "make_vendor_http",
]

log = logging.getLogger("fhir_adapter")

Classifier = Callable[[str, httpx.Response], VendorError | None]
_T = TypeVar("_T")
# What the tables of vendor URLs and GET requests already built may hold, per source.
URLS_BYTES = 1 << 20
REQUESTS_BYTES = 2 << 20


def _url_weight(key: tuple[str, tuple[tuple[str, str], ...]], url: httpx.URL) -> int:
    # The key's strings, and the URL's own copy of them parsed into its parts (about
    # twice its text) with its objects.
    return weigh(key) + 3 * len(str(url)) + 600


def _request_weight(key: tuple[httpx.URL, int], made: tuple[dict[str, str], httpx.Request]) -> int:
    # The headers are the key's own, shared: the request's URL, headers list and objects.
    return 4 * len(str(key[0])) + 2000


def default_classify(source: str, response: httpx.Response) -> VendorError | None:
    return None


class VendorHTTP:
    """One source's connection pool: its transport, base URL and timeouts.

    Calls go straight to the transport (as httpx's client does underneath), without the
    client's cookie jar, auth flows, redirects and event hooks: a vendor API needs none
    of them, and they cost more than the call itself when the vendor is fast.
    """

    def __init__(
        self, base_url: str, timeout: httpx.Timeout, transport: httpx.AsyncBaseTransport
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.transport = transport
        self.read_timeout = timeout.read if timeout.read is not None else math.inf
        self._timeouts = timeout.as_dict()
        self._gets: Table[tuple[httpx.URL, int], tuple[dict[str, str], httpx.Request]] = Table(
            "vendor-requests", REQUESTS_BYTES, weight=_request_weight
        )

    async def request(
        self,
        method: str,
        url: httpx.URL,
        *,
        headers: dict[str, str],
        content: bytes | None,
        once: bool = False,
    ) -> httpx.Response:
        """``once``: headers made for this call alone (a trace's), not worth keeping."""
        if method == "GET" and content is None and not once:
            request = self._get(url, headers)
        else:
            request = httpx.Request(
                method,
                url,
                headers=headers,
                content=content,
                extensions={"timeout": self._timeouts},
            )
        response = await self.transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _get(self, url: httpx.URL, headers: dict[str, str]) -> httpx.Request:
        """A GET without a body, built once per URL and header set: nothing in a request
        changes as it is sent, and building one is a large share of a fast call's cost."""
        key = (url, id(headers))
        made = self._gets.get(key)
        if made is None or made[0] is not headers:
            request = httpx.Request(
                "GET", url, headers=headers, extensions={"timeout": self._timeouts}
            )
            made = self._gets.put(key, (headers, request))
        return made[1]

    def serving(self, source: str) -> None:
        """Name the source these connections serve (in the metrics of what they keep)."""
        self._gets.source = source

    async def aclose(self) -> None:
        await self.transport.aclose()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The system's trusted certificates, as every outgoing connection checks them: read
    once per process (reading them takes about 0.1 s)."""
    return ssl.create_default_context()


def make_vendor_http(
    base_url: str,
    *,
    timeout: httpx.Timeout | None = None,
    max_connections: int = 20,
    transport: httpx.AsyncBaseTransport | None = None,
) -> VendorHTTP:
    """The pooled connections of one source (connect 5 s, read 30 s unless told otherwise)."""
    transport = transport or httpx.AsyncHTTPTransport(
        verify=tls_context(), limits=httpx.Limits(max_connections=max_connections)
    )
    return VendorHTTP(base_url, timeout or httpx.Timeout(30.0, connect=5.0), transport)


class VendorClient:
    """Reads (``get_json``) are retried on temporary failures; writes (``send``) are
    tried once. Identical reads in flight at once share one call, and may be served from
    a short cache (``cache_seconds``). A key whose credentials are refused is paused and
    the read goes on with the others, without counting as a retry; when none is left
    that is said at once, with when the first is tried again. A vendor that keeps failing
    opens the source's circuit (:mod:`adapter.transport.circuit`). Everything draws on
    the current request's deadline and call budget (:mod:`adapter.transport.scope`)."""

    def __init__(
        self,
        source: str,
        http: VendorHTTP,
        pool: KeyPool,
        classify: Classifier = default_classify,
        retry: RetryPolicy | None = None,
        *,
        circuit: Circuit | None = None,
        cache_seconds: float = 0.0,
        cache_bytes: int = 16 << 20,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.http = http
        http.serving(source)
        self.pool = pool
        self.classify = classify
        self.retry = retry or RetryPolicy()
        self.circuit = circuit or Circuit()
        budgets = budget.current()
        budgets.bind(source, pool)
        # With Redis the circuit is every process's (one answer from /readyz, one probe).
        self._shared_circuit: SharedCircuit | None = None
        if budgets.redis is not None:
            self._shared_circuit = SharedCircuit(
                self.circuit, budgets.redis, source, budgets.namespace
            )
            budgets.circuits[source] = self._shared_circuit
        self.cache = ReadCache(
            source, cache_seconds, budgets.redis, cache_bytes, namespace=budgets.namespace
        )
        self._shared = (
            SharedFlights(source, budgets.redis, budgets.namespace)
            if budgets.redis is not None
            else None
        )
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._urls: Table[tuple[str, tuple[tuple[str, str], ...]], httpx.URL] = Table(
            "vendor-urls", URLS_BYTES, source=source, weight=_url_weight
        )
        self._key_headers: dict[int, tuple[Any, dict[str, str], dict[str, str]]] = {}
        self._flights: dict[tuple[str, tuple[tuple[str, str], ...]], asyncio.Future[bytes]] = {}
        self._exhausted_at = -math.inf
        # Leyr asks for Content-Type: application/json on every request, bodiless or not.
        self.json_always = False
        self.connector = ""  # the connector's registered name, for traces

    async def aclose(self) -> None:
        await self.http.aclose()

    def limits(self) -> list[tuple[int, float]]:
        """Each rate limit of the key pool over all its keys: (calls, window seconds)."""
        keys = len(self.pool.keys)
        return [(limit.count * keys, limit.window) for limit in self.pool.limits]

    def health(self) -> str:
        """up | degraded | circuit open | credentials refused | budget exhausted"""
        if self.circuit.state == "open":
            return "circuit open"
        if self.pool.refused_for() is not None:
            return "credentials refused"
        if time.monotonic() - self._exhausted_at < 5.0:
            return "budget exhausted"
        if self.circuit.state == "half-open" or self.circuit.failing:
            return "degraded"
        if self.pool.active() < len(self.pool.keys):
            return "degraded"
        return "up"

    def _headers(self, key: Any, body: bool = False) -> dict[str, str]:
        """A key's request headers, with or without a JSON body's, made once per key (the
        same dict each time, so that a GET built for it can be reused)."""
        made = self._key_headers.get(id(key))
        if made is None or made[0] is not key:
            plain = {**key.headers(), "accept": "application/json"}
            made = self._key_headers[id(key)] = (
                key,
                plain,
                {**plain, "content-type": "application/json"},
            )
        return made[2] if body or self.json_always else made[1]

    def _url(self, path: str, params: dict[str, str] | None) -> httpx.URL:
        """The absolute URL of a call, built once per distinct call (httpx's URL parsing
        is a large share of a call's cost)."""
        key = (path, tuple(sorted(params.items())) if params else ())
        url = self._urls.get(key)
        if url is None:
            url = httpx.URL(self.http.base_url + path.lstrip("/"))
            if params:
                url = url.copy_merge_params(params)
            self._urls.put(key, url)
        return url

    @overload
    async def get_json(self, path: str, params: dict[str, str] | None = None) -> Any: ...

    @overload
    async def get_json(
        self, path: str, params: dict[str, str] | None = None, *, decode: Callable[[bytes], _T]
    ) -> _T: ...

    async def get_json(
        self,
        path: str,
        params: dict[str, str] | None = None,
        *,
        decode: Callable[[bytes], Any] | None = None,
    ) -> Any:
        """The parsed JSON of a read; ``decode`` may replace the parsing (it gets the body
        and raises ``orjson.JSONDecodeError`` for one that is not JSON)."""
        content = await self._read(path, params)
        try:
            return (decode or _json)(content)
        except orjson.JSONDecodeError:
            raise MalformedResponse(self.source, 200, "body is not JSON") from None

    async def _read(self, path: str, params: dict[str, str] | None) -> bytes:
        """A read's body: from the cache, from the same read in flight, or from the vendor."""
        key = (path, tuple(sorted(params.items())) if params else ())
        cached = await self.cache.get(key)
        if cached is not None:
            hooks.cache_hit(self.source)
            cost.cached()
            return cached
        while (flight := self._flights.get(key)) is not None:
            try:
                return await asyncio.shield(flight)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if flight.cancelled() and not (task and task.cancelling()):
                    continue  # the call's own request went away: make the call here
                raise
        made: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._flights[key] = made
        try:
            if self._shared is not None:
                content = await self._shared.share(
                    key, lambda: self._read_with_retries(path, params)
                )
            else:
                content = await self._read_with_retries(path, params)
        except asyncio.CancelledError:
            made.cancel()
            raise
        except BaseException as exc:
            made.set_exception(exc)
            made.exception()  # those waiting get it; nobody waiting is fine too
            raise
        finally:
            self._flights.pop(key, None)
        made.set_result(content)
        await self.cache.put(key, content)
        return content

    async def _read_with_retries(self, path: str, params: dict[str, str] | None) -> bytes:
        with telemetry.vendor_span("GET", self.source, self.connector) as span:
            span.set("vendor.retries", 0)
            attempt = 1
            while True:
                try:
                    return (await self._once("GET", path, params=params, span=span))[1]
                except _KeyRejected:
                    continue  # another key, same attempt
                except (CircuitRefused, BudgetRefused):
                    raise  # asking again would not help before the wait it names
                except TemporaryVendorError as exc:
                    delay = self.retry.delay(attempt, exc, self._rng)
                    left = scope.remaining()
                    if delay is None or (left is not None and delay >= left):
                        raise
                    span.set("vendor.retries", attempt)
                    attempt += 1
                    await self._sleep(delay)

    async def send(
        self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """A write, tried once: (status, parsed body). It empties the read cache: what
        was read before may have changed."""
        while True:
            try:
                with telemetry.vendor_span(method, self.source, self.connector) as span:
                    span.set("vendor.retries", 0)  # writes are never retried
                    status, content = await self._once(
                        method, path, params=params, json=json, write=True, span=span
                    )
            except _KeyRejected:
                continue  # rejected before anything was done: safe on another key
            except VendorError as exc:
                if exc.committed_unknown:  # it may have changed what was read before
                    await self.cache.clear()
                raise
            await self.cache.clear()
            try:
                return status, _json(content)
            except orjson.JSONDecodeError:
                broken = MalformedResponse(self.source, status, "body is not JSON")
                broken.committed_unknown = True  # it answered success: made, id unknown
                raise broken from None

    async def _once(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        write: bool = False,
        span: telemetry.VendorSpan,
    ) -> tuple[int, bytes]:
        """One try of a call: (status, body) of a success, else a typed error."""
        traced = span.span is not None
        if traced:
            span.set("vendor.circuit", self.circuit.state)
            span.set("vendor.lane", lanes.current_lane())
        try:
            if self._shared_circuit is not None:
                await self._shared_circuit.before_call()
            else:
                self.circuit.before_call()
        except CircuitOpen as exc:
            raise CircuitRefused(self.source, exc.retry_after) from None
        scope.count_call()
        try:
            lease_cm = self.pool.acquire()
            waiting = time.perf_counter()
            lease = await lease_cm.__aenter__()
            waited = time.perf_counter() - waiting
            cost.waited(waited)
            if traced:
                span.add("vendor.budget_wait_ms", round(waited * 1000, 3))
        except NoKeysLeft as exc:
            self.circuit.abandoned()
            refused = AuthenticationRejected(self.source)
            refused.retry_after = exc.retry_after
            raise refused from None
        except OverShare as exc:
            self.circuit.abandoned()
            _, window = self.pool.capacity()
            raise ShareExceeded(self.source, exc.wait, exc.quota, window) from None
        except SlotTooFar as exc:
            self.circuit.abandoned()
            self._exhausted_at = time.monotonic()
            raise BudgetRefused(self.source, exc.wait, isinstance(exc, QueueFull)) from None
        except BaseException:
            self.circuit.abandoned()
            raise
        started = time.perf_counter()
        if traced:
            span.set("vendor.key_index", self.pool.index_of(lease.key))
        try:
            response = await self._send(lease, method, path, params, json, write, span)
            span.set("vendor.status", response.status_code)
            lease.observe(response.headers, response.status_code)
            cost.called(time.perf_counter() - started)
            hooks.vendor_call(self.source, str(response.status_code), started)
            remaining = response.headers.get("x-ratelimit-remaining")
            if remaining is not None and remaining.isdigit():
                hooks.key_budget(self.source, lease.label, float(remaining))
            if response.is_success:
                await self._closed()
                return response.status_code, response.content
            error = self.classify(self.source, response) or classify_status(self.source, response)
            if write and response.status_code >= 500:
                error.committed_unknown = True  # a 5xx may follow the vendor's commit
            await self._judge(error)
            if isinstance(error, AuthenticationRejected):
                lease.refused()
                if self.pool.active() > 0:
                    raise _KeyRejected()
                error.retry_after = self.pool.refused_for()
            raise error
        except (VendorTimeout, VendorUnavailable) as exc:
            if exc.status is None:  # no answer at all
                cost.called(time.perf_counter() - started)
                hooks.vendor_call(
                    self.source, "timeout" if isinstance(exc, VendorTimeout) else "error", started
                )
                await self._judge(exc)
            raise
        except asyncio.CancelledError:
            self.circuit.abandoned()
            raise
        finally:
            await lease_cm.__aexit__(None, None, None)

    async def _send(
        self,
        lease: Any,
        method: str,
        path: str,
        params: dict[str, str] | None,
        json: Any,
        write: bool,
        span: telemetry.VendorSpan,
    ) -> httpx.Response:
        content = None if json is None else orjson.dumps(json)
        headers = self._headers(lease.key, body=content is not None)
        traced = span.traceparent()
        if traced is not None:
            headers = {**headers, **traced}
        left = scope.remaining()
        try:
            if left is not None and left < self.http.read_timeout:
                if left <= 0:
                    raise TimeoutError
                async with asyncio.timeout(left):
                    return await self.http.request(
                        method,
                        self._url(path, params),
                        content=content,
                        headers=headers,
                        once=traced is not None,
                    )
            return await self.http.request(
                method,
                self._url(path, params),
                content=content,
                headers=headers,
                once=traced is not None,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing was sent: the write surely did not happen.
            raise VendorUnavailable(
                self.source, None, f"connection failed ({type(exc).__name__})"
            ) from None
        except (httpx.TimeoutException, TimeoutError):
            timeout = VendorTimeout(self.source, None, f"{method} timed out")
            timeout.committed_unknown = write
            raise timeout from None
        except httpx.TransportError as exc:
            lost = VendorUnavailable(self.source, None, f"connection failed ({type(exc).__name__})")
            lost.committed_unknown = write  # the request may have been carried out
            raise lost from None

    async def _closed(self) -> None:
        """The vendor answered: the circuit closes, if it was open."""
        was = self.circuit.state
        if was != "closed":
            log.warning("source %s: the vendor answers again; the circuit is closed", self.source)
            hooks.circuit(self.source, False)
        if self._shared_circuit is not None and (was != "closed" or self.circuit.failing):
            await self._shared_circuit.succeeded()
        else:
            self.circuit.succeeded()

    async def _judge(self, error: VendorError) -> None:
        """Count a failure of the vendor's own against its circuit; any other answer
        shows the vendor is there."""
        if isinstance(error, RateLimited):
            hooks.rate_limited(self.source)
            return
        if not isinstance(error, VendorTimeout | VendorUnavailable):
            await self._closed()
            return
        if error.committed_unknown and error.status is not None:
            # The vendor answered a write after it may have carried it out: told apart
            # from a vendor that fails. The look-up that follows judges the vendor.
            hooks.vendor_failure(self.source, error.status, "WriteOutcomeUnknown")
            self.circuit.abandoned()
            return
        hooks.vendor_failure(self.source, error.status, type(error).__name__)
        opened = (
            await self._shared_circuit.failed()
            if self._shared_circuit is not None
            else self.circuit.failed()
        )
        if opened:
            hooks.circuit(self.source, True)
            log.warning(
                "source %s: %d failures in a row; the circuit is open for %d s",
                self.source,
                self.circuit.failures,
                round(self.circuit.open_seconds),
            )


def _json(content: bytes) -> Any:
    return orjson.loads(content) if content else None


class _KeyRejected(Exception):
    """This key's credentials were refused; others remain."""
