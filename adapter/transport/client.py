"""One vendor's HTTP client: auth headers per key, limits, retries, typed errors."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import httpx
import orjson

from adapter.transport.errors import (
    AuthenticationRejected,
    MalformedResponse,
    RateLimited,
    TemporaryVendorError,
    VendorError,
    VendorTimeout,
    VendorUnavailable,
    classify_status,
)
from adapter.transport.ratelimit import KeyPool, NoKeysLeft, SlotTooFar
from adapter.transport.retry import RetryPolicy

__all__ = ["Classifier", "VendorClient", "default_classify", "make_vendor_http"]

Classifier = Callable[[str, httpx.Response], VendorError | None]
_T = TypeVar("_T")


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
        self._timeouts = timeout.as_dict()
        self._gets: dict[tuple[httpx.URL, int], tuple[dict[str, str], httpx.Request]] = {}

    async def request(
        self, method: str, url: httpx.URL, *, headers: dict[str, str], content: bytes | None
    ) -> httpx.Response:
        if method == "GET" and content is None:
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
            if len(self._gets) >= 4096:
                self._gets.clear()
            request = httpx.Request(
                "GET", url, headers=headers, extensions={"timeout": self._timeouts}
            )
            made = self._gets[key] = (headers, request)
        return made[1]

    async def aclose(self) -> None:
        await self.transport.aclose()


def make_vendor_http(
    base_url: str,
    *,
    timeout: httpx.Timeout | None = None,
    max_connections: int = 20,
    transport: httpx.AsyncBaseTransport | None = None,
) -> VendorHTTP:
    """The pooled connections of one source (connect 5 s, read 30 s unless told otherwise)."""
    transport = transport or httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=max_connections)
    )
    return VendorHTTP(base_url, timeout or httpx.Timeout(30.0, connect=5.0), transport)


class VendorClient:
    """Reads (``get_json``) are retried on temporary failures; writes (``send``) are
    tried once. A key whose credentials are rejected is set aside and the read goes on
    with the others, without counting as a retry; when none is left the source's
    credentials must be rotated, and that is said once, not retried."""

    def __init__(
        self,
        source: str,
        http: VendorHTTP,
        pool: KeyPool,
        classify: Classifier = default_classify,
        retry: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.http = http
        self.pool = pool
        self.classify = classify
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], httpx.URL] = {}
        self._key_headers: dict[int, tuple[Any, dict[str, str]]] = {}

    async def aclose(self) -> None:
        await self.http.aclose()

    def _headers(self, key: Any) -> dict[str, str]:
        """A key's request headers, made once per key."""
        made = self._key_headers.get(id(key))
        if made is None or made[0] is not key:
            made = self._key_headers[id(key)] = (
                key,
                {**key.headers(), "accept": "application/json"},
            )
        return made[1]

    def _url(self, path: str, params: dict[str, str] | None) -> httpx.URL:
        """The absolute URL of a call, built once per distinct call (httpx's URL parsing
        is a large share of a call's cost)."""
        key = (path, tuple(sorted(params.items())) if params else ())
        url = self._urls.get(key)
        if url is None:
            url = httpx.URL(self.http.base_url + path.lstrip("/"))
            if params:
                url = url.copy_merge_params(params)
            if len(self._urls) >= 4096:
                self._urls.clear()
            self._urls[key] = url
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
        attempt = 1
        while True:
            try:
                return (await self._once("GET", path, params=params, decode=decode or _json))[1]
            except _KeyRejected:
                continue  # another key, same attempt
            except TemporaryVendorError as exc:
                delay = self.retry.delay(attempt, exc, self._rng)
                if delay is None:
                    raise
                attempt += 1
                await self._sleep(delay)

    async def send(
        self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """A write, tried once: (status, parsed body)."""
        while True:
            try:
                return await self._once(method, path, params=params, json=json, write=True)
            except _KeyRejected:
                continue  # rejected before anything was done: safe on another key

    async def _once(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        write: bool = False,
        decode: Callable[[bytes], Any] | None = None,
    ) -> tuple[int, Any]:
        """One try of a call: (status, parsed body) of a success, else a typed error."""
        try:
            lease_cm = self.pool.acquire()
            lease = await lease_cm.__aenter__()
        except NoKeysLeft:
            raise AuthenticationRejected(self.source) from None
        except SlotTooFar as exc:
            raise RateLimited(
                self.source, None, "rate limited: no key free soon", exc.wait
            ) from None
        try:
            content = None if json is None else orjson.dumps(json)
            headers = self._headers(lease.key)
            if content is not None:
                headers = {**headers, "content-type": "application/json"}
            try:
                response = await self.http.request(
                    method, self._url(path, params), content=content, headers=headers
                )
            except httpx.TimeoutException:
                timeout = VendorTimeout(self.source, None, f"{method} timed out")
                timeout.committed_unknown = write
                raise timeout from None
            except httpx.TransportError as exc:
                raise VendorUnavailable(
                    self.source, None, f"connection failed ({type(exc).__name__})"
                ) from None
            lease.observe(response.headers, response.status_code)
            if response.is_success:
                try:
                    body = (decode or _json)(response.content)
                    return response.status_code, body
                except orjson.JSONDecodeError:
                    raise MalformedResponse(
                        self.source, response.status_code, "body is not JSON"
                    ) from None
            error = self.classify(self.source, response) or classify_status(self.source, response)
            if isinstance(error, AuthenticationRejected) and self.pool.active() > 1:
                lease.disable()
                raise _KeyRejected()
            if isinstance(error, AuthenticationRejected):
                lease.disable()
            raise error
        finally:
            await lease_cm.__aexit__(None, None, None)


def _json(content: bytes) -> Any:
    return orjson.loads(content) if content else None


class _KeyRejected(Exception):
    """This key's credentials were refused; others remain."""
