"""Configuration: secrets from the environment, named when missing, never shown."""

from __future__ import annotations

import pytest

from adapter.cli import main
from adapter.settings import SettingsError, load_settings
from adapter.transport import LeyrCredentials, NyraKey

CONFIG = """
[sources.nyra-city]
connector = "nyra"
base_url = "https://nyra.example/api/external"
timezone = "Asia/Kolkata"
keys = [{ key = "${NYRA_KEY}", secret = "${NYRA_SECRET}", token = "${NYRA_TOKEN}" }]

[clients.acme]
secret = "${ACME_SECRET}"
scopes = ["system/Patient.rs"]
"""
ENV = {
    "NYRA_KEY": "nyra_key_value_123",
    "NYRA_SECRET": "nyra-secret-value-456",
    "NYRA_TOKEN": "abcdef0123456789",
    "ACME_SECRET": "acme-secret-value-0123456789",
}


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "adapter.toml"
    path.write_text(CONFIG)
    return path


def test_a_missing_variable_is_named_never_a_value(config):
    env = {k: v for k, v in ENV.items() if k != "NYRA_SECRET"}
    with pytest.raises(SettingsError) as info:
        load_settings(config, env)
    assert "NYRA_SECRET" in str(info.value)
    for value in env.values():
        assert value not in str(info.value)


def test_reprs_hold_no_secret(config):
    settings = load_settings(config, ENV)
    texts = [
        repr(settings),
        repr(settings.clients["acme"]),
        repr(NyraKey(ENV["NYRA_KEY"], ENV["NYRA_SECRET"], ENV["NYRA_TOKEN"])),
        repr(LeyrCredentials("client-id-xyz", "leyr-secret-789")),
        str(settings.clients),
    ]
    for text in texts:
        for value in [*ENV.values(), "leyr-secret-789"]:
            assert value not in text
    assert settings.clients["acme"].secret_matches(ENV["ACME_SECRET"])
    assert not settings.clients["acme"].secret_matches(ENV["ACME_SECRET"] + "x")


def test_a_configuration_without_clients_needs_open_access_said(tmp_path):
    path = tmp_path / "open.toml"
    path.write_text(CONFIG.split("[clients.acme]")[0])
    with pytest.raises(SettingsError, match="clients"):
        load_settings(path, ENV)
    path.write_text("[server]\nopen_access = true\n" + CONFIG.split("[clients.acme]")[0])
    assert load_settings(path, ENV).open_access


def test_check_config_says_what_is_wrong_without_values(config, monkeypatch, capsys):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["check-config", str(config)]) == 0
    ok = capsys.readouterr().out
    assert "source nyra-city" in ok and "client acme" in ok
    monkeypatch.delenv("ACME_SECRET")
    assert main(["check-config", str(config)]) == 2
    captured = capsys.readouterr()
    assert "ACME_SECRET" in captured.err
    for value in ENV.values():
        assert value not in captured.out + captured.err


def test_client_settings_are_checked(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(CONFIG.replace('scopes = ["system/Patient.rs"]', 'scopes = ["patient/*.read"]'))
    with pytest.raises(SettingsError, match=r"\[clients.acme\]: not a SMART system scope"):
        load_settings(path, ENV)
    path.write_text(CONFIG + '\n[clients.short]\nsecret = "tiny"\nscopes = []\n')
    with pytest.raises(SettingsError, match="at least 16"):
        load_settings(path, ENV)
    path.write_text(
        CONFIG.replace('scopes = ["system/Patient.rs"]', 'scopes = []\nsources = ["elsewhere"]')
    )
    with pytest.raises(SettingsError, match="unknown source"):
        load_settings(path, ENV)
