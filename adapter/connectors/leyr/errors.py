"""Leyr's RFC 7807-like error bodies as typed vendor errors."""

from __future__ import annotations

import httpx

from adapter.transport import VendorError, classify_status, json_object

__all__ = ["classify"]


def classify(source: str, response: httpx.Response) -> VendorError | None:
    """Leyr errors: ``{"code", "title", "status", "errors": [{"error_code", ...}]}``
    (docs.leyr.io/api/error-handling). The ``error_code``s are kept; the free-text
    ``detail`` is not, since it may quote what was sent."""
    body = json_object(response)
    if body is None:
        return None
    codes = tuple(
        e["error_code"]
        for e in body.get("errors") or ()
        if isinstance(e, dict) and isinstance(e.get("error_code"), str)
    )
    if not codes and isinstance(body.get("code"), str):
        codes = (body["code"],)
    title = body.get("title") if isinstance(body.get("title"), str) else None
    return classify_status(source, response, error_codes=codes, detail=title)
