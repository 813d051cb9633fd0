"""``fhir-adapter serve`` and ``check-config`` on a configuration mistake: one line per
mistake on standard error, exit code 2, never a traceback or a value; ``check-config
--probe`` asks each source's vendor once and says what it answered."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from adapter.cli import _probe_failure, main
from adapter.connectors.registry import create_connector
from adapter.sandbox import ALL_PERMISSIONS, LeyrSandbox, NyraSandbox
from adapter.settings import CONFIG_ENV, CURSOR_KEY_ENV, DEMO_SECRET_ENV, TOKEN_KEY_ENV
from adapter.transport import (
    AuthenticationRejected,
    MalformedResponse,
    NotFound,
    PermissionMissing,
    RateLimited,
    VendorRejected,
    VendorTimeout,
    VendorUnavailable,
)

OPEN = "[server]\nopen_access = true\n"
NYRA_VENDOR = """
[sources.nyra-city]
connector = "nyra"
base_url = "{base_url}"
timezone = "Asia/Kolkata"
keys = [{{ key = "nyra_key_value", secret = "nyra-secret-value", token = "nyra-token-value" }}]
"""
SECRETS = ("nyra-secret-value", "nyra-token-value", "not-the-secret", "wrong-secret-value")


@pytest.fixture(autouse=True)
def own_environment():
    """What the surrounding shell may hold does not leak in, and what serve exports for
    its workers does not leak out into other tests."""
    saved = dict(os.environ)
    for name in (CONFIG_ENV, CURSOR_KEY_ENV, TOKEN_KEY_ENV, DEMO_SECRET_ENV):
        os.environ.pop(name, None)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def no_server(monkeypatch):
    """serve must stop before it serves: uvicorn is never started."""

    def refuse(*args, **kwargs):
        raise AssertionError("serve went on to start the server")

    monkeypatch.setattr("uvicorn.run", refuse)
    monkeypatch.setattr("adapter.cli._workers", refuse)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "adapter.toml"
    path.write_text(text)
    return str(path)


def errors_of(captured) -> list[str]:
    lines = captured.err.splitlines()
    assert all(line.startswith("configuration error: ") for line in lines), lines
    assert "Traceback" not in captured.err + captured.out
    for secret in SECRETS:
        assert secret not in captured.err + captured.out
    return [line.removeprefix("configuration error: ") for line in lines]


# -- configuration mistakes ---------------------------------------------------------------


def test_check_config_says_each_mistake_on_its_line(tmp_path, capsys):
    text = OPEN + NYRA_VENDOR.format(base_url="https://nyra.example")
    text += "read_onyl = true\n"
    text += '\n[sources.leyr-webdoc]\nconnector = "leyr"\nbase_url = "https://leyr.example"\n'
    text += 'emr = "webdoc"\ncare_units = "L0_1"\ntimezone = "Europe/Stockholm"\n'
    text += 'client_id = "i"\nclient_secret = "not-the-secret"\n'
    assert main(["check-config", write(tmp_path, text)]) == 2
    captured = capsys.readouterr()
    assert errors_of(captured) == [
        "[sources.nyra-city]: unknown key 'read_onyl' (did you mean 'read_only'?)",
        "[sources.leyr-webdoc] care_units: expected a list of strings, got a string",
    ]
    assert captured.out == ""


def test_check_config_names_every_missing_variable_in_one_line(tmp_path, capsys, monkeypatch):
    text = OPEN + NYRA_VENDOR.format(base_url="https://nyra.example").replace(
        '"nyra-secret-value"', '"${NYRA_SECRET}"'
    ).replace('"nyra-token-value"', '"${NYRA_TOKEN}"')
    monkeypatch.delenv("NYRA_SECRET", raising=False)
    monkeypatch.delenv("NYRA_TOKEN", raising=False)
    assert main(["check-config", write(tmp_path, text)]) == 2
    [line] = errors_of(capsys.readouterr())
    assert line.startswith("environment variables not set: NYRA_SECRET (")
    assert "NYRA_TOKEN" in line


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda t: t.replace("Asia/Kolkata", "Asia/Kolkatta"),
            "[sources.nyra-city] timezone: unknown IANA time zone (did you mean 'Asia/Kolkata'?)",
        ),
        (
            lambda t: t.replace("https://nyra.example", "http://nyra.example"),
            "[sources.nyra-city] base_url: must be an https URL "
            "(plain http only to a loopback host: 127.0.0.0/8, ::1, localhost)",
        ),
        (
            lambda t: t + '[server.x]\n"y" = 1\n',
            "[server]: unknown key 'x' (known: audit_ndjson, audit_stdout, body_seconds, "
            "cache_mb, cursor_key, default_count, forwarded_allow_ips, lanes, log_format, "
            "max_count, max_vendor_calls, open_access, public_base_url, redis_prefix, redis_url, "
            "request_seconds, shutdown_seconds, token_key, token_minutes, trusted_hosts)",
        ),
    ],
)
def test_check_config_says_a_bad_value_in_one_line(tmp_path, capsys, change, expected):
    text = change(OPEN + NYRA_VENDOR.format(base_url="https://nyra.example"))
    assert main(["check-config", write(tmp_path, text)]) == 2
    assert errors_of(capsys.readouterr()) == [expected]


def test_an_unwritable_audit_path_is_one_line(tmp_path, capsys):
    audit = tmp_path / "no-such-dir" / "audit.ndjson"
    text = OPEN + f'audit_ndjson = "{audit}"\n' + NYRA_VENDOR.format(base_url="https://n.example")
    assert main(["check-config", write(tmp_path, text)]) == 2
    assert errors_of(capsys.readouterr()) == [
        f"[server] audit_ndjson: directory {audit.parent} does not exist"
    ]


def test_a_file_that_is_not_toml_is_one_line(tmp_path, capsys):
    assert main(["check-config", write(tmp_path, "[sources\n")]) == 2
    [line] = errors_of(capsys.readouterr())
    assert "is not valid TOML" in line


def test_serve_refuses_a_mistake_before_serving(tmp_path, capsys, no_server):
    text = OPEN + NYRA_VENDOR.format(base_url="https://nyra.example") + "read_onyl = true\n"
    assert main(["serve", "--config", write(tmp_path, text)]) == 2
    assert errors_of(capsys.readouterr()) == [
        "[sources.nyra-city]: unknown key 'read_onyl' (did you mean 'read_only'?)"
    ]
    # Nothing was exported for workers that will not start.
    assert CONFIG_ENV not in os.environ and CURSOR_KEY_ENV not in os.environ


def test_serve_refuses_several_workers_over_sandboxes(capsys, no_server):
    assert main(["serve", "--workers", "2"]) == 2
    [line] = errors_of(capsys.readouterr())
    assert line.startswith(
        "--workers 2 with in-process sandbox source(s) leyr-sandbox, nyra-sandbox: each "
        "worker would hold its own sandbox, so a record created through one worker is not "
        "found through another"
    )
    assert DEMO_SECRET_ENV not in os.environ and TOKEN_KEY_ENV not in os.environ


def test_serve_takes_several_workers_over_vendors(tmp_path, capsys, monkeypatch):
    served = {}

    class Supervisor:  # uvicorn's, which would start the workers
        def __init__(self, config, host):
            served.update(workers=config.workers, target=config.app, factory=config.factory)

        def run(self):
            pass

    monkeypatch.setattr("adapter.cli._workers", Supervisor)
    monkeypatch.setattr("adapter.ops.logs.configure", lambda settings: None)  # stdout is captured
    text = OPEN + NYRA_VENDOR.format(base_url="https://nyra.example")
    assert main(["serve", "--config", write(tmp_path, text), "--workers", "3"]) == 0
    assert served == {"workers": 3, "target": "adapter.app:app_from_env", "factory": True}
    # The workers read the configuration and the shared keys from the environment.
    assert os.environ[CONFIG_ENV].endswith("adapter.toml") and CURSOR_KEY_ENV in os.environ


def test_a_real_run_exits_2_with_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(OPEN + NYRA_VENDOR.format(base_url="https://nyra.example") + "read_onyl = 1\n")
    command = Path(sys.executable).with_name("fhir-adapter")
    env = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    run = subprocess.run(
        [str(command), "check-config", "bad.toml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.splitlines() == [
        "configuration error: [sources.nyra-city]: unknown key 'read_onyl' "
        "(did you mean 'read_only'?)"
    ]


# -- probing the vendors ------------------------------------------------------------------

SANDBOXES = """
[sources.leyr-demo]
connector = "leyr"
timezone = "Europe/Stockholm"
sandbox = { seed = 7, patients = 5 }

