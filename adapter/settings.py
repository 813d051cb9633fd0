"""Configuration: sources and API clients from a TOML file, secrets from the environment.

``fhir-adapter serve --config adapter.toml`` (or ``FHIR_ADAPTER_CONFIG``). A ``${NAME}``
anywhere in a string value is replaced by the environment variable ``NAME`` at start-up;
a missing one is an error naming the variable, never a value. With no file, the
embedded default serves two in-process sandbox sources (README, Configuration).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapter.auth.clients import Client, load_clients

__all__ = [
    "CURSOR_KEY_ENV",
    "DEMO_SECRET_ENV",
    "EMBEDDED_DEFAULT",
    "MAX_COUNT",
    "TOKEN_KEY_ENV",
    "Settings",
    "SettingsError",
    "load_settings",
]

SOURCE_NAME = re.compile(r"[a-z0-9-]{1,32}")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
CONFIG_ENV = "FHIR_ADAPTER_CONFIG"
CURSOR_KEY_ENV = "FHIR_ADAPTER_CURSOR_KEY"
TOKEN_KEY_ENV = "FHIR_ADAPTER_TOKEN_KEY"
DEMO_SECRET_ENV = "FHIR_ADAPTER_DEMO_SECRET"
DEFAULT_COUNT = 20
MAX_COUNT = 100

EMBEDDED_DEFAULT: dict[str, Any] = {
    "sources": {
        "leyr-sandbox": {
            "connector": "leyr",
            "emr": "webdoc",
            "timezone": "Europe/Stockholm",
            "sandbox": {"seed": 7, "patients": 200},
        },
        "nyra-sandbox": {
            "connector": "nyra",
            "timezone": "Asia/Kolkata",
            "sandbox": {"seed": 7, "patients": 200, "keys": 3},
        },
    },
    # The demo client's secret is made at start-up (or read from FHIR_ADAPTER_DEMO_SECRET)
    # and printed by `serve` with the commands that use it.
    "clients": {"demo": {"secret": "${" + DEMO_SECRET_ENV + "}", "scopes": ["system/*.cruds"]}},
}


class SettingsError(ValueError):
    """The configuration is wrong; the message names the key or variable, not a value."""


@dataclass(frozen=True)
class Settings:
    sources: Mapping[str, Mapping[str, Any]]
    clients: Mapping[str, Client] = field(default_factory=dict)
    # With no clients and open_access, the FHIR routes take no token: for development and
    # tests only; a configuration file must ask for it in so many words.
    open_access: bool = False
    public_base_url: str | None = None
    default_count: int = DEFAULT_COUNT
    max_count: int = MAX_COUNT
    # Signs paging cursors. Workers of one deployment must share it: set it (base64, at
    # least 32 bytes) in FHIR_ADAPTER_CURSOR_KEY or [server] cursor_key; else one is
    # made at start-up and handed to the workers this process starts.
    cursor_key: bytes = field(default=b"", repr=False)
    redis_url: str | None = field(default=None, repr=False)
    token_key: bytes = field(default=b"", repr=False)  # signs access tokens (HS256)
    token_minutes: float = 5.0
    audit_ndjson: str | None = None  # AuditEvent NDJSON file, besides the audit log
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
    unknown = set(raw) - {"server", "sources", "clients"}
    if unknown:
        raise SettingsError(f"unknown top-level table(s): {', '.join(sorted(unknown))}")
    resolved = _substitute(raw, env, "")
    server = resolved.get("server") or {}
    sources = resolved.get("sources") or {}
    if not isinstance(sources, dict) or not sources:
        raise SettingsError("at least one [sources.NAME] table is required")
    for name, source in sources.items():
        if not SOURCE_NAME.fullmatch(name):
            raise SettingsError(f"source name {name!r} must match [a-z0-9-]{{1,32}}")
        if not isinstance(source, dict) or not isinstance(source.get("connector"), str):
            raise SettingsError(f'[sources.{name}] needs connector = "..."')
        if not isinstance(source.get("timezone"), str):
            raise SettingsError(f'[sources.{name}] needs timezone = "Area/City" (IANA)')
    base = server.get("public_base_url")
    if base is not None and not (isinstance(base, str) and re.match(r"https?://", base)):
        raise SettingsError("[server] public_base_url must be an http(s) URL")
    max_count = int(server.get("max_count", MAX_COUNT))
    default_count = int(server.get("default_count", DEFAULT_COUNT))
    if not 1 <= default_count <= max_count <= 1000:
        raise SettingsError("[server] needs 1 <= default_count <= max_count <= 1000")
    open_access = server.get("open_access", False) is True
    try:
        clients = load_clients(resolved.get("clients") or {}, list(sources))
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    if not clients and not open_access:
        raise SettingsError(
            "at least one [clients.NAME] table is needed (or, for development only, "
            "[server] open_access = true)"
        )
    minutes = float(server.get("token_minutes", 5))
    if not 1 <= minutes <= 60:
        raise SettingsError("[server] token_minutes must be from 1 to 60")
    return Settings(
        sources=sources,
        clients=clients,
        open_access=open_access and not clients,
        token_key=_key("token", server.get("token_key") or env.get(TOKEN_KEY_ENV)),
        token_minutes=minutes,
        audit_ndjson=server.get("audit_ndjson") or None,
        public_base_url=base.rstrip("/") if base else None,
        default_count=default_count,
        max_count=max_count,
        cursor_key=_key("cursor", server.get("cursor_key") or env.get(CURSOR_KEY_ENV)),
        redis_url=server.get("redis_url") or None,
        origin=origin,
    )


def _key(what: str, value: str | None) -> bytes:
    if not value:
        return secrets.token_bytes(32)
    try:
        key = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise SettingsError(f"the {what} key must be base64") from None
    if len(key) < 32:
        raise SettingsError(f"the {what} key must hold at least 32 bytes")
    return key


def _substitute(value: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise SettingsError(
                    f"{where or 'configuration'}: environment variable {name} is not set"
                )
            return env[name]

        return _VARIABLE.sub(one, value)
    if isinstance(value, dict):
        return {k: _substitute(v, env, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    return value
