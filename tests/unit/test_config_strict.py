"""Strict configuration: an unknown key, a wrong type or an impossible value is an error
naming the key, its table and the nearest known key, every mistake at once, never a value.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import httpx
import pytest
from config_files import ENV, load, problems

from adapter.auth.clients import load_clients
from adapter.connectors import ConnectorConfigError
from adapter.connectors.config import COMMON_KEYS, SourceOptions, source_options, url_problems
from adapter.connectors.registry import create_connector
from adapter.sandbox import Faults
from adapter.settings import EMBEDDED_DEFAULT, load_settings

NYRA = """
[sources.nyra-city]
connector = "nyra"
base_url = "https://server.nyraai.io/api/external"
timezone = "Asia/Kolkata"
keys = [{ key = "${NYRA_KEY}", secret = "${NYRA_SECRET}", token = "${NYRA_TOKEN}" }]
"""
LEYR = """
[sources.leyr-webdoc]
connector = "leyr"
base_url = "https://api.leyr.io/api"
emr = "webdoc"
care_units = ["L0_1", "L0_2"]
timezone = "Europe/Stockholm"
client_id = "${LEYR_CLIENT_ID}"
client_secret = "${LEYR_CLIENT_SECRET}"
"""
CLIENT = """
[clients.acme-crm]
secret = "${ACME_CRM_SECRET}"
scopes = ["system/Patient.rs", "system/Appointment.cruds"]
sources = ["nyra-city"]
"""
# -- unknown keys -------------------------------------------------------------------------


def test_a_misspelt_source_key_is_named_with_the_nearest(tmp_path):
    found = problems(tmp_path, NYRA + "read_onyl = true\n" + CLIENT)
    assert found == ["[sources.nyra-city]: unknown key 'read_onyl' (did you mean 'read_only'?)"]


def test_a_key_of_another_vendor_is_unknown_to_this_one(tmp_path):
    found = problems(tmp_path, NYRA + 'emr = "webdoc"\n' + CLIENT)
    assert len(found) == 1
    assert found[0].startswith("[sources.nyra-city]: unknown key 'emr' (")


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            "timeout = { conect = 5 }",
            "[sources.nyra-city] timeout: unknown key 'conect' (did you mean 'connect'?)",
        ),
        (
            "retry = { atempts = 2 }",
            "[sources.nyra-city] retry: unknown key 'atempts' (did you mean 'attempts'?)",
        ),
        (
            "rate_limit = { per_secnd = 2 }",
            "[sources.nyra-city] rate_limit: unknown key 'per_secnd' (did you mean 'per_second'?)",
        ),
        (
            "sandbox = { sed = 3 }",
            "[sources.nyra-city] sandbox: unknown key 'sed' (did you mean 'seed'?)",
        ),
        (
            "sandbox = { faults = { latncy = 1 } }",
            "[sources.nyra-city] sandbox.faults: unknown key 'latncy' (did you mean 'latency'?)",
        ),
        (
            "circuit = { failure = 3 }",
            "[sources.nyra-city] circuit: unknown key 'failure' (did you mean 'failures'?)",
        ),
    ],
)
def test_nested_tables_have_fixed_keys(tmp_path, toml, expected):
    assert problems(tmp_path, NYRA + toml + "\n" + CLIENT) == [expected]


def test_each_nyra_key_entry_has_fixed_keys(tmp_path):
    text = NYRA.replace('token = "${NYRA_TOKEN}"', 'tokn = "${NYRA_TOKEN}"')
    assert problems(tmp_path, text + CLIENT) == [
        "[sources.nyra-city] keys[0]: unknown key 'tokn' (did you mean 'token'?)"
    ]


def test_server_and_client_keys_are_checked_and_all_mistakes_said(tmp_path):
    text = (
        "[server]\nmax_cont = 50\nrequest_secnds = 5\n"
        + NYRA
        + CLIENT
        + "scope = []\nrate_limit = { per_minut = 10 }\n"
    )
    assert problems(tmp_path, text) == [
        "[server]: unknown key 'max_cont' (did you mean 'max_count'?)",
        "[server]: unknown key 'request_secnds' (did you mean 'request_seconds'?)",
        "[clients.acme-crm]: unknown key 'scope' (did you mean 'scopes'?)",
        "[clients.acme-crm] rate_limit: unknown key 'per_minut' (did you mean 'per_minute'?)",
    ]


def test_an_unknown_table_or_connector_names_the_nearest(tmp_path):
    text = NYRA.replace('connector = "nyra"', 'connector = "nyar"') + CLIENT + "[source.x]\n"
    found = problems(tmp_path, text)
    assert "unknown top-level table [source] (did you mean [sources]?)" in found
    assert "[sources.nyra-city] connector: unknown connector 'nyar' (did you mean 'nyra'?)" in found


# -- types --------------------------------------------------------------------------------


def test_a_string_where_a_list_is_wanted(tmp_path):
    text = LEYR.replace('care_units = ["L0_1", "L0_2"]', 'care_units = "L0_1"')
    assert problems(tmp_path, text + CLIENT.replace("nyra-city", "leyr-webdoc")) == [
        "[sources.leyr-webdoc] care_units: expected a list of strings, got a string"
    ]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('read_only = "yes"', "read_only: expected a boolean, got a string"),
        ("read_only = 1", "read_only: expected a boolean, got an integer"),
        ('slot_minutes = "15"', "slot_minutes: expected an integer >= 1, got a string"),
        ("queue = 1.5", "queue: expected an integer >= 1, got a float"),
        ("cache_seconds = true", "cache_seconds: expected a number >= 0, got a boolean"),
        ("timeout = 5", "timeout: expected a table (connect, read), got an integer"),
        ('timeout = { read = "30" }', "timeout.read: expected a number > 0, got a string"),
        ("keys = 3", "keys: expected a list of tables, got an integer"),
        ("circuit = { failures = 0 }", "circuit.failures: must be >= 1"),
        ("circuit = { open_seconds = 0 }", "circuit.open_seconds: must be > 0"),
        ("queue = 0", "queue: must be >= 1"),
        ("cache_seconds = -1", "cache_seconds: must be >= 0"),
        ("retry = { attempts = 0 }", "retry.attempts: must be >= 1"),
    ],
)
def test_source_values_have_their_types(tmp_path, toml, expected):
    # ``keys`` replaces the source's own; any other key is added to the source.
    text = NYRA.split("keys = [")[0] if toml.startswith("keys") else NYRA
    text += toml + "\n"
    assert problems(tmp_path, text + CLIENT) == [f"[sources.nyra-city] {expected}"]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('request_seconds = "30"', "request_seconds: expected a number > 0, got a string"),
        ("request_seconds = 0", "request_seconds: must be > 0"),
        ("max_vendor_calls = 0", "max_vendor_calls: must be >= 1"),
        ("max_vendor_calls = 2.5", "max_vendor_calls: expected an integer >= 1, got a float"),
        ("shutdown_seconds = -1", "shutdown_seconds: must be >= 0"),
        ('audit_stdout = "true"', "audit_stdout: expected a boolean, got a string"),
        ('log_format = "xml"', 'log_format: expected "json" or "text"'),
        ('open_access = "yes"', "open_access: expected a boolean, got a string"),
        ('max_count = "100"', "max_count: expected an integer, got a string"),
        (
            'redis_prefix = ""',
            'redis_prefix must be 1 to 64 letters, digits or _ . : - { } (e.g. "fhir-adapter:")',
        ),
        (
            'redis_prefix = "two words:"',
            'redis_prefix must be 1 to 64 letters, digits or _ . : - { } (e.g. "fhir-adapter:")',
        ),
    ],
)
def test_server_values_have_their_types(tmp_path, toml, expected):
    assert problems(tmp_path, f"[server]\n{toml}\n" + NYRA + CLIENT) == [f"[server] {expected}"]


def test_client_values_have_their_types(tmp_path):
    text = NYRA + CLIENT.replace('sources = ["nyra-city"]', 'sources = "nyra-city"')
    assert problems(tmp_path, text) == [
        "[clients.acme-crm] sources: expected a list of strings, got a string"
    ]


# -- variables, time zones, URLs, the audit file ------------------------------------------


def test_all_missing_variables_are_named_at_once_never_a_value(tmp_path):
    env = {"NYRA_KEY": ENV["NYRA_KEY"], "LEYR_CLIENT_ID": ENV["LEYR_CLIENT_ID"]}
    found = problems(tmp_path, NYRA + LEYR + CLIENT, env)
    assert len(found) == 1
    line = found[0]
    assert line.startswith("environment variables not set: ")
    for name in ("NYRA_SECRET", "NYRA_TOKEN", "LEYR_CLIENT_SECRET", "ACME_CRM_SECRET"):
        assert name in line
    assert "NYRA_KEY" not in line and "LEYR_CLIENT_ID" not in line
    assert "[sources.nyra-city] keys[0].secret" in line
    for value in env.values():
        assert value not in line


def test_missing_variables_and_unknown_keys_are_said_together(tmp_path):
    found = problems(tmp_path, NYRA + "read_onyl = true\n" + CLIENT, {})
    assert len(found) == 2
    assert found[0].startswith("environment variables not set: NYRA_KEY")
    assert "read_onyl" in found[1]


def test_an_unknown_time_zone_is_one_clear_line(tmp_path):
    text = NYRA.replace("Asia/Kolkata", "Asia/Kolkatta")
    assert problems(tmp_path, text + CLIENT) == [
        "[sources.nyra-city] timezone: unknown IANA time zone (did you mean 'Asia/Kolkata'?)"
    ]
    text = NYRA.replace("Asia/Kolkata", "Nowhere/At-All")
    assert problems(tmp_path, text + CLIENT) == [
        "[sources.nyra-city] timezone: unknown IANA time zone"
    ]


@pytest.mark.parametrize(
    ("url", "taken"),
    [
        ("https://api.leyr.io/api", True),
        ("http://127.0.0.1:5001", True),
        ("http://127.9.8.7/api", True),
        ("http://localhost:5002/api", True),
        ("http://[::1]:5002", True),
        ("http://api.leyr.io/api", False),
        ("http://10.0.0.5/api", False),
        ("ftp://api.leyr.io", False),
        ("api.leyr.io", False),
    ],
)
def test_a_vendor_is_reached_over_https_or_on_this_machine(url, taken):
    found = url_problems("leyr-webdoc", {"base_url": url})
    assert (
        found == []
        if taken
        else found
        == [
            "[sources.leyr-webdoc] base_url: must be an https URL "
            "(plain http only to a loopback host: 127.0.0.0/8, ::1, localhost)"
        ]
    )


def test_the_url_rule_holds_where_the_connector_goes_on_the_network():
    config = {
        "connector": "nyra",
        "base_url": "http://nyra.example",
        "timezone": "Asia/Kolkata",
        "keys": [{"key": "nyra_k", "secret": "s", "token": "t"}],
    }
    with pytest.raises(
        ConnectorConfigError, match=r"\[sources.nyra-x\] base_url: must be an https URL"
    ):
        create_connector("nyra-x", config)
    # A transport handed in (a test's, a benchmark's) reaches no network.
    create_connector("nyra-x", config, transport=httpx.MockTransport(lambda r: httpx.Response(500)))


def test_from_config_says_every_mistake_of_its_source():
    config = {
        "connector": "leyr",
        "base_url": "https://api.leyr.io/api",
        "emr": "webdoc",
        "care_units": "L0_1",
        "timezone": "Europe/Stockholm",
        "client_id": "i",
        "client_secret": "s",
        "read_onyl": True,
    }
    with pytest.raises(ConnectorConfigError) as info:
        create_connector("leyr-webdoc", config)
    assert str(info.value).splitlines() == [
        "[sources.leyr-webdoc] care_units: expected a list of strings, got a string",
        "[sources.leyr-webdoc]: unknown key 'read_onyl' (did you mean 'read_only'?)",
    ]


def test_the_audit_directory_must_exist(tmp_path):
    missing = tmp_path / "nowhere" / "audit.ndjson"
    text = f'[server]\naudit_ndjson = "{missing}"\n' + NYRA + CLIENT
    assert problems(tmp_path, text) == [
        f"[server] audit_ndjson: directory {missing.parent} does not exist"
    ]
    (tmp_path / "a-file").write_text("")
    text = f'[server]\naudit_ndjson = "{tmp_path / "a-file" / "audit.ndjson"}"\n' + NYRA + CLIENT
    assert problems(tmp_path, text) == [
        f"[server] audit_ndjson: {tmp_path / 'a-file'} is not a directory"
    ]


def test_an_audit_path_is_said_with_the_other_mistakes(tmp_path):
    missing = tmp_path / "nowhere" / "audit.ndjson"
    text = f'[server]\naudit_ndjson = "{missing}"\nlog_format = "xml"\n' + NYRA + CLIENT
    assert problems(tmp_path, text) == [
        '[server] log_format: expected "json" or "text"',
        f"[server] audit_ndjson: directory {missing.parent} does not exist",
    ]


def test_the_audit_file_must_be_writable(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    # The mode bits speak for an ordinary user; os.access is told the same for root,
    # who may write anywhere.
    locked.chmod(0o500)
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == locked and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    try:
        text = f'[server]\naudit_ndjson = "{locked / "audit.ndjson"}"\n' + NYRA + CLIENT
        assert problems(tmp_path, text) == [
            f"[server] audit_ndjson: directory {locked} is not writable"
        ]
    finally:
        locked.chmod(0o700)
    text = f'[server]\naudit_ndjson = "{tmp_path}"\n' + NYRA + CLIENT
    assert problems(tmp_path, text) == [
        f"[server] audit_ndjson: {tmp_path} is a directory, not a file"
    ]
    fine = tmp_path / "audit.ndjson"
    text = f'[server]\naudit_ndjson = "{fine}"\n' + NYRA + CLIENT
    assert load(tmp_path, text).audit_ndjson == str(fine)
    assert not fine.exists()  # checked, not created


# -- the new keys, and the old ones unchanged ---------------------------------------------


def test_new_keys_are_taken_with_their_defaults(tmp_path):
    settings = load(tmp_path, NYRA + CLIENT)
    assert (
        settings.request_seconds,
        settings.max_vendor_calls,
        settings.shutdown_seconds,
        settings.audit_stdout,
        settings.log_format,
    ) == (30.0, 20, 10.0, False, "json")
    assert source_options(settings.sources["nyra-city"]) == SourceOptions(0.0, 5, 30.0, None)


def test_new_keys_are_carried(tmp_path):
    text = (
        "[server]\nrequest_seconds = 12.5\nmax_vendor_calls = 8\nshutdown_seconds = 0\n"
        'audit_stdout = true\nlog_format = "text"\n'
        + NYRA
        + "cache_seconds = 2\ncircuit = { failures = 3, open_seconds = 7.5 }\nqueue = 10\n"
        + CLIENT
    )
    settings = load(tmp_path, text)
    assert (
        settings.request_seconds,
        settings.max_vendor_calls,
        settings.shutdown_seconds,
        settings.audit_stdout,
        settings.log_format,
    ) == (12.5, 8, 0.0, True, "text")
    assert source_options(settings.sources["nyra-city"]) == SourceOptions(2.0, 3, 7.5, 10)


def test_the_documented_configuration_still_loads(tmp_path):
    text = (
        '[server]\npublic_base_url = "https://fhir.example.org/fhir"\ndefault_count = 20\n'
        "max_count = 100\ntoken_minutes = 5\n"
        'audit_ndjson = "'
        + str(tmp_path / "audit.ndjson")
        + '"\n'
        + LEYR
        + "timeout = { connect = 5, read = 30 }\n"
        + "retry = { attempts = 3, base = 0.2, cap = 5, max_retry_after = 30 }\n"
        + "read_only = true\n"
        + NYRA
        + "rate_limit = { per_second = 12, per_minute = 60, second_window = 1.0, "
        + "minute_window = 60.0, max_wait = 65 }\nslot_minutes = 15\n"
        + '\n[sources.nyra-demo]\nconnector = "nyra"\ntimezone = "Asia/Kolkata"\n'
        + "sandbox = { seed = 7, patients = 20, keys = 2, faults = { latency = 0.0 } }\n"
        + CLIENT
        + "rate_limit = { per_minute = 600 }\n"
    )
    settings = load(tmp_path, text)
    assert sorted(settings.sources) == ["leyr-webdoc", "nyra-city", "nyra-demo"]
    assert settings.sources["leyr-webdoc"]["client_secret"] == ENV["LEYR_CLIENT_SECRET"]


def test_the_embedded_default_is_valid():
    settings = load_settings(None, {})
    assert sorted(settings.sources) == sorted(EMBEDDED_DEFAULT["sources"])


def test_the_declared_sandbox_keys_are_the_sandboxes_own():
    import adapter.sandbox

    sandbox = COMMON_KEYS["sandbox"]
    assert set(sandbox) == adapter.sandbox._KEYS
    assert set(sandbox["faults"]) == {f.name for f in fields(Faults) if not f.name.startswith("_")}


def test_clients_loaded_directly_name_the_nearest_key():
    with pytest.raises(ValueError, match=r"unknown key 'secert' \(did you mean 'secret'\?\)"):
        load_clients({"x": {"secert": "s" * 20, "scopes": []}}, ["a"])
