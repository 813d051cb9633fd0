"""OAuth2 client credentials (SMART Backend Services): ``POST /auth/token`` and
``/.well-known/smart-configuration``.

Clients authenticate with ``client_secret_basic``, ``client_secret_post`` or
``private_key_jwt`` (an RS384/ES384 client assertion). The token's scope is what was asked
for, narrowed to what the client holds. Errors are RFC 6749 JSON, saying what kind of
problem it was and nothing about which part of a credential was wrong.

The endpoint guesses at nothing for free: the form is read only up to :data:`MAX_FORM`
bytes (413 past it), and failed authentications are counted per client and per remote
address (:class:`LoginThrottle`, held in ``app.state.login_throttle``): past the limit,
attempts are answered 429 with ``Retry-After`` before any credential is looked at. Each
failure is one console line: the client (a configured client's name, else ``unknown``),
the remote address and the kind of failure; never what was sent as a credential. The
413 and 429 are OperationOutcomes like every other refusal of the HTTP layer.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import jwt
import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from adapter.api.fhir import base_url, read_body
from adapter.auth.scopes import format_scopes, narrow, parse_scopes
from adapter.auth.tokens import ASSERTION_TYPE, TokenError, verify_assertion
from adapter.fhir.outcome import FhirError, whole_seconds
from adapter.ops.activity import activity
from adapter.settings import Settings

__all__ = ["MAX_FORM", "LoginThrottle", "router", "smart_configuration", "token_url"]

log = logging.getLogger("fhir_adapter")
router = APIRouter()
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_FORM = 8192  # bytes: a token request with a signed assertion takes a few hundred
_BASIC = {"WWW-Authenticate": 'Basic realm="fhir-adapter"'}


class _Failures:
    """When each key last failed, up to ``limit`` times; at most ``keys`` keys (the one
    that failed longest ago forgotten first, so that a stream of new keys costs a bounded
    amount of memory)."""

    def __init__(self, limit: int, keys: int) -> None:
        self.limit = limit
        self.keys = keys
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def oldest_held(self, key: str, since: float) -> float | None:
        """The first of ``limit`` failures after ``since``, or None if there are fewer."""
        times = self._times.get(key)
        if times is None:
            return None
        while times and times[0] <= since:
            times.popleft()
        return times[0] if len(times) >= self.limit else None

    def add(self, key: str, now: float) -> None:
        times = self._times.pop(key, None) or deque(maxlen=self.limit)
        times.append(now)
        self._times[key] = times
        while len(self._times) > self.keys:
            self._times.popitem(last=False)


class LoginThrottle:
    """Failed token requests per client from each remote address (``limit`` within
    ``window`` seconds), and per address whatever the client (``address_limit``, more: a
    proxy or a NAT may stand for several clients); past either, further attempts for that
    client from that address, or from that address at all, wait until the earliest
    failure leaves the window. Successful ones are not counted. A client is never held
    back by failures made in its name from elsewhere: whoever tries its name from another
    address locks out only that address.

    In this process's memory (each worker counts its own). Only configured clients are
    counted by name (an unknown name is no one's to protect); addresses, and (client,
    address) pairs, are held up to ``addresses`` at a time. The address is the socket's
    peer, or what a proxy of ``[server] forwarded_allow_ips`` says it is: never a header
    a client wrote."""

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        *,
        address_limit: int = 30,
        addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self._clock = clock
        self._clients = _Failures(limit, addresses)
        self._addresses = _Failures(address_limit, addresses)

    def wait(self, client: str | None, address: str) -> int:
        """Whole seconds before an attempt may be made for ``client`` (a configured
        client's name, or None) from ``address``; 0: now."""
        now = self._clock()
        since = now - self.window
        held = [self._addresses.oldest_held(address, since)]
        if client is not None:
            held.append(self._clients.oldest_held(f"{client}\0{address}", since))
        starts = [t for t in held if t is not None]
        return whole_seconds(min(starts) + self.window - now) if starts else 0

    def failed(self, client: str | None, address: str) -> None:
        now = self._clock()
        self._addresses.add(address, now)
        if client is not None:
            self._clients.add(f"{client}\0{address}", now)


def token_url(request: Request) -> str:
    return base_url(request).removesuffix("/fhir") + "/auth/token"


def _oauth_error(status: int, error: str, description: str, **headers: str) -> Response:
    body = orjson.dumps({"error": error, "error_description": description})
    return Response(body, status, {**_NO_STORE, **headers}, media_type="application/json")


def smart_configuration(request: Request) -> dict[str, Any]:
    return {
        "token_endpoint": token_url(request),
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["system/*.cruds", "system/*.rs", "system/*.read", "system/*.write"],
        "capabilities": [
            "client-confidential-symmetric",
            "client-confidential-asymmetric",
            "permission-v1",
            "permission-v2",
        ],
    }


@router.get("/.well-known/smart-configuration", summary="SMART configuration")
@router.get("/fhir/.well-known/smart-configuration", summary="SMART configuration (FHIR base)")
async def well_known(request: Request) -> Response:
    return Response(orjson.dumps(smart_configuration(request)), media_type="application/json")


@router.post(
    "/auth/token",
    summary="OAuth2 client credentials token",
    openapi_extra={
        "requestBody": {
            "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}
        }
    },
)
async def token(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    tokens = request.app.state.tokens
    if tokens is None:
        raise FhirError.one(404, "not-found", "this server takes no tokens (open access)")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return _oauth_error(
            400, "invalid_request", "send a form (application/x-www-form-urlencoded)"
        )
    body = await read_body(request, MAX_FORM, "the token request")
    try:
        items = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        return _oauth_error(400, "invalid_request", "the form is not UTF-8")
    form = dict(items)
    if len(form) != len(items):  # RFC 6749 3.2: no parameter more than once
        return _oauth_error(400, "invalid_request", "a parameter is given more than once")
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")

    basic = request.headers.get("authorization", "")
    client_id, secret = _basic(basic) if basic.lower().startswith("basic ") else (None, "")
    claimed = _claimed(client_id, form)
    named = claimed if claimed is not None and claimed in settings.clients else None
    address = request.client.host if request.client is not None else "unknown"
    throttle = _throttle(request)
    wait = throttle.wait(named, address)
    if wait:
        raise FhirError.one(
            429,
            "throttled",
            "too many failed token requests for this client or from this address; try again later",
            **{"Retry-After": str(wait)},
        )

    def refuse(kind: str, description: str = "client authentication failed") -> Response:
        throttle.failed(named, address)
        fields = {"event": "token_refused", "client": named or "unknown", "address": address}
        log.warning("token request refused", extra={"fields": {**fields, "kind": kind}})
        return _oauth_error(401, "invalid_client", description, **_BASIC)

    methods = [client_id is not None, "client_secret" in form, "client_assertion" in form]
    if sum(methods) != 1:
        return refuse("not one way of authenticating", "authenticate the client in exactly one way")
    if methods[2]:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return _oauth_error(400, "invalid_request", "client_assertion_type must be jwt-bearer")
        try:
            client = verify_assertion(
                form["client_assertion"],
                dict(settings.clients),
                {token_url(request)},
                request.app.state.replay,
            )
        except TokenError as exc:
            return refuse("unknown client" if named is None else "bad assertion", str(exc))
        if form.get("client_id", client.name) != client.name:  # RFC 7521 4.2: the same
            return refuse(
                "client_id is not the assertion's", "client_id must be the assertion's iss"
            )
    else:
        candidate = settings.clients.get(named or "")
        if candidate is None:
            return refuse("unknown client")
        given = secret if methods[0] else form["client_secret"]
        if not candidate.secret_matches(given):
            return refuse("wrong secret")
        client = candidate
    try:
        asked = parse_scopes(form["scope"]) if form.get("scope") else dict(client.scopes)
    except ValueError:
        return _oauth_error(
            400, "invalid_scope", "scope holds something that is not a system scope"
        )
    granted = narrow(asked, client.scopes)
    if not granted:
        return _oauth_error(400, "invalid_scope", "none of the scopes asked for is held")
    access, lifetime = tokens.issue(client, granted)
    activity.token_issued(client.name)
    answer = {
        "access_token": access,
        "token_type": "bearer",
        "expires_in": lifetime,
        "scope": format_scopes(granted),
    }
    return Response(orjson.dumps(answer), 200, _NO_STORE, media_type="application/json")


def _basic(header: str) -> tuple[str, str]:
    """(client id, secret) of an HTTP Basic header; ("", "") when it holds none."""
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    client_id, _, secret = decoded.partition(":")
    return client_id, secret


def _claimed(basic_id: str | None, form: dict[str, str]) -> str | None:
    """The client a token request says it is, unverified: for counting its failures."""
    if basic_id is not None:
        return basic_id
    if "client_id" in form:
        return form["client_id"]
    assertion = form.get("client_assertion")
    if assertion is None:
        return None
    try:
        issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return None
    return issuer if isinstance(issuer, str) else None


def _throttle(request: Request) -> LoginThrottle:
    """The app's throttle (made on first use when the app did not set one)."""
    state = request.app.state
    throttle: LoginThrottle | None = getattr(state, "login_throttle", None)
    if throttle is None:
        throttle = state.login_throttle = LoginThrottle()
    return throttle
