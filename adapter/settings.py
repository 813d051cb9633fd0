"""Configuration: sources and API clients from a TOML file, secrets from the environment.

``fhir-adapter serve --config adapter.toml`` (or ``FHIR_ADAPTER_CONFIG``). A ``${NAME}``
anywhere in a string value is replaced by the environment variable ``NAME`` at start-up;
missing ones are one error naming them all, never a value. With no file, the embedded
default serves two in-process sandbox sources (docs/configuration.md).

The configuration is strict, so that a deployment never runs on a typo: an unknown key in
``[server]``, ``[sources.NAME]`` or ``[clients.NAME]`` (or in their nested tables), or a
value of the wrong type, is an error naming the key, its table and the nearest known key.
Every mistake found is reported, one line each (:class:`SettingsError`), before anything
is built. The declarations and the checker are in :mod:`adapter.connectors.config`.
"""

from __future__ import annotations

import base64
import difflib
import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapter.auth.clients import CLIENT_KEYS, Client, load_clients
from adapter.auth.operators import OPERATOR_KEYS, Operator, load_operators
from adapter.connectors.config import (
    AtLeast,
    OneOf,
    check_table,
    declared_keys,
    source_problems,
    unresolved,
)
from adapter.transport.lanes import DEFAULT_SHARES, LANES

__all__ = [
    "CURSOR_KEY_ENV",
    "DEMO_SECRET_ENV",
    "EMBEDDED_DEFAULT",
    "EXPORT_KEYS",
    "MAX_COUNT",
    "SERVER_KEYS",
    "TELEMETRY_KEYS",
    "TOKEN_KEY_ENV",
    "WORKERS_ENV",
    "ExportSettings",
    "Settings",
    "SettingsError",
    "load_settings",
]

SOURCE_NAME = re.compile(r"[a-z0-9-]{1,32}")
# A trusted Host pattern: a name or address, ``*.`` before a name for any subdomain of
# it, and ``:port`` or ``:*`` (any port, or none); without a port, only a Host that names
# none (adapter.api.guard.HostPolicy).
_HOST_PATTERN = re.compile(
    r"(\*\.)?([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
    r"(:(\d{1,5}|\*))?"
    r"|\[[0-9a-f:.]+\](:(\d{1,5}|\*))?"
)
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
CONFIG_ENV = "FHIR_ADAPTER_CONFIG"
CURSOR_KEY_ENV = "FHIR_ADAPTER_CURSOR_KEY"
TOKEN_KEY_ENV = "FHIR_ADAPTER_TOKEN_KEY"
DEMO_SECRET_ENV = "FHIR_ADAPTER_DEMO_SECRET"
# Set by `serve --workers N` for its workers: without Redis each takes 1/N of every
# vendor key's limits.
WORKERS_ENV = "FHIR_ADAPTER_WORKERS"
DEFAULT_COUNT = 20
MAX_COUNT = 100
_TABLES = ("server", "sources", "clients", "export", "subscriptions", "telemetry", "operators")

# What [server] takes (docs/configuration.md), in the specs of adapter.connectors.config;
# ranges that tie keys together are checked after the types.
SERVER_KEYS: dict[str, Any] = {
    "public_base_url": str,
    "default_count": int,
    "max_count": int,
    "cursor_key": str,
    "token_key": str,
    "token_minutes": float,
    "redis_url": str,
    "redis_prefix": str,
    "open_access": bool,
    "audit_ndjson": str,
    "audit_stdout": bool,
    "request_seconds": AtLeast(float, 0, strictly=True),
    "max_vendor_calls": AtLeast(int, 1),
    "shutdown_seconds": AtLeast(float, 0),
    "log_format": OneOf(("json", "text")),
    "trusted_hosts": list[str],
    "forwarded_allow_ips": list[str],
    "cache_mb": AtLeast(float, 0),
    "body_seconds": AtLeast(float, 0, strictly=True),
    # Each vendor budget's division between its lanes (adapter.transport.lanes).
    "lanes": {name: AtLeast(float, 0, strictly=True) for name in LANES},
}

