"""Reading a source's configuration: required keys, and the HTTP client to its vendor.

A source either names its vendor's ``base_url`` or asks for an in-process ``sandbox``
(DESIGN.md, Configuration); with a sandbox, the connector runs unchanged against the
simulator and the simulator's own credentials are the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from adapter.connectors.base import ConnectorConfigError
from adapter.transport import make_http_client

__all__ = ["http_for", "require"]

_SANDBOX_BASE = "http://{vendor}.sandbox"


def require(source: str, config: Mapping[str, Any], key: str, defaults: Mapping[str, Any]) -> Any:
    value = config.get(key, defaults.get(key))
    if value is None or value == "":
        raise ConnectorConfigError(f"source {source!r}: {key!r} is required")
    return value


def http_for(
    vendor: str,
    source: str,
    config: Mapping[str, Any],
    transport: httpx.AsyncBaseTransport | None,
) -> tuple[httpx.AsyncClient, Mapping[str, Any]]:
    """The pooled client for this source, and the defaults its sandbox implies."""
    defaults: Mapping[str, Any] = {}
    if config.get("sandbox") is not None:
        from adapter.sandbox import sandbox_for

        try:
            sandbox = sandbox_for(vendor, config["sandbox"], config)
        except (ValueError, TypeError, OSError) as exc:
            raise ConnectorConfigError(f"source {source!r}: sandbox: {exc}") from None
        defaults = sandbox.defaults()
        if transport is None:
            transport = sandbox.transport()
    base_url = config.get("base_url")
    if base_url is None and transport is not None:
        base_url = _SANDBOX_BASE.format(vendor=vendor)
    if not isinstance(base_url, str):
        raise ConnectorConfigError(f"source {source!r}: 'base_url' or 'sandbox' is required")
    return make_http_client(base_url, transport=transport), defaults
