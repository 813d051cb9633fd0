"""A configuration file written for a test and loaded as ``serve`` would load it, with the
environment its ``${NAME}`` references read from; or the problems it is refused for, none
of them quoting a value."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.settings import Settings, SettingsError, load_settings

__all__ = ["ENV", "load", "problems"]

ENV = {
    "NYRA_KEY": "nyra_key_value_123",
    "NYRA_SECRET": "nyra-secret-value-456",
    "NYRA_TOKEN": "nyra-token-value-789",
    "LEYR_CLIENT_ID": "leyr-client-id-value",
    "LEYR_CLIENT_SECRET": "leyr-client-secret-value",
    "ACME_CRM_SECRET": "acme-secret-value-0123456789",
}


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "adapter.toml"
    path.write_text(text)
    return load_settings(path, ENV if env is None else env)


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load(tmp_path, text, env)
    for value in ENV.values():
        assert value not in str(info.value)
    return info.value.problems
