"""Operators of the console (``[operators.NAME] password_hash``), apart from API clients.

A password is kept only as a standard salted hash, never in the file itself:

- ``scrypt$N$r$p$SALT$HASH`` (hashlib.scrypt; SALT and HASH in URL-safe base64), as
  ``fhir-adapter hash-password`` writes it, or
- ``pbkdf2_sha256$ITERATIONS$SALT$HASH`` (hashlib.pbkdf2_hmac), the form Django and
  passlib also write.

Checking compares in constant time; an unknown operator's attempt costs the same hash.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OPERATOR_KEYS", "Operator", "check_password", "hash_password", "load_operators"]

OPERATOR_KEYS: dict[str, Any] = {"password_hash": str}
OPERATOR_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SCRYPT = (2**15, 8, 1)
_MAX_MEMORY = 256 << 20


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``password`` as a ``scrypt$...`` hash for ``[operators.NAME] password_hash``."""
    n, r, p = _SCRYPT
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAX_MEMORY, dklen=32
    )
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def _parsed(text: str) -> tuple[str, tuple[int, ...], bytes, bytes]:
    """(scheme, parameters, salt, digest); ``ValueError`` for any other shape."""
    parts = text.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = (int(x) for x in parts[1:4])
            if n < 2 or n & (n - 1) or not (1 <= r <= 64 and 1 <= p <= 16):
                raise ValueError
            return "scrypt", (n, r, p), _unb64(parts[4]), _unb64(parts[5])
        if parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            iterations = int(parts[1])
            if not 1 <= iterations <= 10_000_000:
                raise ValueError
            salt = parts[2].encode()  # Django keeps the salt as text
            return "pbkdf2_sha256", (iterations,), salt, base64.b64decode(parts[3])
    except (ValueError, binascii.Error):
        pass
    raise ValueError("not a scrypt$N$r$p$SALT$HASH or pbkdf2_sha256$ITERATIONS$SALT$HASH hash")


def _digest(scheme: str, params: tuple[int, ...], salt: bytes, password: str, size: int) -> bytes:
    if scheme == "scrypt":
        n, r, p = params
        return hashlib.scrypt(
            password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAX_MEMORY, dklen=size
        )
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, params[0], dklen=size)


@dataclass(frozen=True)
class Operator:
    name: str
    password_hash: str = field(repr=False)

    def password_matches(self, password: str) -> bool:
        scheme, params, salt, digest = _parsed(self.password_hash)
        return hmac.compare_digest(_digest(scheme, params, salt, password, len(digest)), digest)


@functools.cache
def _dummy() -> Operator:
    return Operator("-", hash_password("-", salt=b"\0" * 16))


def check_password(operators: Mapping[str, Operator], name: str, password: str) -> bool:
    """Whether ``name`` is an operator with that password; an unknown name costs as much
    as a known one (no timing tells which names exist)."""
    operator = operators.get(name)
    matched = (operator or _dummy()).password_matches(password)
    return operator is not None and matched


def load_operators(raw: Any) -> tuple[dict[str, Operator], list[str]]:
    """Operators from the ``[operators.*]`` tables (their keys already checked), and a
    line per problem (a name or a hash of the wrong shape; never the hash itself)."""
    operators: dict[str, Operator] = {}
    problems: list[str] = []
    if not isinstance(raw, Mapping):
        return {}, ["[operators] must hold [operators.NAME] tables"]
    for name, table in raw.items():
        where = f"[operators.{name}]"
        if not OPERATOR_NAME.fullmatch(name):
            problems.append(f"{where}: an operator's name is 1-64 letters, digits or _.@-")
            continue
        value = table.get("password_hash") if isinstance(table, Mapping) else None
        if not isinstance(value, str):
            problems.append(f"{where} password_hash is required")
            continue
        try:
            _parsed(value)
        except ValueError as exc:
            problems.append(f"{where} password_hash: {exc}")
            continue
        operators[name] = Operator(name, value)
    return operators, problems
