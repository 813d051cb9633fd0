"""Vendor credentials: held so that no repr, str or log line can show them."""

from __future__ import annotations

import hashlib
from typing import NoReturn

__all__ = ["LeyrCredentials", "NyraKey", "Secret"]


class Secret:
    """A string that never prints itself. ``reveal()`` is the one way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError("a secret must be a non-empty string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:  # no pickling a secret into a cache or a crash dump
        raise TypeError("secrets cannot be pickled")


def _label(public: str) -> str:
    return "key-" + hashlib.sha256(public.encode()).hexdigest()[:8]


class LeyrCredentials:
    """Leyr: ``x-leyr-client-id`` and ``x-leyr-client-secret`` on every request; the secret
    is the customer's encryption key (docs.leyr.io, security)."""

    __slots__ = ("_headers", "client_id", "label")

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = Secret(client_id)
        self.label = _label(client_id)
        secret = Secret(client_secret)
        self._headers = (("x-leyr-client-id", self.client_id), ("x-leyr-client-secret", secret))

    def headers(self) -> dict[str, str]:
        return {name: value.reveal() for name, value in self._headers}

    def __repr__(self) -> str:
        return f"LeyrCredentials({self.label})"


class NyraKey:
    """Nyra's three locks: ``x-api-key``, ``x-api-secret`` and the hospital token as a
    bearer (nyra.md, Transport and auth). ``label`` names the key in logs and metrics."""

    __slots__ = ("_headers", "label")

    def __init__(self, key: str, secret: str, token: str) -> None:
        self.label = _label(key)
        self._headers = (
            ("x-api-key", Secret(key)),
            ("x-api-secret", Secret(secret)),
            ("authorization", Secret(f"Bearer {token}")),
        )

    def headers(self) -> dict[str, str]:
        return {name: value.reveal() for name, value in self._headers}

    def __repr__(self) -> str:
        return f"NyraKey({self.label})"
