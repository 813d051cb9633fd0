"""HumanName helpers: a best-effort split of a one-string name."""

from __future__ import annotations

from typing import Any

__all__ = ["join_name", "pick_name", "split_name"]

# Honorifics seen in front of names in Indian hospital records; compared case-insensitively
# and without a trailing full stop.
_PREFIXES = frozenset({"dr", "mr", "mrs", "ms", "miss", "prof", "shri", "sri", "smt", "kumari"})


def split_name(text: str) -> dict[str, Any]:
    """A HumanName whose ``text`` is ``text`` exactly, with prefix/given/family guessed.

    Leading honorifics become ``prefix``; of the rest, the last word is the family name and
    the others are given names. A single word is taken as a given name, since many people
    in India go by one name and it is not a family name.
    """
    name: dict[str, Any] = {"text": text}
    words = text.split()
    prefix: list[str] = []
    while len(words) > 1 and words[0].rstrip(".").lower() in _PREFIXES:
        prefix.append(words.pop(0))
    if prefix:
        name["prefix"] = prefix
    if len(words) == 1:
        name["given"] = words
    elif words:
        name["family"] = words[-1]
        name["given"] = words[:-1]
    return name


def join_name(name: dict[str, Any]) -> str | None:
    """One string for a HumanName: its ``text``, else its parts in display order."""
    text = name.get("text")
    if isinstance(text, str) and text.strip():
        return text
    parts = [*name.get("prefix", ()), *name.get("given", ()), name.get("family")]
    parts = [p for p in parts if isinstance(p, str) and p.strip()]
    return " ".join(parts) or None


def pick_name(names: list[Any]) -> dict[str, Any] | None:
    """The name a vendor with room for one should keep: official, else usual, else first."""
    candidates = [n for n in names if isinstance(n, dict)]
    for use in ("official", "usual"):
        for name in candidates:
            if name.get("use") == use:
                return name
    return candidates[0] if candidates else None
