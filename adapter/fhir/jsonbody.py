"""JSON bodies as this service reads them: RFC 8259 objects whose names are unique.

JSON leaves a repeated name to the parser (most keep the last value silently), so that two
readers of the same body may see different resources: a proxy or an audit log one, this
service another. Every body the service reads goes through :func:`loads`, which refuses
a repeated name in any object, naming it (when it is a plain element name) and where.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

__all__ = ["BodyRefused", "loads"]

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")


class BodyRefused(ValueError):
    """JSON this service does not read: an object that names a member twice, or nesting
    deeper than Python's parser follows. The message says which, quoting no value."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            shown = f"{name!r}" if _PLAIN.fullmatch(name) else "a name"
            raise BodyRefused(f"the body's JSON gives {shown} twice in one object")
        out[name] = value
    return out


def loads(raw: bytes | str) -> Any:
    """The JSON value of ``raw``: ``orjson.JSONDecodeError`` for what is not JSON (as
    orjson reads it: no NaN, nesting to 1024 levels), :class:`BodyRefused` for an
    object that repeats a name."""
    value = orjson.loads(raw)
    if isinstance(value, dict | list):
        try:
            json.loads(raw, object_pairs_hook=_unique)
        except RecursionError:
            raise BodyRefused("the body's JSON is nested too deeply to be read") from None
    return value
