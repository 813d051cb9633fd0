"""Leyr's RFC 7807-like error bodies as typed vendor errors."""

from __future__ import annotations

import httpx

from adapter.transport import NotFound, VendorError, classify_status, json_object

__all__ = ["classify"]

# Leyr answers an id in the path that names no record with 400 and one of these codes
# (leyr.md, Errors): for a read or a change of that record it is "not found", not a
# request the vendor could not take. In a new booking's body it stays a refusal.
_NOT_FOUND_CODES = frozenset({"INVALID_PATIENT_ID", "INVALID_APPOINTMENT_ID"})


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
    unknown_id = response.status_code == 400 and codes and set(codes) <= _NOT_FOUND_CODES
    if unknown_id and _method(response) != "POST":
        return NotFound(source, 404, "not found")
    return classify_status(source, response, error_codes=codes, detail=title)


def _method(response: httpx.Response) -> str | None:
    try:
        return response.request.method
    except RuntimeError:  # a response built without its request (tests)
        return None
