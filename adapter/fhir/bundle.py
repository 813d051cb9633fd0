"""Bundles of type ``searchset`` (https://hl7.org/fhir/R4/bundle.html), as plain dicts."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import orjson

from adapter.fhir.outcome import Issue, operation_outcome

__all__ = ["Serialised", "searchset"]


class Serialised(dict[str, Any]):
    """A FHIR resource dict that also holds its own JSON, made once: a Bundle embeds the
    bytes (``orjson.Fragment``) instead of serialising the resource again. It carries its
    ``meta.versionId`` (see :mod:`adapter.fhir.versions`), set before it is frozen."""

    __slots__ = ("fragment",)

    fragment: orjson.Fragment


def searchset(
    base: str,
    *,
    matches: list[dict[str, Any]],
    includes: list[dict[str, Any]] = (),  # type: ignore[assignment]
    issues: list[Issue] = (),  # type: ignore[assignment]
    total: int | None = None,
    links: dict[str, str],
) -> dict[str, Any]:
    """``links``: relation -> URL (``self``, ``next``, ``previous``)."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": os.urandom(16).hex(),
        "meta": {"lastUpdated": datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"},
        "type": "searchset",
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": rel, "url": url} for rel, url in links.items()]
    entries = [_entry(base, r, "match") for r in matches]
    entries += [_entry(base, r, "include") for r in includes]
    if issues:
        entries.append({"resource": operation_outcome(*issues), "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return bundle


# Shared by every entry of every Bundle: they are serialised, never changed.
_MODES = {mode: {"mode": mode} for mode in ("match", "include", "outcome")}


def _entry(base: str, resource: dict[str, Any], mode: str) -> dict[str, Any]:
    return {
        "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
        # A resource that carries its own JSON is embedded as those bytes.
        "resource": getattr(resource, "fragment", resource),
        "search": _MODES[mode],
    }
