"""Global FHIR ids: one reversible codec for every source, with no lookup table.

An id is the source name and the vendor's own id, plus the partition the vendor's id lives
in where it is only unique within one (Leyr: the care unit), joined by ``.``:

    nyra-city.9b2f6c1e-4d1a-4a9e-8f00-0c1d2e3f4a5b        source . vendor id
    leyr-webdoc.-L0-5F1.p-1001                             source . scope . vendor id

Source names match ``[a-z0-9-]{1,32}`` and so never hold a dot. Each other part is written
*raw* when it matches ``[A-Za-z0-9][A-Za-z0-9-]*`` (UUIDs, most vendor ids), and *escaped*
otherwise: a leading ``-`` marks the part, ASCII letters and digits stand for themselves and
every other character becomes ``-XX`` per UTF-8 byte, upper-case hex (``_`` -> ``-5F``,
``:`` -> ``-3A``, ``-`` -> ``-2D``). Every part has exactly one spelling, so decoding is
exact and ``encode(decode(s)) == s`` for every id that decodes.

An id that would not fit FHIR's 64 characters raises :class:`IdTooLong`: never truncated,
never hashed, so two vendor ids can never collide. A 36-character UUID fits with any source
name of up to 27 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from mappings.errors import IdTooLong, MalformedId

__all__ = [
    "FHIR_ID",
    "SOURCE_NAME",
    "GlobalId",
    "SourceIds",
    "decode_id",
    "encode_id",
]

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
SOURCE_NAME = re.compile(r"[a-z0-9-]{1,32}")
_RAW_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_ESCAPED_PART = re.compile(r"-(?:[A-Za-z0-9]|-[0-9A-F]{2})*")
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_HEX_TOKEN = re.compile(r"-([0-9A-F]{2})|([A-Za-z0-9])")


@dataclass(frozen=True, slots=True)
class GlobalId:
    """What a global id names: a source, the vendor's id and, if any, its scope."""

    source: str
    vendor_id: str
    scope: str | None = None


def _encode_part(value: str) -> str:
    if _RAW_PART.fullmatch(value):
        return value
    return _escape(value)


@lru_cache(maxsize=1024)  # care units and branches recur on every record of a source
def _escape(value: str) -> str:
    out = ["-"]
    for ch in value:
        if ch in _ALNUM:
            out.append(ch)
        else:
            out.extend(f"-{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def _decode_part(part: str) -> str:
    if _RAW_PART.fullmatch(part):
        return part
    if not _ESCAPED_PART.fullmatch(part):
        raise MalformedId("a part is neither raw nor escaped")
    buf = bytearray()
    for hexpair, char in _HEX_TOKEN.findall(part[1:]):
        buf.extend(bytes.fromhex(hexpair) if hexpair else char.encode("ascii"))
    try:
        value = buf.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedId("an escaped part is not UTF-8") from None
    if _encode_part(value) != part:
        raise MalformedId("a part is not in its canonical spelling")
    return value


class SourceIds:
    """The codec bound to one source: checks the name once, and remembers scope spellings
    (a source has few scopes and names them on every record)."""

    __slots__ = ("_prefix", "_scopes", "source")

    def __init__(self, source: str) -> None:
        if not SOURCE_NAME.fullmatch(source):
            raise MalformedId("source names match [a-z0-9-]{1,32}")
        self.source = source
        self._prefix = source + "."
        self._scopes: dict[str, str] = {}

    def encode(self, vendor_id: str, scope: str | None = None) -> str:
        if scope is None:
            encoded = self._prefix + _encode_part(vendor_id)
        else:
            prefix = self._scopes.get(scope)
            if prefix is None:
                prefix = self._prefix + _encode_part(scope) + "."
                if len(self._scopes) < 1024:
                    self._scopes[scope] = prefix
            encoded = prefix + _encode_part(vendor_id)
        if len(encoded) > 64:
            raise IdTooLong(len(encoded))
        return encoded


def encode_id(source: str, vendor_id: str, scope: str | None = None) -> str:
    """The global FHIR id of ``vendor_id`` (within ``scope``) at ``source``."""
    return SourceIds(source).encode(vendor_id, scope)


def decode_id(fhir_id: str) -> GlobalId:
    """The inverse of :func:`encode_id`; raises :class:`MalformedId` for anything else."""
    if not isinstance(fhir_id, str) or not FHIR_ID.fullmatch(fhir_id):
        raise MalformedId("FHIR ids match [A-Za-z0-9-.]{1,64}")
    parts = fhir_id.split(".")
    if len(parts) == 2:
        source, vendor_id = parts
        scope = None
    elif len(parts) == 3:
        source, scope, vendor_id = parts
    else:
        raise MalformedId("expected source.id or source.scope.id")
    if not SOURCE_NAME.fullmatch(source):
        raise MalformedId("source names match [a-z0-9-]{1,32}")
    return GlobalId(
        source=source,
        vendor_id=_decode_part(vendor_id),
        scope=None if scope is None else _decode_part(scope),
    )
