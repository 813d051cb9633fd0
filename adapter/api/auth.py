"""OAuth2 client credentials (SMART Backend Services): ``POST /auth/token`` and
``/.well-known/smart-configuration``.

Clients authenticate with ``client_secret_basic``, ``client_secret_post`` or
``private_key_jwt`` (an RS384/ES384 client assertion). The token's scope is what was asked
for, narrowed to what the client holds. Errors are RFC 6749 JSON, saying what kind of
problem it was and nothing about which part of a credential was wrong.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from adapter.api.fhir import base_url
from adapter.auth.scopes import format_scopes, narrow, parse_scopes
from adapter.auth.tokens import ASSERTION_TYPE, TokenError, verify_assertion
from adapter.fhir.outcome import FhirError
from adapter.settings import Settings

__all__ = ["router", "smart_configuration", "token_url"]

router = APIRouter()
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


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
    body = await request.body()
    if len(body) > 16_384:
        return _oauth_error(400, "invalid_request", "the request is too large")
    try:
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return _oauth_error(400, "invalid_request", "the form is not UTF-8")
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")

    basic = request.headers.get("authorization", "")
    methods = [
        basic.lower().startswith("basic "),
        "client_secret" in form,
        "client_assertion" in form,
    ]
    if sum(methods) != 1:
        return _oauth_error(
            401, "invalid_client", "authenticate the client in exactly one way",
            **{"WWW-Authenticate": 'Basic realm="fhir-adapter"'},
        )  # fmt: skip
    client = None
    if methods[0]:
        try:
            decoded = base64.b64decode(basic[6:].strip(), validate=True).decode("utf-8")
            client_id, _, secret = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError):
            client_id, secret = "", ""
        candidate = settings.clients.get(client_id)
        client = candidate if candidate and candidate.secret_matches(secret) else None
    elif methods[1]:
        candidate = settings.clients.get(form.get("client_id", ""))
        client = (
            candidate if candidate and candidate.secret_matches(form["client_secret"]) else None
        )
    else:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return _oauth_error(400, "invalid_request", "client_assertion_type must be jwt-bearer")
        urls = {token_url(request)}
        try:
            client = verify_assertion(
                form["client_assertion"], dict(settings.clients), urls, request.app.state.replay
            )
        except TokenError as exc:
            return _oauth_error(401, "invalid_client", str(exc))
    if client is None:
        return _oauth_error(
            401, "invalid_client", "client authentication failed",
            **{"WWW-Authenticate": 'Basic realm="fhir-adapter"'},
        )  # fmt: skip
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
    answer = {
        "access_token": access,
        "token_type": "bearer",
        "expires_in": lifetime,
        "scope": format_scopes(granted),
    }
    return Response(orjson.dumps(answer), 200, _NO_STORE, media_type="application/json")