# What [export] takes: bulk data export ($export and `fhir-adapter export`).
EXPORT_KEYS: dict[str, Any] = {
    "dir": str,
    "keep_hours": AtLeast(float, 0, strictly=True),
    "budget_share": AtLeast(float, 0, strictly=True),
    "file_max_records": AtLeast(int, 1),
    # Object storage for the files (docs/export-storage.md): "s3://bucket/prefix".
    "storage": str,
    "endpoint_url": str,
    "region": str,
    "signed_urls": bool,
    "signed_url_seconds": AtLeast(int, 1),
}

# What [subscriptions] takes: Subscription (rest-hook) polling and delivery.
SUBSCRIPTION_KEYS: dict[str, Any] = {
    "dir": str,
    "poll_seconds": AtLeast(float, 0, strictly=True),
    "max_failures": AtLeast(int, 1),
    "budget_share": AtLeast(float, 0, strictly=True),
    "allowed_endpoints": list[str],
    "keep_hours": AtLeast(float, 0, strictly=True),
}

# What [telemetry] takes: traces sent over OTLP/HTTP to a collector (adapter.ops.telemetry).
TELEMETRY_KEYS: dict[str, Any] = {"otlp_endpoint": str}

EMBEDDED_DEFAULT: dict[str, Any] = {
    # The demo is reached as localhost, also from outside a container publishing its port.
    "server": {"trusted_hosts": ["localhost:*", "127.0.0.1:*", "[::1]:*"]},
    "sources": {
        "leyr-sandbox": {
            "connector": "leyr",
            "emr": "webdoc",
            "timezone": "Europe/Stockholm",
            "country": "SE",
            "sandbox": {"seed": 7, "patients": 200},
        },
        "nyra-sandbox": {
            "connector": "nyra",
            "timezone": "Asia/Kolkata",
            "country": "IN",
            "sandbox": {"seed": 7, "patients": 200, "keys": 3},
        },
    },
    # The demo client's secret is made at start-up (or read from FHIR_ADAPTER_DEMO_SECRET)
    # and printed by `serve` with the commands that use it.
    "clients": {"demo": {"secret": "${" + DEMO_SECRET_ENV + "}", "scopes": ["system/*.cruds"]}},
    # Rest-hook endpoints on this machine may be tried out (a deployment allows none).
    "subscriptions": {
        "poll_seconds": 10.0,
        "allowed_endpoints": ["http://127.0.0.1:*", "http://localhost:*"],
    },
}


