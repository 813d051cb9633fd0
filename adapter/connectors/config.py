"""Reading a source's configuration: the keys it may hold, required keys, and the HTTP
client to its vendor.

A source either names its vendor's ``base_url`` or asks for an in-process ``sandbox``
(README, Configuration); with a sandbox, the connector runs unchanged against the
simulator and the simulator's own credentials are the defaults.

Configuration is strict, so that a deployment never runs on a typo: a key nobody
declared, or a value of the wrong type, is an error naming the key, its table and the
nearest known key. The keys every source takes are :data:`COMMON_KEYS`; a connector
declares its own as ``SOURCE_KEYS`` in the module of its class, and its ``from_config``
calls :func:`check_source`. A declaration maps each key to a *spec*:

- ``bool``, ``int``, ``float`` (any number), ``str``, ``dict`` (a free-form table),
  ``list[str]``, or a union of them (``str | dict``);
- :class:`AtLeast` (a bounded number) or :class:`OneOf` (one of some words);
- a mapping of keys to specs: a nested table with fixed keys (``timeout = {...}``);
- a one-item list holding such a mapping: a list of those tables (Nyra's ``keys``).

Messages name keys and tables, never a value: values may be secrets read from the
environment.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import sys
import types
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, time
from typing import Any
from urllib.parse import urlsplit

import httpx

from adapter.connectors.base import ConnectorConfigError
from adapter.fhir.phones import COUNTRIES
from adapter.transport import (
    Classifier,
    KeyPool,
    RetryPolicy,
    VendorClient,
    VendorHTTP,
    make_vendor_http,
)
from adapter.transport.circuit import Circuit

__all__ = [
    "COMMON_KEYS",
    "AtLeast",
    "OneOf",
    "SourceOptions",
    "check_source",
    "check_table",
    "declared_keys",
    "http_for",
    "require",
    "retry_for",
    "source_options",
    "source_problems",
    "unknown_key",
    "unresolved",
    "url_problems",
    "vendor_client",
]

_SANDBOX_BASE = "http://{vendor}.sandbox"
# A ``${NAME}`` left in a string: its variable is missing, which is reported on its own;
# the value itself is not judged then.
_UNRESOLVED = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")

Spec = Any  # see the module docstring


@dataclass(frozen=True)
class AtLeast:
    """A number (``kind=float``) or an integer (``kind=int``) of at least ``least``, or
    above it when ``strictly``."""

    kind: type
    least: float
    strictly: bool = False


@dataclass(frozen=True)
class OneOf:
    """A string that is one of ``words``."""

    words: tuple[str, ...]


# Each simulated fault (adapter/sandbox/faults.py, Faults); a test keeps the two alike.
_FAULTS: dict[str, Spec] = {
    "latency": AtLeast(float, 0),
    "error_rate": float,
    "error_status": int,
    "timeout_rate": float,
    "hang_after_commit": bool,
    "hang_seconds": AtLeast(float, 0),
    "malformed_rate": float,
    "after_commit": OneOf(("", "500", "502", "malformed", "drop")),
    "after_commit_every": AtLeast(int, 1),
    "expired_token": bool,
    "seed": int,
}
_SANDBOX: dict[str, Spec] = {
    "seed": int,
    "patients": AtLeast(int, 0),
    "data": str,
    "faults": _FAULTS,
    "keys": AtLeast(int, 1),
    "rate_limit": {
        "per_second": AtLeast(int, 1),
        "per_minute": AtLeast(int, 1),
        "second_window": AtLeast(float, 0, strictly=True),
        "minute_window": AtLeast(float, 0, strictly=True),
    },
    "id_types": list[str],
}
_SECONDS = AtLeast(float, 0, strictly=True)

#: The keys every source takes, whatever its connector (README, Connectors).
COMMON_KEYS: dict[str, Spec] = {
    "connector": str,
    "base_url": str,
    "timezone": str,
    "country": str,
    "read_only": bool,
    "timeout": {"connect": _SECONDS, "read": _SECONDS},
    "retry": {
        "attempts": AtLeast(int, 1),
        "base": AtLeast(float, 0),
        "cap": AtLeast(float, 0),
        "max_retry_after": AtLeast(float, 0),
    },
    "sandbox": _SANDBOX,
    "cache_seconds": AtLeast(float, 0),
    "cache_mb": AtLeast(float, 0),
    "directory_seconds": AtLeast(float, 0),
    "directory_mb": AtLeast(float, 0),
    "memo_mb": AtLeast(float, 0),
    "circuit": {"failures": AtLeast(int, 1), "open_seconds": _SECONDS},
    "queue": AtLeast(int, 1),
}


@dataclass(frozen=True)
class SourceOptions:
    """What every source takes besides its vendor's keys, defaults filled in: how long a
    read may be served again (``cache_seconds``, 0: never) and how much of them the read
    cache may hold in memory (``cache_mb``), when its circuit opens and
    for how long (``circuit = {failures, open_seconds}``), and how many requests may
    wait for it (``queue``); how long what the source knows of its practitioners, places
    and services is kept (``directory_seconds``, 0: asked again for every request) and
    the memory it may take (``directory_mb``); the memory its memo of mapped answers may
    hold (``memo_mb``, 0: no memo); the
    country (ISO 3166-1 alpha-2) of the phone numbers it holds without a country code
    (``country``, None: not known)."""

    cache_seconds: float = 0.0
    circuit_failures: int = 5
    circuit_open_seconds: float = 30.0
    queue: int | None = None  # None: sized from the budget (KeyPool.queue)
    directory_seconds: float = 300.0
    country: str | None = None
    memo_bytes: int = 64 << 20  # the memory the source's mapped answers may hold
    cache_bytes: int = 16 << 20  # what the read cache may hold in memory
    directory_bytes: int = 8 << 20  # what its directory may hold in memory


def source_options(config: Mapping[str, Any]) -> SourceOptions:
    """The :class:`SourceOptions` of a checked source configuration."""
    default = SourceOptions()
    circuit = config.get("circuit") or {}
    return SourceOptions(
        cache_seconds=float(config.get("cache_seconds", default.cache_seconds)),
        cache_bytes=_mb(config, "cache_mb", default.cache_bytes),
        circuit_failures=int(circuit.get("failures", default.circuit_failures)),
        circuit_open_seconds=float(circuit.get("open_seconds", default.circuit_open_seconds)),
        queue=int(config["queue"]) if "queue" in config else None,
        directory_seconds=float(config.get("directory_seconds", default.directory_seconds)),
        country=config.get("country", default.country),
        memo_bytes=_mb(config, "memo_mb", default.memo_bytes),
        directory_bytes=_mb(config, "directory_mb", default.directory_bytes),
    )


def _mb(config: Mapping[str, Any], key: str, default: int) -> int:
    """A size configured in MB (a number), in bytes."""
    return int(float(config.get(key, default / (1 << 20))) * (1 << 20))


def vendor_client(
    source: str,
    config: Mapping[str, Any],
    http: VendorHTTP,
    pool: KeyPool,
    classify: Classifier,
) -> VendorClient:
    """The source's vendor client with what every source configures: retries, circuit,
    read cache and the queue of requests that may wait for its keys."""
    options = source_options(config)
    pool.queue = options.queue
    client = VendorClient(
        source,
        http,
        pool,
        classify,
        retry_for(source, config),
        circuit=Circuit(options.circuit_failures, options.circuit_open_seconds),
        cache_seconds=options.cache_seconds,
        cache_bytes=options.cache_bytes,
    )
    client.connector = str(config.get("connector", ""))
    return client


def unresolved(value: Any) -> bool:
    """A string still holding a ``${NAME}`` whose variable is missing."""
    return isinstance(value, str) and _UNRESOLVED.search(value) is not None


def unknown_key(where: str, key: str, known: Any) -> str:
    """The error for ``key`` in table ``where``, with the nearest known key."""
    near = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(sorted(known))}"
    return f"{where}: unknown key {key!r} ({hint})"


def check_table(
    label: str, table: Any, keys: Mapping[str, Spec], *, path: str = "", closed: bool = True
) -> list[str]:
    """Every problem of ``table`` against ``keys``, one line each. ``label`` names the
    TOML table (``[sources.nyra-city]``), ``path`` the nested key within it; an open
    table (``closed=False``) may hold keys the declaration does not name."""
    where = f"{label} {path}" if path else label
    if not isinstance(table, Mapping):
        return [f"{where}: expected a table, got {_got(table)}"]
    problems: list[str] = []
    for key, value in table.items():
        spec = keys.get(key)
        if spec is None:
            if closed:
                problems.append(unknown_key(where, key, keys))
            continue
        problems += _check(label, f"{path}.{key}" if path else str(key), value, spec)
    return problems


def _check(label: str, path: str, value: Any, spec: Spec) -> list[str]:
    here = f"{label} {path}"
    if isinstance(spec, Mapping):
        if not isinstance(value, Mapping):
            return [f"{here}: expected {_expected(spec)}, got {_got(value)}"]
        return check_table(label, value, spec, path=path)
    if isinstance(spec, list):
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            return [f"{here}: expected {_expected(spec)}, got {_got(value)}"]
        return [
            problem
            for i, item in enumerate(value)
            for problem in check_table(label, item, spec[0], path=f"{path}[{i}]")
        ]
    if not _fits(value, spec):
        return [f"{here}: expected {_expected(spec)}, got {_got(value, spec)}"]
    if isinstance(spec, AtLeast) and (
        value < spec.least or (spec.strictly and value == spec.least)
    ):
        return [f"{here}: must be {'>' if spec.strictly else '>='} {spec.least:g}"]
    if isinstance(spec, OneOf) and value not in spec.words and not unresolved(value):
        return [f"{here}: expected {_expected(spec)}"]
    return []


def _fits(value: Any, spec: Spec) -> bool:
    if isinstance(spec, types.UnionType):
        return any(_fits(value, arm) for arm in spec.__args__)
    if isinstance(spec, AtLeast):
        return _fits(value, spec.kind)
    if isinstance(spec, OneOf):
        return isinstance(value, str)
    if spec == list[str]:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if spec is bool:
        return isinstance(value, bool)
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if spec is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if spec is dict:
        return isinstance(value, Mapping)
    return isinstance(value, spec)


_NAMES: dict[Any, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a table",
}


def _expected(spec: Spec) -> str:
    if isinstance(spec, types.UnionType):
        return " or ".join(_expected(arm) for arm in spec.__args__)
    if isinstance(spec, AtLeast):
        return f"{_expected(spec.kind)} {'>' if spec.strictly else '>='} {spec.least:g}"
    if isinstance(spec, OneOf):
        return " or ".join(f'"{word}"' for word in spec.words)
    if isinstance(spec, Mapping):
        return f"a table ({', '.join(spec)})"
    if isinstance(spec, list):
        return "a list of tables"
    if spec == list[str]:
        return "a list of strings"
    return _NAMES.get(spec, getattr(spec, "__name__", str(spec)))


def _got(value: Any, spec: Spec = None) -> str:
    """What ``value`` is, in TOML's words (never the value itself)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        odd = next((v for v in value if not isinstance(v, str)), None)
        if spec == list[str] and odd is not None:
            return f"a list holding {_got(odd)}"
        return "a list"
    if isinstance(value, date | time):
        return "a date or time"
    return type(value).__name__


