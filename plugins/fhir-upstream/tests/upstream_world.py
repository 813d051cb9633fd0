"""Facades over sandboxes, for the federation and chain tests."""

from __future__ import annotations

from typing import Any

import httpx

from adapter.app import create_app
from adapter.sandbox import RateLimits
from adapter.settings import Settings

__all__ = ["FAST", "client", "facade", "references"]

# Nyra's limits with time scaled down 2,400-fold (as the conformance suite runs it).
FAST = RateLimits(second_window=1 / 2400, minute_window=60 / 2400)


def references(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            found.add(value["reference"])
        for item in value.values():
            found |= references(item)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


def facade(
    sources: dict[str, dict], transports: dict[str, httpx.AsyncBaseTransport], **settings: Any
):
    config = Settings(
        **{
            "open_access": True,
            "sources": sources,
            "cursor_key": b"f" * 32,
            "max_vendor_calls": 200,
            **settings,
        }
    )
    return create_app(config, transports=transports)


def client(
    app, base: str = "http://fhir.test/fhir", headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base, headers=headers)
