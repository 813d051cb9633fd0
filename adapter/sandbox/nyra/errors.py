"""Nyra's error answers: ``{success: false, error, message}``."""

from __future__ import annotations

import orjson

from adapter.sandbox.common import Reply

__all__ = ["bad", "error_body", "failure", "not_found"]


def failure(status: int, error: str, message: str) -> Reply:
    return Reply(status, {"success": False, "error": error, "message": message})


def bad(message: str) -> Reply:
    return failure(400, "Bad Request", message)


def not_found(kind: str) -> Reply:
    return failure(404, "Not Found", f"{kind} not found")


def error_body(status: int) -> bytes:
    """The body of a simulated 5xx (see :class:`~adapter.sandbox.faults.Faults`)."""
    return orjson.dumps(
        {"success": False, "error": "Service Unavailable", "message": "Temporary failure"}
    )
