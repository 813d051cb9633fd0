"""API clients of the facade (``[clients.NAME]``): how each proves who it is, its SMART
scopes, the sources it may use and its rate limit.

A client secret is kept only as a salted digest, compared in constant time: no memory
dump, repr or log line holds it.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson

from adapter.auth.scopes import Grant, parse_scopes

__all__ = ["CLIENT_KEYS", "Client", "load_clients"]

_SALT = secrets.token_bytes(16)

# What a [clients.NAME] table takes, each key with its type (a Python type standing for
# the TOML one; the settings check every table against it, see adapter.connectors.config):
# any other key is an error naming the nearest.
CLIENT_KEYS: dict[str, Any] = {
    "secret": str,
    "jwks": str | dict,  # a JWK set as JSON text, or as a table
    "scopes": list[str],
    "sources": list[str],
    "rate_limit": {"per_minute": int},
    "require_if_match": bool,
    # Its part of each vendor budget beside other clients waiting for it (default 1).
    "weight": float,
    "max_exports": int,  # export jobs it may have running at once (default 2)
    "max_subscriptions": int,  # Subscriptions it may hold (default 20)
}


def _digest(secret: str) -> bytes:
    return hashlib.sha256(_SALT + secret.encode()).digest()


@dataclass(frozen=True)
class Client:
    name: str
    scopes: Grant
    sources: frozenset[str]
    per_minute: int = 600
    _secret: bytes | None = field(default=None, repr=False)
    _keys: Any = field(default=None, repr=False)  # jwt.PyJWKSet for private_key_jwt
    # Its updates must name the version they change (If-Match), so that one partner does
    # not overwrite another's change unseen.
    require_if_match: bool = False
    weight: float = 1.0
    max_exports: int = 2
    max_subscriptions: int = 20

    def secret_matches(self, given: str) -> bool:
        if self._secret is None:
            return False
        return hmac.compare_digest(self._secret, _digest(given))

    def key_for(self, kid: str | None) -> Any | None:
        """The public key a client assertion names (by ``kid``; the only one if unnamed)."""
        if self._keys is None:
            return None
        keys = self._keys.keys
        if kid is None:
            return keys[0] if len(keys) == 1 else None
        return next((k for k in keys if k.key_id == kid), None)

    def __repr__(self) -> str:
        return f"Client({self.name!r}, sources={sorted(self.sources)})"


def _unknown_key(where: str, key: str) -> str:
    near = difflib.get_close_matches(key, list(CLIENT_KEYS), n=1)
    hint = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(sorted(CLIENT_KEYS))}"
    return f"{where}: unknown key {key!r} ({hint})"


def load_clients(raw: Mapping[str, Any], sources: list[str]) -> dict[str, Client]:
    """Clients from the ``[clients.*]`` tables; ``ValueError`` names the key at fault."""
    out = {}
    for name, table in raw.items():
        where = f"[clients.{name}]"
        if not isinstance(table, Mapping):
            raise ValueError(f"{where} must be a table")
        unknown = sorted(set(table) - set(CLIENT_KEYS))
        if unknown:
            raise ValueError("\n".join(_unknown_key(where, key) for key in unknown))
        secret, jwks = table.get("secret"), table.get("jwks")
        if not secret and not jwks:
            raise ValueError(f"{where} needs a secret or a jwks (for private_key_jwt)")
        if secret is not None and (not isinstance(secret, str) or len(secret) < 16):
            raise ValueError(f"{where}: secret must be at least 16 characters")
        keys = None
        if jwks:
            try:
                keys = jwt.PyJWKSet.from_dict(orjson.loads(jwks) if isinstance(jwks, str) else jwks)
            except (orjson.JSONDecodeError, jwt.PyJWKSetError, jwt.InvalidKeyError) as exc:
                raise ValueError(
                    f"{where}: jwks is not a usable JWK set ({type(exc).__name__})"
                ) from None
        try:
            scopes = parse_scopes(list(table.get("scopes") or []))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        granted = table.get("sources", list(sources))
        unknown_sources = set(granted) - set(sources)
        if unknown_sources:
            raise ValueError(f"{where}: unknown source(s) {', '.join(sorted(unknown_sources))}")
        per_minute = int((table.get("rate_limit") or {}).get("per_minute", 600))
        if per_minute < 1:
            raise ValueError(f"{where}: rate_limit.per_minute must be >= 1")
        require_if_match = table.get("require_if_match", False)
        if not isinstance(require_if_match, bool):
            raise ValueError(f"{where}: require_if_match must be true or false")
        weight = table.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            raise ValueError(f"{where}: weight must be a number above 0")
        quotas = {}
        for key, default in (("max_exports", 2), ("max_subscriptions", 20)):
            value = table.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{where}: {key} must be a whole number >= 0")
            quotas[key] = value
        out[name] = Client(
            name,
            scopes,
            frozenset(granted),
            per_minute,
            _digest(secret) if secret else None,
            keys,
            require_if_match,
            float(weight),
            **quotas,
        )
    return out
