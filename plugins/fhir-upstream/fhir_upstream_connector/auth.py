"""How the connector proves itself to the upstream FHIR server: nothing, a static bearer
token, or SMART Backend Services (a client assertion signed with the client's private
key, ``private_key_jwt`` with RS384 or ES384, traded at the upstream's token endpoint for
an access token; https://hl7.org/fhir/smart-app-launch/backend-services.html).

It is an httpx transport wrapped around the real one, below the core's vendor client:
every call, with its budget, circuit and deadline, passes through it. An access token is
renewed before it expires (a tenth of its life early, at most a minute); a 401 from the
upstream drops the token and the call is tried once more with a fresh one, which does
not count as a retry. A token endpoint that refuses the client is answered as a 401 of
the upstream (credentials to rotate); one that fails, as a 503. Tokens, keys and
assertions never appear in an error or a log line.

Per-call headers the core's client does not carry (``If-Match``, ``If-None-Exist``) are
handed down in :data:`EXTRA_HEADERS`, set by the connector around one call.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import orjson

from adapter.connectors.base import ConnectorConfigError
from adapter.transport.credentials import Secret

__all__ = [
    "EXTRA_HEADERS",
    "AuthTransport",
    "Bearer",
    "NoAuth",
    "SmartBackend",
    "auth_from_config",
]

EXTRA_HEADERS: ContextVar[dict[str, str] | None] = ContextVar("fhir_upstream_headers", default=None)
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _outcome(status: int, code: str, text: str) -> httpx.Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
    return httpx.Response(status, content=orjson.dumps(body))


class TokenFailure(Exception):
    """The token endpoint gave no token: ``response`` is what the upstream call answers."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        super().__init__(f"token endpoint: {response.status_code}")


class NoAuth:
    async def token(self, inner: httpx.AsyncBaseTransport, *, fresh: bool = False) -> str | None:
        return None

    renewable = False


class Bearer:
    """A static token, as configured."""

    renewable = False

    def __init__(self, token: str) -> None:
        self._token = Secret(token)

    async def token(self, inner: httpx.AsyncBaseTransport, *, fresh: bool = False) -> str | None:
        return self._token.reveal()


class SmartBackend:
    """SMART Backend Services: ``client_credentials`` with a signed client assertion."""

    renewable = True

    def __init__(
        self,
        *,
        client_id: str,
        private_key: str,
        algorithm: str,
        token_url: str,
        scope: str,
        key_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm not in ("RS384", "ES384"):
            raise ValueError("SMART Backend Services signs with RS384 or ES384")
        self.client_id = client_id
        self._key = Secret(private_key)
        self.algorithm = algorithm
        self.token_url = token_url
        self.scope = scope
        self.key_id = key_id
        self.clock = clock
        self._token: Secret | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()
        self.issued = 0  # tokens obtained so far (for /metrics-free checks in tests)

    def assertion(self) -> str:
        now = self.clock()
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "exp": int(now) + 300,
            "iat": int(now),
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self.key_id} if self.key_id else None
        return jwt.encode(claims, self._key.reveal(), algorithm=self.algorithm, headers=headers)

    async def token(self, inner: httpx.AsyncBaseTransport, *, fresh: bool = False) -> str | None:
        async with self._lock:
            if fresh or self._token is None or self.clock() >= self._renew_at:
                await self._obtain(inner)
            assert self._token is not None
            return self._token.reveal()

    def forget(self, token: str | None) -> None:
        """The upstream refused this token: the next call obtains another."""
        if self._token is not None and self._token.reveal() == token:
            self._token = None

    async def _obtain(self, inner: httpx.AsyncBaseTransport) -> None:
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": _ASSERTION_TYPE,
            "client_assertion": self.assertion(),
        }
        request = httpx.Request(
            "POST",
            self.token_url,
            content=urlencode(form).encode(),
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "accept": "application/json",
            },
        )
        try:
            response = await inner.handle_async_request(request)
            await response.aread()
        except httpx.TransportError:
            raise TokenFailure(
                _outcome(503, "transient", "the upstream's token endpoint is unreachable")
            ) from None
        if response.status_code in (400, 401, 403):
            raise TokenFailure(
                _outcome(401, "login", "the upstream's token endpoint refused the client")
            )
        body: Any = None
        if response.is_success:
            try:
                body = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenFailure(
                _outcome(503, "transient", "the upstream's token endpoint gave no token")
            )
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else 300.0
        self._token = Secret(token)
        self._renew_at = self.clock() + seconds - min(60.0, seconds / 10)
        self.issued += 1


class AuthTransport(httpx.AsyncBaseTransport):
    """Adds the upstream's credentials (and :data:`EXTRA_HEADERS`) to every request."""

    def __init__(self, inner: httpx.AsyncBaseTransport, auth: NoAuth | Bearer | SmartBackend):
        self.inner = inner
        self.auth = auth

    def _with(self, request: httpx.Request, token: str | None) -> httpx.Request:
        headers = dict(request.headers)
        extra = EXTRA_HEADERS.get()
        if extra:
            headers.update(extra)
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return httpx.Request(
            request.method,
            request.url,
            headers=headers,
            content=request.content,
            extensions=request.extensions,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            token = await self.auth.token(self.inner)
        except TokenFailure as failure:
            return failure.response
        response = await self.inner.handle_async_request(self._with(request, token))
        if response.status_code != 401 or not isinstance(self.auth, SmartBackend):
            return response
        # Refused: the token may have been revoked or expired early. Once more, fresh.
        await response.aread()
        await response.aclose()
        self.auth.forget(token)
        try:
            token = await self.auth.token(self.inner, fresh=True)
        except TokenFailure as failure:
            return failure.response
        return await self.inner.handle_async_request(self._with(request, token))

    async def aclose(self) -> None:
        await self.inner.aclose()


def auth_from_config(
    label: str, base_url: str, table: Mapping[str, Any]
) -> NoAuth | Bearer | SmartBackend:
    kind = table.get("type", "none")
    allowed = {"none": {"type"}, "bearer": {"type", "token"}}.get(
        kind, {"type", "client_id", "private_key", "algorithm", "key_id", "token_url", "scope"}
    )
    extra = sorted(set(table) - allowed)
    if extra:
        raise ConnectorConfigError(f"{label} auth: {', '.join(extra)} not taken with type {kind!r}")
    if kind == "none":
        return NoAuth()
    if kind == "bearer":
        if not table.get("token"):
            raise ConnectorConfigError(f"{label} auth: 'token' is required with type 'bearer'")
        return Bearer(table["token"])
    missing = [k for k in ("client_id", "private_key") if not table.get(k)]
    if missing:
        raise ConnectorConfigError(f"{label} auth: {', '.join(missing)} required with type 'smart'")
    return SmartBackend(
        client_id=table["client_id"],
        private_key=table["private_key"],
        algorithm=table.get("algorithm", "RS384"),
        token_url=table.get("token_url") or base_url.rstrip("/") + "/token",
        scope=table.get("scope", "system/*.rs system/Patient.c system/Appointment.cu"),
        key_id=table.get("key_id"),
    )
