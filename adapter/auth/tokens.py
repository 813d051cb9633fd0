"""Access tokens (short-lived JWTs this server signs) and client assertions (JWTs a client
signs with its own key: SMART Backend Services' ``private_key_jwt``)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import jwt

from adapter.auth.clients import Client
from adapter.auth.scopes import Grant, format_scopes, parse_scopes
from adapter.ops.caches import Table

__all__ = ["ASSERTION_TYPE", "AssertionReplay", "TokenError", "TokenService", "verify_assertion"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_ISSUER = "fhir-adapter"
_ASSERTION_ALGORITHMS = ["RS384", "ES384"]  # what SMART Backend Services asks for


TOKENS_BYTES = 1 << 20  # tokens verified already


class TokenError(Exception):
    """Why a token or assertion is refused (said to the client in general terms only)."""


class TokenService:
    def __init__(
        self, key: bytes, audience: str, minutes: float = 5, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = key
        self.audience = audience
        self.lifetime = int(minutes * 60)
        self._clock = clock
        # Tokens already verified (a token is a few hundred bytes; a client sends its own
        # again and again until it expires).
        self._verified: Table[str, tuple[str, Grant, float, float]] = Table(
            "tokens", TOKENS_BYTES, weight=lambda token, _: 2 * len(token) + 1024
        )

    def issue(self, client: Client, grant: Grant) -> tuple[str, int]:
        now = int(self._clock())
        claims = {
            "iss": _ISSUER,
            "sub": client.name,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime,
            "jti": secrets.token_urlsafe(12),
            "scope": format_scopes(grant),
        }
        return jwt.encode(claims, self._key, algorithm="HS256"), self.lifetime

    def verify(self, token: str) -> tuple[str, Grant]:
        """(client name, granted scopes) of a valid token; :class:`TokenError` otherwise.
        A token already verified is not checked again until its time is up."""
        known = self._verified.get(token)
        if known is not None:
            name, grant, not_before, expires = known
            if not_before <= self._clock() < expires:
                return name, grant
            self._verified.pop(token)
        name, grant, not_before, expires = self._verify(token)
        self._verified.put(token, (name, grant, not_before, expires))
        return name, grant

    def _verify(self, token: str) -> tuple[str, Grant, float, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        if header.get("alg") != "HS256":
            raise TokenError("token not signed by this server")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=self.audience,
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "nbf", "sub", "aud", "iss"]},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise TokenError("token for another audience") from None
        except jwt.PyJWTError:
            raise TokenError("invalid token") from None
        try:
            grant = parse_scopes(claims.get("scope", ""))
        except ValueError:
            raise TokenError("invalid token") from None
        return claims["sub"], grant, float(claims["nbf"]), float(claims["exp"])


class AssertionReplay:
    """``jti``s of client assertions seen, until they expire: each is usable once."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._seen: dict[str, float] = {}
        self._clock = clock

    def first_use(self, client: str, jti: str, expires: float) -> bool:
        now = self._clock()
        self._seen = {k: v for k, v in self._seen.items() if v > now}
        key = f"{client}\0{jti}"
        if key in self._seen:
            return False
        self._seen[key] = expires
        return True


def verify_assertion(
    assertion: str,
    clients: dict[str, Client],
    token_urls: set[str],
    replay: AssertionReplay,
    clock: Callable[[], float] = time.time,
) -> Client:
    """The client a ``private_key_jwt`` assertion proves (RFC 7523; SMART Backend Services:
    ``iss`` = ``sub`` = client id, ``aud`` = the token URL, ``exp`` at most 5 minutes
    ahead, a ``jti`` used once)."""
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenError("malformed client assertion") from None
    if header.get("alg") not in _ASSERTION_ALGORITHMS:
        raise TokenError("client assertion must be signed with RS384 or ES384")
    issuer = unverified.get("iss")
    # A non-string iss (a JSON array, say) names no client: refused, not a TypeError.
    client = clients.get(issuer) if isinstance(issuer, str) else None
    if client is None or unverified.get("sub") != client.name:
        raise TokenError("unknown client")
    key = client.key_for(header.get("kid"))
    if key is None:
        raise TokenError("unknown key id")
    try:
        claims = jwt.decode(
            assertion,
            key.key,
            algorithms=_ASSERTION_ALGORITHMS,
            audience=list(token_urls),
            options={"require": ["exp", "iss", "sub", "aud", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("client assertion expired") from None
    except jwt.InvalidAudienceError:
        raise TokenError("client assertion for another audience") from None
    except jwt.PyJWTError:
        raise TokenError("invalid client assertion") from None
    expires = claims["exp"]
    if not isinstance(expires, int | float) or isinstance(expires, bool):
        raise TokenError("client assertion exp must be a number of seconds")
    if expires - clock() > 300:
        raise TokenError("client assertion lives longer than 5 minutes")
    if not replay.first_use(client.name, str(claims["jti"]), float(expires)):
        raise TokenError("client assertion already used")
    return client