[sources.nyra-demo]
connector = "nyra"
timezone = "Asia/Kolkata"
sandbox = { seed = 7, patients = 5, keys = 2 }
"""


def probe_lines(out: str) -> dict[str, str]:
    after = out.split("probe (one call per source):\n", 1)[1]
    return dict(line.strip().removeprefix("source ").split(": ", 1) for line in after.splitlines())


def test_probe_says_ok_for_sources_that_answer(tmp_path, capsys):
    assert main(["check-config", write(tmp_path, OPEN + SANDBOXES), "--probe"]) == 0
    assert probe_lines(capsys.readouterr().out) == {"leyr-demo": "ok", "nyra-demo": "ok"}


def test_probe_finds_a_wrong_vendor_secret(tmp_path, capsys):
    text = OPEN + SANDBOXES.replace(
        "patients = 5 }\n", 'patients = 5 }\nclient_secret = "not-the-secret"\n', 1
    ).replace(
        "keys = 2 }\n",
        "keys = 2 }\nkeys = [{ key = 'nyra_unknown', secret = 'wrong-secret-value', "
        "token = 'nyra-token-value' }]\n",
    )
    assert main(["check-config", write(tmp_path, text), "--probe"]) == 1
    captured = capsys.readouterr()
    assert "configuration " in captured.out and ": OK" in captured.out  # the file is fine
    assert probe_lines(captured.out) == {
        "leyr-demo": "credentials refused (401)",
        "nyra-demo": "credentials refused (401)",
    }
    for secret in SECRETS:
        assert secret not in captured.out + captured.err


def test_probe_says_a_vendor_is_unreachable(tmp_path, capsys):
    # A loopback port nobody listens on: held bound, never listening, through the probe,
    # so that a connection to it is refused and no other process can take it meanwhile.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        text = OPEN + NYRA_VENDOR.format(base_url=f"http://127.0.0.1:{port}")
        assert main(["check-config", write(tmp_path, text), "--probe"]) == 1
    assert probe_lines(capsys.readouterr().out) == {"nyra-city": "unreachable"}


@pytest.mark.anyio
async def test_a_probe_names_the_permission_a_key_lacks():
    sandbox = NyraSandbox(seed=7, patients=3)
    grant = sandbox.issue_key(ALL_PERMISSIONS - {"patients:read"})
    config = {"connector": "nyra", "timezone": "Asia/Kolkata", "keys": [grant.credentials()]}
    connector = create_connector("nyra-x", config, transport=sandbox.transport())
    try:
        with pytest.raises(PermissionMissing) as info:
            await connector.probe()
    finally:
        await connector.aclose()
    assert _probe_failure(info.value) == "permission missing: patients:read"


@pytest.mark.anyio
async def test_a_probe_is_one_call():
    sandbox = LeyrSandbox(seed=7, patients=3)
    calls = []
    transport = sandbox.transport()
    handle = transport.handle_async_request

    async def counted(request):
        calls.append(request.url.path)
        return await handle(request)

    transport.handle_async_request = counted
    config = {"connector": "leyr", **sandbox.defaults()}
    connector = create_connector("leyr-x", config, transport=transport)
    try:
        await connector.probe()
    finally:
        await connector.aclose()
    assert calls == [f"/emrs/{sandbox.emr}/care-units"]


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (AuthenticationRejected("s"), "credentials refused (401)"),
        (PermissionMissing("s", None), "permission missing: one the vendor does not name"),
        (VendorTimeout("s", None, "GET timed out"), "timed out"),
        (TimeoutError(), "timed out"),
        (VendorUnavailable("s", None, "connection failed"), "unreachable"),
        (VendorUnavailable("s", 503, "Service Unavailable"), "unavailable (503)"),
        (RateLimited("s", 429, "rate limit exceeded", 30.0), "rate limited (429)"),
        (
            NotFound("s", 404, "not found"),
            "not found (404): the vendor knows no such route; check base_url",
        ),
        (
            MalformedResponse("s", 200, "body is not JSON"),
            "answered in a shape the connector does not know (200)",
        ),
        (VendorRejected("s", 418, "teapot"), "refused (418)"),
        (KeyError("secret-looking-key"), "failed (KeyError)"),
    ],
)
def test_probe_failures_are_said_by_kind_never_by_message(error, said):
    assert _probe_failure(error) == said
