"""Opaque, signed, stateless paging cursors.

A cursor carries the whole state of a search page (:class:`SearchState`: the search
itself, each source's own position, the total when known) so any worker can serve the
next page with no shared store. It is ``base64url(deflate(json)) "." base64url(hmac-sha256)``:
readable by nobody's code but ours, and a changed byte is refused (:class:`InvalidCursor`),
never trusted. This module is the only place a state becomes a cursor and back.
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

from adapter.fhir.dates import parse_date
from adapter.fhir.search import (
    DATE_PREFIXES,
    Position,
    SearchParam,
    SearchRequest,
    SearchState,
    Shaping,
)
from adapter.fhir.shaping import sort_keys

__all__ = ["CursorCodec", "InvalidCursor"]

_TAG = 16  # bytes of the HMAC kept: 128 bits


class InvalidCursor(ValueError):
    """A cursor that was tampered with, expired, or not made by this deployment."""


def _deflate(data: bytes) -> bytes:
    # A 512-byte window and the least memory: a state is a few hundred bytes, and zlib's
    # defaults spend far more setting up their 32 KiB window than compressing it. Any
    # zlib stream decompresses with the default window.
    packer = zlib.compressobj(6, zlib.DEFLATED, 9, 1)
    return packer.compress(data) + packer.flush()


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
        payload = _deflate(orjson.dumps({"at": int(self._clock()), "s": state}))
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
        if not isinstance(issued, int) or not isinstance(state, dict):
            raise InvalidCursor("not a cursor of this server")
        if self._clock() - issued > self._max_age:
            raise InvalidCursor("the cursor has expired; start the search again")
        return state

    def encode_state(self, state: SearchState) -> str:
        return self.encode(_state_json(state))

    def decode_state(self, cursor: str) -> SearchState:
        """The state a cursor of ours carries (:class:`InvalidCursor` for anything else)."""
        data = self.decode(cursor)
        try:
            return _state_of(data)
        except (KeyError, TypeError, ValueError, IndexError):
            raise InvalidCursor("not a cursor of this server") from None


# Short keys: a cursor travels in every next/previous link.
def _position_json(position: Position) -> dict[str, Any]:
    return {
        "at": dict(position.at),
        "done": sorted(position.done),
        "tot": position.total,
        "first": position.first,
    }


def _state_json(state: SearchState) -> dict[str, Any]:
    request = state.request
    out: dict[str, Any] = {
        "t": request.resource_type,
        "p": [_param_json(p) for p in request.params],
        "n": request.count,
        "inc": list(state.includes),
        "rev": list(state.revincludes),
        "order": list(state.order),
        "share": list(state.shares),
        "lanes": state.lanes,
        "skip": state.skipped,
        "cl": state.client,
        **_position_json(state.position),
    }
    if state.previous is not None:
        out["prev"] = _position_json(state.previous)
    shaping = state.shaping
    if shaping.updated:
        out["lu"] = [_param_json(p) for p in shaping.updated]
    if shaping.sort:
        out["so"] = [[key, descending] for key, descending in shaping.sort]
    if shaping.elements:
        out["el"] = list(shaping.elements)
    return out


def _position_of(data: dict[str, Any]) -> Position:
    at = data["at"]
    if not isinstance(at, dict) or not all(isinstance(v, str) for v in at.values()):
        raise TypeError("at")
    total = data["tot"]
    if total is not None and not isinstance(total, int):
        raise TypeError("tot")
    return Position(dict(at), frozenset(str(n) for n in data["done"]), total, bool(data["first"]))


def _param_json(param: SearchParam) -> list[Any]:
    out = [param.name, param.modifier, param.prefix, list(param.values)]
    if param.prefixes:  # ORed dates with a prefix each
        out.append(list(param.prefixes))
    return out


def _param_of(item: list[Any]) -> SearchParam:
    name, modifier, prefix, values, *more = item
    values = tuple(str(v) for v in values)
    prefixes = tuple(str(p) for p in more[0]) if more else ()
    if prefixes and (len(prefixes) != len(values) or set(prefixes) - set(DATE_PREFIXES)):
        raise ValueError("prefixes")
    # Dates are parsed once more here, from the cursor, as they were from the request.
    dated = prefix is not None or prefixes
    dates = tuple(parse_date(v) for v in values) if dated else ()
    return SearchParam(str(name), values, modifier, prefix, dates, prefixes)


def _state_of(data: dict[str, Any]) -> SearchState:
    request = SearchRequest(
        str(data["t"]), tuple(_param_of(p) for p in data["p"]), count=int(data["n"])
    )
    sort = tuple((str(key), bool(descending)) for key, descending in data.get("so", ()))
    if any(key not in sort_keys(request.resource_type) for key, _ in sort):
        raise ValueError("so")  # a key this version does not sort by
    previous = data.get("prev")
    return SearchState(
        request,
        order=tuple(str(n) for n in data["order"]),
        shares=tuple(int(n) for n in data["share"]),
        lanes=int(data["lanes"]),
        includes=tuple(str(i) for i in data["inc"]),
        # Cursors made before _revinclude was served have none.
        revincludes=tuple(str(i) for i in data.get("rev", ())),
        skipped=int(data["skip"]),
        client=data["cl"],
        position=_position_of(data),
        previous=_position_of(previous) if previous is not None else None,
        shaping=Shaping(
            tuple(_param_of(p) for p in data.get("lu", ())),
            sort,
            tuple(str(e) for e in data.get("el", ())),
        ),
    )
