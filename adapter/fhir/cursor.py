"""Opaque, signed, stateless paging cursors.

A cursor carries the whole state of a search page (the search itself, each source's own
position, the total when known) so any worker can serve the next page with no shared
store. It is ``base64url(deflate(json)) "." base64url(hmac-sha256)``: readable by nobody's code
but ours, and a changed byte is refused (:class:`InvalidCursor`), never trusted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import zlib
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["CursorCodec", "InvalidCursor"]

_TAG = 16  # bytes of the HMAC kept: 128 bits


class InvalidCursor(ValueError):
    """A cursor that was tampered with, expired, or not made by this deployment."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    def __init__(
        self, key: bytes, *, max_age: float = 24 * 3600, clock: Callable[[], float] = time.time
    ) -> None:
        if len(key) < 32:
            raise ValueError("a cursor key needs at least 32 bytes")
        self._key = key
        self._max_age = max_age
        self._clock = clock

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_TAG]

    def encode(self, state: dict[str, Any]) -> str:
        payload = zlib.compress(orjson.dumps({"at": int(self._clock()), "s": state}))
        return f"{_b64(payload)}.{_b64(self._tag(payload))}"

    def decode(self, cursor: str) -> dict[str, Any]:
        body, dot, tag = cursor.partition(".")
        if not dot or len(cursor) > 8192:
            raise InvalidCursor("not a cursor of this server")
        try:
            payload, signature = _unb64(body), _unb64(tag)
        except (ValueError, UnicodeEncodeError):
            raise InvalidCursor("not a cursor of this server") from None
        if not hmac.compare_digest(signature, self._tag(payload)):
            raise InvalidCursor("the cursor was altered or is not from this server")
        try:
            data = orjson.loads(zlib.decompress(payload))
            issued, state = data["at"], data["s"]
        except (zlib.error, orjson.JSONDecodeError, KeyError, TypeError):
            raise InvalidCursor("not a cursor of this server") from None
        if self._clock() - issued > self._max_age:
            raise InvalidCursor("the cursor has expired; start the search again")
        return state
