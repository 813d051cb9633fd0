"""What the upstream says of itself and of its failures: the parts of its
CapabilityStatement the connector uses, and its error answers as the core's typed
vendor errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from adapter.transport import NotFound, VendorError, classify_status, json_object

__all__ = ["Statement", "classify", "parse_statement"]


@dataclass
class Statement:
    """What the upstream's CapabilityStatement declares, per resource type."""

    params: dict[str, frozenset[str]] = field(default_factory=dict)
    interactions: dict[str, frozenset[str]] = field(default_factory=dict)
    conditional_create: frozenset[str] = frozenset()
    versioned: frozenset[str] = frozenset()


def parse_statement(body: Any) -> Statement:
    """The parts of a CapabilityStatement this connector uses (anything else ignored)."""
    if not isinstance(body, dict) or body.get("resourceType") != "CapabilityStatement":
        raise ValueError("not a CapabilityStatement")
    found = Statement()
    conditional, versioned = set(), set()
    for rest in body.get("rest") or ():
        if not isinstance(rest, dict) or rest.get("mode") != "server":
            continue
        for entry in rest.get("resource") or ():
            kind = entry.get("type") if isinstance(entry, dict) else None
            if not isinstance(kind, str):
                continue
            found.params[kind] = frozenset(
                p["name"]
                for p in entry.get("searchParam") or ()
                if isinstance(p, dict) and isinstance(p.get("name"), str)
            ) | {"_id"}
            found.interactions[kind] = frozenset(
                i["code"]
                for i in entry.get("interaction") or ()
                if isinstance(i, dict) and isinstance(i.get("code"), str)
            )
            if entry.get("conditionalCreate") is True:
                conditional.add(kind)
            if entry.get("versioning") in ("versioned", "versioned-update"):
                versioned.add(kind)
    found.conditional_create = frozenset(conditional)
    found.versioned = frozenset(versioned)
    return found


def classify(source: str, response: httpx.Response) -> VendorError | None:
    """An upstream's error: its OperationOutcome's issue code kept, never its text (it
    may quote what was sent). A 410 is a resource that is gone: not found."""
    if response.status_code == 410:
        return NotFound(source, 410, "gone")
    body = json_object(response)
    codes: tuple[str, ...] = ()
    if body is not None and body.get("resourceType") == "OperationOutcome":
        codes = tuple(
            i["code"]
            for i in body.get("issue") or ()
            if isinstance(i, dict) and isinstance(i.get("code"), str)
        )
    if response.status_code in (400, 409, 422):
        return classify_status(source, response, error_codes=codes)
    if response.status_code == 403:
        # Which permission is the upstream's own business; the type asked for is named.
        kinds = [p for p in response.request.url.path.split("/") if p[:1].isupper()]
        named = f"access to {kinds[0]}" if kinds else None
        return classify_status(source, response, permission=named)
    return None