class SettingsError(ValueError):
    """The configuration is wrong. ``problems`` holds one line per mistake found, each
    naming the key or variable, never a value; the message is those lines."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class ExportSettings:
    """``[export]``: where export jobs keep their state and files, how long a finished
    job's files are kept, the share of each vendor key's rate an export may use, and the
    records one NDJSON file holds before the next file of its type and source starts."""

    dir: str = "./fhir-adapter-export"
    keep_hours: float = 24.0
    budget_share: float = 0.5
    file_max_records: int = 100_000
    # Files on S3-compatible object storage instead of under ``dir``: ``s3://bucket/prefix``;
    # credentials from the environment (AWS_ACCESS_KEY_ID...), the endpoint from
    # ``endpoint_url`` or AWS_ENDPOINT_URL. ``signed_urls``: the manifest's URLs are
    # pre-signed for ``signed_url_seconds`` (no token needed) instead of the service's own.
    storage: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    signed_urls: bool = False
    signed_url_seconds: int = 3600


@dataclass(frozen=True)
class SubscriptionSettings:
    """``[subscriptions]``: where Subscriptions are kept without Redis (default: beside the
    export directory), how often their searches run, how many failed deliveries in a row
    put one in ``error``, the share of a request's vendor calls one poll round may use, and
    the endpoints (``fnmatch`` globs over ``scheme://host:port``) allowed although they are
    not https or resolve to a private, loopback or link-local address; how long a
    topic-based Subscription's events are kept for ``$events``."""

    dir: str | None = None
    poll_seconds: float = 30.0
    max_failures: int = 5
    budget_share: float = 0.1
    allowed_endpoints: tuple[str, ...] = ()
    keep_hours: float = 24.0

    def directory(self, export_dir: str) -> Path:
        if self.dir:
            return Path(self.dir)
        return Path(export_dir).resolve().parent / "fhir-adapter-data" / "subscriptions"


@dataclass(frozen=True)
class Settings:
    sources: Mapping[str, Mapping[str, Any]]
    clients: Mapping[str, Client] = field(default_factory=dict)
    # With no clients and open_access, the FHIR routes take no token: for development and
    # tests only; a configuration file must ask for it in so many words.
    open_access: bool = False
    public_base_url: str | None = None
    # The Host header values (``host[:port]`` patterns, ``*.example.org`` for any
    # subdomain) this server answers for when it builds links from the request's Host,
    # that is without public_base_url (adapter.api.guard.host_policy). Empty: a request
    # that reached a loopback address may name loopback Hosts only, one that reached
    # another address none; `serve` refuses a non-loopback address without either. An
    # app made in process (no IP address to judge by) is not held to a Host.
    trusted_hosts: tuple[str, ...] = ()
    # Addresses (or networks) of the proxies whose X-Forwarded-For/-Proto are believed;
    # none by default: a client's own headers never name its address.
    forwarded_allow_ips: tuple[str, ...] = ()
    # The memory each worker's caches may hold, in MB: shared out equally between the
    # sources, and within a source's part between its memo of mapped answers, its
    # directory and its read cache (a source's own memo_mb, directory_mb or cache_mb
    # overrides its part). adapter.assembly.cache_parts says how.
    cache_mb: float = 96.0
    default_count: int = DEFAULT_COUNT
    max_count: int = MAX_COUNT
    # Signs paging cursors. Workers of one deployment must share it: set it (base64, at
    # least 32 bytes) in FHIR_ADAPTER_CURSOR_KEY or [server] cursor_key; else one is
    # made at start-up and handed to the workers this process starts.
    cursor_key: bytes = field(default=b"", repr=False)
    redis_url: str | None = field(default=None, repr=False)
    # What every key this deployment keeps in Redis begins with: deployments (or test
    # runs) sharing one Redis database keep apart by it.
    redis_prefix: str = "fhir-adapter:"
    token_key: bytes = field(default=b"", repr=False)  # signs access tokens (HS256)
    token_minutes: float = 5.0
    audit_ndjson: str | None = None  # AuditEvent NDJSON file, besides the audit log
    audit_stdout: bool = False  # whether the audit records also go to standard output
    request_seconds: float = 30.0  # how long one FHIR request may take, vendor calls included
    max_vendor_calls: int = 20  # vendor calls one FHIR request may make
    shutdown_seconds: float = 10.0  # how long requests in flight may finish on shutdown
    body_seconds: float = 10.0  # how long a request body may take to arrive, whole
    log_format: str = "json"  # operator logs: "json" or "text"
    # Each vendor budget's shares by lane (adapter.transport.lanes; those not named keep
    # their default).
    lanes: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SHARES))
    export: ExportSettings = field(default_factory=ExportSettings)
    subscriptions: SubscriptionSettings = field(default_factory=SubscriptionSettings)
    # [telemetry] otlp_endpoint: the collector traces go to (OTLP/HTTP); none: no tracing.
    otlp_endpoint: str | None = None
    # [operators.NAME] password_hash: who may log in to the console at /console.
    operators: Mapping[str, Operator] = field(default_factory=dict, repr=False)
    origin: str = "embedded default"

    def __repr__(self) -> str:
        return f"Settings(sources={sorted(self.sources)}, origin={self.origin!r})"


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``path`` (or ``$FHIR_ADAPTER_CONFIG``), else the embedded default."""
    env = os.environ if env is None else env
    path = path or env.get(CONFIG_ENV) or None
    if path is None:
        env = {DEMO_SECRET_ENV: secrets.token_urlsafe(24), **env}
        return _settings(EMBEDDED_DEFAULT, env, "embedded default")
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read configuration {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"configuration {path} is not valid TOML: {exc}") from None
    return _settings(raw, env, str(path))


def _settings(raw: Mapping[str, Any], env: Mapping[str, str], origin: str) -> Settings:
    # First every key and type, and every missing variable: mistakes that do not depend
    # on one another, all reported at once.
    problems = [_unknown_table(name) for name in raw if name not in _TABLES]
    missing: dict[str, str] = {}
    resolved = _substitute(raw, env, (), missing)
    if missing:
        names = ", ".join(f"{name} ({where})" for name, where in missing.items())
        plural = "s" if len(missing) > 1 else ""
        problems.append(f"environment variable{plural} not set: {names}")
    server = resolved.get("server", {})
    problems += check_table("[server]", server, SERVER_KEYS)
    audit = (server.get("audit_ndjson") or None) if isinstance(server, Mapping) else None
    if isinstance(audit, str) and not unresolved(audit):
        problems += _audit_problems(audit)
    sources = resolved.get("sources")
    if not isinstance(sources, Mapping) or not sources:
        problems.append("at least one [sources.NAME] table is required")
    else:
        for name, source in sources.items():
            problems += _source_problems(name, source)
    export = resolved.get("export", {})
    problems += check_table("[export]", export, EXPORT_KEYS)
    share = export.get("budget_share") if isinstance(export, Mapping) else None
    if isinstance(share, int | float) and not isinstance(share, bool) and share > 1:
        problems.append("[export] budget_share must be above 0 and at most 1")
    problems += _storage_problems(export)
    subscriptions = resolved.get("subscriptions", {})
    problems += check_table("[subscriptions]", subscriptions, SUBSCRIPTION_KEYS)
    share = subscriptions.get("budget_share") if isinstance(subscriptions, Mapping) else None
    if isinstance(share, int | float) and not isinstance(share, bool) and share > 1:
        problems.append("[subscriptions] budget_share must be above 0 and at most 1")
    telemetry = resolved.get("telemetry", {})
    problems += check_table("[telemetry]", telemetry, TELEMETRY_KEYS)
    raw_operators = resolved.get("operators", {})
    if isinstance(raw_operators, Mapping):
        for name, table in raw_operators.items():
            problems += check_table(f"[operators.{name}]", table, OPERATOR_KEYS)
    operators, operator_problems = load_operators(raw_operators)
    problems += operator_problems
    raw_clients = resolved.get("clients", {})
    if not isinstance(raw_clients, Mapping):
        problems.append("[clients] must hold [clients.NAME] tables")
    else:
        for name, table in raw_clients.items():
            problems += check_table(f"[clients.{name}]", table, CLIENT_KEYS)
    if problems:
        raise SettingsError(problems)

    # Then the values, each key now of its declared type.
    base = server.get("public_base_url")
    if base is not None and not re.match(r"https?://", base):
        problems.append("[server] public_base_url must be an http(s) URL")
    otlp = telemetry.get("otlp_endpoint") or None
    if otlp is not None and not re.match(r"https?://", otlp):
        problems.append("[telemetry] otlp_endpoint must be an http(s) URL")
    max_count = server.get("max_count", MAX_COUNT)
    default_count = server.get("default_count", DEFAULT_COUNT)
    if not 1 <= default_count <= max_count <= 1000:
        problems.append("[server] needs 1 <= default_count <= max_count <= 1000")
    hosts = tuple(host.strip().lower() for host in server.get("trusted_hosts", ()))
    problems += [
        f"[server] trusted_hosts[{i}]: not a host[:port] pattern "
        '(e.g. "fhir.example.org", "*.example.org", "10.0.0.5:8080")'
        for i, host in enumerate(hosts)
        if not _HOST_PATTERN.fullmatch(host)
    ]
    forwarded = tuple(str(ip).strip() for ip in server.get("forwarded_allow_ips", ()))
    for i, value in enumerate(forwarded):
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            problems.append(
                f"[server] forwarded_allow_ips[{i}]: not an IP address or network "
                '(e.g. "10.0.0.5", "10.0.0.0/24")'
            )
    if not re.fullmatch(r"[A-Za-z0-9_.:{}-]{1,64}", server.get("redis_prefix", "fhir-adapter:")):
        problems.append(
            "[server] redis_prefix must be 1 to 64 letters, digits or _ . : - { } "
            '(e.g. "fhir-adapter:")'
        )
    minutes = float(server.get("token_minutes", 5))
    if not 1 <= minutes <= 60:
        problems.append("[server] token_minutes must be from 1 to 60")
    token_key = _key("token", server.get("token_key") or env.get(TOKEN_KEY_ENV), problems)
    cursor_key = _key("cursor", server.get("cursor_key") or env.get(CURSOR_KEY_ENV), problems)
    open_access = server.get("open_access", False)
    clients: dict[str, Client] = {}
    try:
        clients = load_clients(raw_clients, list(sources))
    except ValueError as exc:
        problems.append(str(exc))
    else:
        if not clients and not open_access:
            problems.append(
                "at least one [clients.NAME] table is needed (or, for development only, "
                "[server] open_access = true)"
            )
    if problems:
        raise SettingsError(problems)
    default = Settings(sources={})
    return Settings(
        sources=sources,
        clients=clients,
        open_access=open_access and not clients,
        token_key=token_key,
        token_minutes=minutes,
        audit_ndjson=audit,
        audit_stdout=server.get("audit_stdout", default.audit_stdout),
        request_seconds=float(server.get("request_seconds", default.request_seconds)),
        max_vendor_calls=server.get("max_vendor_calls", default.max_vendor_calls),
        shutdown_seconds=float(server.get("shutdown_seconds", default.shutdown_seconds)),
        body_seconds=float(server.get("body_seconds", default.body_seconds)),
        trusted_hosts=hosts,
        forwarded_allow_ips=forwarded,
        cache_mb=float(server.get("cache_mb", default.cache_mb)),
        log_format=server.get("log_format", default.log_format),
        public_base_url=base.rstrip("/") if base else None,
        default_count=default_count,
        max_count=max_count,
        cursor_key=cursor_key,
        redis_url=server.get("redis_url") or None,
        redis_prefix=server.get("redis_prefix", default.redis_prefix),
        lanes={**DEFAULT_SHARES, **{k: float(v) for k, v in server.get("lanes", {}).items()}},
        export=ExportSettings(
            dir=export.get("dir", ExportSettings.dir),
            keep_hours=float(export.get("keep_hours", ExportSettings.keep_hours)),
            budget_share=float(export.get("budget_share", ExportSettings.budget_share)),
            file_max_records=export.get("file_max_records", ExportSettings.file_max_records),
            storage=export.get("storage") or None,
            endpoint_url=export.get("endpoint_url") or None,
            region=export.get("region") or None,
            signed_urls=export.get("signed_urls", False),
            signed_url_seconds=export.get("signed_url_seconds", ExportSettings.signed_url_seconds),
        ),
        subscriptions=SubscriptionSettings(
            dir=subscriptions.get("dir") or None,
            poll_seconds=float(
                subscriptions.get("poll_seconds", SubscriptionSettings.poll_seconds)
            ),
            max_failures=subscriptions.get("max_failures", SubscriptionSettings.max_failures),
            budget_share=float(
                subscriptions.get("budget_share", SubscriptionSettings.budget_share)
            ),
            allowed_endpoints=tuple(subscriptions.get("allowed_endpoints", ())),
            keep_hours=float(subscriptions.get("keep_hours", SubscriptionSettings.keep_hours)),
        ),
        otlp_endpoint=otlp,
        operators=operators,
        origin=origin,
    )


def _unknown_table(name: str) -> str:
    near = difflib.get_close_matches(name, _TABLES, n=1)
    hint = (
        f"did you mean [{near[0]}]?"
        if near
        else "known: server, sources, clients, export, subscriptions"
    )
    return f"unknown top-level table [{name}] ({hint})"


_STORAGE = re.compile(r"s3://[a-z0-9.-]{3,63}(/.*)?")


def _storage_problems(export: Any) -> list[str]:
    """``[export] storage`` is an ``s3://bucket[/prefix]`` URL; a pre-signed URL needs it."""
    if not isinstance(export, Mapping):
        return []
    storage, problems = export.get("storage"), []
    if isinstance(storage, str) and storage and not _STORAGE.fullmatch(storage):
        problems.append('[export] storage must be "s3://bucket/prefix" (a lower-case bucket)')
    endpoint = export.get("endpoint_url")
    if isinstance(endpoint, str) and endpoint and not re.match(r"https?://", endpoint):
        problems.append("[export] endpoint_url must be an http:// or https:// URL")
    if export.get("signed_urls") is True and not storage:
        problems.append("[export] signed_urls needs [export] storage (files on object storage)")
    return problems


