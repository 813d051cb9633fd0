"""Leyr's RFC 7807-like error bodies, with its ``error_code``s."""

from __future__ import annotations

import uuid

import orjson

from adapter.sandbox.common import Reply

__all__ = ["bad", "error", "error_body", "not_found"]

_DOCS = "https://docs.leyr.io/api/error-handling/"


def error(status: int, code: str, title: str, *errors: tuple[str, str, str | None]) -> Reply:
    """A Leyr error: ``errors`` are (error_code, details, path)."""
    return Reply(
        status,
        {
            "code": code,
            "type": _DOCS + code.lower(),
            "title": title,
            "status": status,
            "detail": errors[0][1] if errors else title,
            "instance": str(uuid.uuid4()),
            "errors": [
                {"details": d, "emr_error": None, "error_code": c, "path": p} for c, d, p in errors
            ],
        },
    )


def bad(code: str, details: str, path: str | None = None) -> Reply:
    return error(400, "BAD_REQUEST", "Request validation failed", (code, details, path))


def not_found(what: str) -> Reply:
    return error(404, "NOT_FOUND", f"{what} not found", ("NOT_FOUND", f"{what} not found", None))


def error_body(status: int) -> bytes:
    """The body of a simulated 5xx (see :class:`~adapter.sandbox.faults.Faults`)."""
    return orjson.dumps(
        error(
            status, "UNKNOWN_ERROR", "Unknown error", ("UNKNOWN_ERROR", "Temporary failure", None)
        ).body
    )