def declared_keys(connector: Any) -> Mapping[str, Spec] | None:
    """The keys a connector class declares (``SOURCE_KEYS`` in its module), or None when
    it declares none: its ``from_config`` is then the only judge of its own keys."""
    module = sys.modules.get(getattr(connector, "__module__", ""))
    keys = getattr(module, "SOURCE_KEYS", None)
    return keys if isinstance(keys, Mapping) else None


def source_problems(
    source: str, config: Mapping[str, Any], keys: Mapping[str, Spec] | None
) -> list[str]:
    """Every problem of one source's table: its keys (the common ones and ``keys``, the
    connector's own; with ``keys`` None any other key passes), its time zone and its
    country."""
    label = f"[sources.{source}]"
    problems = check_table(label, config, {**COMMON_KEYS, **(keys or {})}, closed=keys is not None)
    name = config.get("timezone") if isinstance(config, Mapping) else None
    if isinstance(name, str) and not unresolved(name):
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            near = difflib.get_close_matches(name, zoneinfo.available_timezones(), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            problems.append(f"{label} timezone: unknown IANA time zone{hint}")
    country = config.get("country") if isinstance(config, Mapping) else None
    if isinstance(country, str) and not unresolved(country) and country not in COUNTRIES:
        near = difflib.get_close_matches(country.upper(), COUNTRIES, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        problems.append(
            f"{label} country: not an ISO 3166-1 alpha-2 country code with a telephone "
            f"numbering plan{hint}"
        )
    return problems


def url_problems(source: str, config: Mapping[str, Any]) -> list[str]:
    """The ``base_url`` of a source reached over the network: https, or plain http only to
    this machine (credentials travel in every request's headers)."""
    url = config.get("base_url")
    if not isinstance(url, str) or unresolved(url):
        return []
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
    if host and (parts.scheme == "https" or (parts.scheme == "http" and _loopback(host))):
        return []
    return [
        f"[sources.{source}] base_url: must be an https URL "
        "(plain http only to a loopback host: 127.0.0.0/8, ::1, localhost)"
    ]


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_source(
    source: str,
    config: Mapping[str, Any],
    keys: Mapping[str, Spec] | None,
    transport: httpx.AsyncBaseTransport | None,
) -> None:
    """For ``from_config``: every problem of the source at once, as one
    :class:`ConnectorConfigError` (a line each). The ``base_url`` rule holds when the
    connector will reach its vendor over the network: not with a sandbox, nor with a
    transport handed in (tests, benchmarks, an in-process vendor)."""
    problems = source_problems(source, config, keys)
    if transport is None and config.get("sandbox") is None:
        problems += url_problems(source, config)
    if problems:
        raise ConnectorConfigError("\n".join(problems))


def require(source: str, config: Mapping[str, Any], key: str, defaults: Mapping[str, Any]) -> Any:
    value = config.get(key, defaults.get(key))
    if value is None or value == "":
        raise ConnectorConfigError(f"[sources.{source}]: {key!r} is required")
    return value


def http_for(
    vendor: str,
    source: str,
    config: Mapping[str, Any],
    transport: httpx.AsyncBaseTransport | None,
) -> tuple[VendorHTTP, Mapping[str, Any]]:
    """The pooled connections of this source, and defaults for what the configuration
    leaves out (none: a sandbox's credentials are filled in above the connectors, by
    :func:`adapter.assembly.connector_for`, which also hands in its transport)."""
    defaults: Mapping[str, Any] = {}
    if config.get("sandbox") is not None and transport is None:
        raise ConnectorConfigError(
            f"source {source!r}: a sandbox source is made by adapter.assembly.connector_for"
        )
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
