"""Nyra's ``{"success": false, "error", "message"}`` bodies as typed vendor errors."""

from __future__ import annotations

import re

import httpx

from adapter.transport import VendorError, classify_status, json_object

__all__ = ["classify"]

# Nyra: 403 "Missing required permission: patients:read" (nyra.md, Transport and auth).
_PERMISSION = re.compile(r"Missing required permission: ([a-z_]+:[a-z_]+)")


def classify(source: str, response: httpx.Response) -> VendorError | None:
    body = json_object(response)
    if body is None:
        return None
    said = body.get("message")
    message = said if isinstance(said, str) else ""
    permission = None
    if response.status_code == 403:
        found = _PERMISSION.search(message)
        permission = found.group(1) if found else None
    error = body.get("error") if isinstance(body.get("error"), str) else None
    # Nyra's `error` is the status's own word ("Conflict"); its `message` may quote what
    # was sent, so it is not kept.
    codes = (error,) if error and response.status_code in (400, 409, 422) else ()
    return classify_status(source, response, permission=permission, detail=error, error_codes=codes)