def _source_problems(name: str, source: Any) -> list[str]:
    """A source's name, connector and time zone, then its keys: the common ones and
    those its connector declares."""
    problems = []
    if not SOURCE_NAME.fullmatch(name):
        problems.append(f"source name {name!r} must match [a-z0-9-]{{1,32}}")
    if not isinstance(source, Mapping):
        return [*problems, f"[sources.{name}] must be a table"]
    keys = None
    connector = source.get("connector")
    if connector is None:
        problems.append(f'[sources.{name}] needs connector = "..."')
    elif isinstance(connector, str):
        keys, problem = _connector_keys(name, connector)
        problems += [problem] if problem else []
    if "timezone" not in source:
        problems.append(f'[sources.{name}] needs timezone = "Area/City" (IANA)')
    return problems + source_problems(name, source, keys)


def _connector_keys(source: str, connector: str) -> tuple[Any, str | None]:
    """The keys the named connector declares (None if it declares none), or why not."""
    from adapter.connectors.registry import available, connector_class

    known = available()
    if connector not in known:
        near = difflib.get_close_matches(connector, list(known), n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"registered: {', '.join(sorted(known))}"
        return None, f"[sources.{source}] connector: unknown connector {connector!r} ({hint})"
    try:
        return declared_keys(connector_class(connector)), None
    except Exception as exc:  # a third party's plug-in that does not import
        return (
            None,
            f"[sources.{source}] connector {connector!r} cannot be loaded ({type(exc).__name__})",
        )


def _audit_problems(path: str) -> list[str]:
    """The audit file must be writable where it is said to be: found at start-up, not at
    the first request."""
    target = Path(path)
    folder = target.parent
    if not folder.exists():
        return [f"[server] audit_ndjson: directory {folder} does not exist"]
    if not folder.is_dir():
        return [f"[server] audit_ndjson: {folder} is not a directory"]
    if target.is_dir():
        return [f"[server] audit_ndjson: {target} is a directory, not a file"]
    if target.exists():
        if not os.access(target, os.W_OK):
            return [f"[server] audit_ndjson: file {target} is not writable"]
    elif not os.access(folder, os.W_OK | os.X_OK):
        return [f"[server] audit_ndjson: directory {folder} is not writable"]
    return []


def _key(what: str, value: str | None, problems: list[str]) -> bytes:
    if not value:
        return secrets.token_bytes(32)
    try:
        key = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        problems.append(f"the {what} key must be base64")
        return b""
    if len(key) < 32:
        problems.append(f"the {what} key must hold at least 32 bytes")
    return key


def _substitute(
    value: Any, env: Mapping[str, str], where: tuple[str, ...], missing: dict[str, str]
) -> Any:
    """``value`` with each ``${NAME}`` replaced; a missing variable is left as written and
    recorded in ``missing`` (name -> the key that first uses it)."""
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                missing.setdefault(name, _place(where))
                return match.group(0)
            return env[name]

        return _VARIABLE.sub(one, value)
    if isinstance(value, dict):
        return {k: _substitute(v, env, (*where, k), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, (*where, f"[{i}]"), missing) for i, v in enumerate(value)]
    return value


def _place(where: tuple[str, ...]) -> str:
    """A key's place as the errors name it: ``[sources.nyra-city] keys[0].secret``."""
    table, rest = where[:1], where[1:]
    if where[:1] in (("sources",), ("clients",)) and len(where) > 1:
        table, rest = where[:2], where[2:]
    key = "".join(part if part.startswith("[") else f".{part}" for part in rest).lstrip(".")
    label = f"[{'.'.join(table)}]" if table else "configuration"
    return f"{label} {key}" if key else label
