"""What a write sent that the source did not keep.

A vendor holds less than FHIR says (Nyra: one name string, one phone, one free-text
address; Leyr: no marital status): a connector stores what its vendor can hold and reads
the record back. Comparing what was sent with what was read back names each element the
write lost, so the client hears of it (a warning issue) instead of finding out later.

Elements the server sets (``id``, ``meta``, ``text``) are not compared. An element is
*not kept* when it was sent and is absent from what was stored, compared element by
element, through objects and lists (by position). A primitive that comes back changed
(a name's text composed, a time normalised) is kept in another form, not lost.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SERVER_SET", "not_kept"]

# Elements a server sets, not the client: never something a write lost or changed.
SERVER_SET = frozenset({"resourceType", "id", "meta", "text"})
_MAX = 50  # elements named at most: past that, the first ones say enough


def not_kept(resource_type: str, sent: dict[str, Any], stored: dict[str, Any]) -> list[str]:
    """The FHIRPath of each element of ``sent`` that ``stored`` does not hold."""
    out: list[str] = []
    for key, value in sent.items():
        if key in SERVER_SET or key.startswith("_"):
            continue
        _compare(f"{resource_type}.{key}", value, stored.get(key), out)
    return out[:_MAX]


def _compare(path: str, sent: Any, stored: Any, out: list[str]) -> None:
    if sent is None or sent == [] or sent == {}:
        return  # nothing was sent
    if stored is None or stored == [] or stored == {}:
        out.append(path)
        return
    if isinstance(sent, dict) and isinstance(stored, dict):
        for key, value in sent.items():
            if not key.startswith("_"):
                _compare(f"{path}.{key}", value, stored.get(key), out)
    elif isinstance(sent, list) and isinstance(stored, list):
        for index, value in enumerate(sent):
            there = stored[index] if index < len(stored) else None
            _compare(f"{path}[{index}]", value, there, out)
