"""Reading a source's configuration: required keys, and the HTTP client to its vendor.

A source either names its vendor's ``base_url`` or asks for an in-process ``sandbox``
(README, Configuration); with a sandbox, the connector runs unchanged against the
simulator and the simulator's own credentials are the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from adapter.connectors.base import ConnectorConfigError
from adapter.transport import RetryPolicy, VendorHTTP, make_vendor_http

__all__ = ["http_for", "require", "retry_for"]

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
) -> tuple[VendorHTTP, Mapping[str, Any]]:
    """The pooled connections of this source, and the defaults its sandbox implies."""
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
    return make_vendor_http(
        base_url, timeout=_timeout(source, config), transport=transport
    ), defaults


def _timeout(source: str, config: Mapping[str, Any]) -> httpx.Timeout | None:
    """``timeout = {connect = 5, read = 30}`` (seconds); httpx's pool and write timeouts
    follow ``read``."""
    table = config.get("timeout")
    if table is None:
        return None
    try:
        read = float(table.get("read", 30.0))
        connect = float(table.get("connect", 5.0))
    except (AttributeError, TypeError, ValueError):
        raise ConnectorConfigError(
            f"source {source!r}: 'timeout' must be a table of seconds (connect, read)"
        ) from None
    if read <= 0 or connect <= 0:
        raise ConnectorConfigError(f"source {source!r}: timeouts must be positive")
    return httpx.Timeout(read, connect=connect)


def retry_for(source: str, config: Mapping[str, Any]) -> RetryPolicy:
    """``retry = {attempts = 3, base = 0.2, cap = 5, max_retry_after = 30}`` for reads."""
    table = config.get("retry") or {}
    try:
        values: dict[str, Any] = {
            k: float(v) if k != "attempts" else int(v) for k, v in table.items()
        }
        policy = RetryPolicy(**values)
    except (AttributeError, TypeError, ValueError):
        known = "attempts, base, cap, max_retry_after"
        raise ConnectorConfigError(f"source {source!r}: 'retry' takes {known}") from None
    if policy.attempts < 1 or policy.base < 0 or policy.cap < 0:
        raise ConnectorConfigError(f"source {source!r}: 'retry' values must be positive")
    return policy
