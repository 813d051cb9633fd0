"""`fhir-adapter serve` as an operator runs it: SIGHUP re-reads the configuration with no
request dropped, one SIGTERM stops it, and what it writes to the console is JSON lines.

Each test starts the real command in a subprocess on a loopback port and follows what it
prints (no sleeps: it reads the server's output until the line it waits for)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from serve_command import COMMAND, bound_port, first_line
from workers import Facade, vendor_on_a_port

from adapter.sandbox import NyraSandbox

CONFIG = """
[server]
request_seconds = 10

[sources.nyra-demo]
connector = "nyra"
timezone = "Asia/Kolkata"
sandbox = {{ seed = 3, patients = 20, keys = 3 }}

[clients.first]
secret = "first-client-secret-0123"
scopes = ["system/*.rs"]
{extra}
"""
SECOND = """
[clients.second]
secret = "second-client-secret-0123"
scopes = ["system/Patient.rs"]
"""


class Server:
    def __init__(self, tmp_path: Path, text: str = CONFIG.format(extra="")) -> None:
        self.config = tmp_path / "adapter.toml"
        self.config.write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_ADAPTER_")}
        # Port 0: serve binds a port the system picks, and its first line says which.
        self.proc = subprocess.Popen(
            [str(COMMAND), "serve", "--config", str(self.config), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        self.port = bound_port(first_line(self.proc, self.proc.stdout, 60))
        self.base = f"http://127.0.0.1:{self.port}"
        self.wait_for("Application startup complete")

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """Read the server's console until a line holds ``text``."""
        assert self.proc.stderr is not None
        timer = threading.Timer(timeout, self.proc.kill)
        timer.start()
        try:
            for line in self.proc.stderr:
                self.lines.append(line)
                if text in line:
                    return line
        finally:
            timer.cancel()
        raise AssertionError(f"the server ended before saying {text!r}: {self.lines[-5:]}")

    def token(self, client: str, secret: str) -> httpx.Response:
        return httpx.post(
            f"{self.base}/auth/token",
            data={"grant_type": "client_credentials"},
            auth=(client, secret),
            timeout=10,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.stop()


def test_sighup_reads_the_configuration_anew_without_dropping_a_request(server):
    first = server.token("first", "first-client-secret-0123").json()["access_token"]
    assert server.token("second", "second-client-secret-0123").status_code == 401
    statuses: list[int | str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.base, timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.get(
                        "/fhir/Patient?_count=2", headers={"Authorization": f"Bearer {first}"}
                    )
                    statuses.append(r.status_code)
                except httpx.HTTPError as exc:
                    statuses.append(type(exc).__name__)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        server.config.write_text(CONFIG.format(extra=SECOND))
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for("configuration reloaded")
        second = server.token("second", "second-client-secret-0123")
        assert second.status_code == 200
    finally:
        stop.set()
        worker.join(timeout=30)
    assert statuses and set(statuses) == {200}, set(statuses)


def test_a_configuration_that_does_not_load_is_refused_and_the_old_one_serves_on(server):
    server.config.write_text(CONFIG.format(extra="[clients.broken]\nsecrt = 'x'\n"))
    server.proc.send_signal(signal.SIGHUP)
    line = server.wait_for("configuration not reloaded")
    assert "secrt" in line and "did you mean 'secret'" in line
    assert server.token("first", "first-client-secret-0123").status_code == 200


def test_one_sigterm_stops_the_server(server):
    server.proc.send_signal(signal.SIGTERM)
    server.wait_for("Finished server process")
    # uvicorn ends by raising the signal it handled, as a process stopped by it would.
    assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM)


def test_the_console_gets_json_lines_without_patient_data(server):
    token = server.token("first", "first-client-secret-0123").json()["access_token"]
    r = httpx.get(
        f"{server.base}/fhir/Patient",
        params={"name": "Zebulon", "phone": "9876543210"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200
    line = server.wait_for('"event"')
    record = json.loads(line)
    assert record["event"] == "request" and record["status"] == 200
    assert "Zebulon" not in line and "9876543210" not in line


def test_uvicorns_own_lines_are_in_the_same_json_format(server):
    # Everything said up to "Application startup complete", uvicorn's lines included.
    records = [json.loads(line) for line in server.lines]
    started = [r for r in records if r.get("message") == "Application startup complete."]
    assert [(r["logger"], r["level"], r["event"]) for r in started] == [
        ("uvicorn.error", "info", "message")
    ]


OPEN = """
[server]
open_access = true

[sources.nyra-demo]
connector = "nyra"
timezone = "Asia/Kolkata"
sandbox = {{ seed = {seed}, patients = 20 }}
"""
PATIENT = {
    "resourceType": "Patient",
    "meta": {"source": "nyra-demo"},
    "name": [{"family": "Quennell", "given": ["Maja"]}],
    "gender": "female",
    "birthDate": "1991-04-12",
    "telecom": [{"system": "phone", "value": "+919811111111"}],
}


def test_an_in_process_sandbox_keeps_its_data_across_sighup(tmp_path):
    server = Server(tmp_path, OPEN.format(seed=3))
    try:
        created = httpx.post(
            f"{server.base}/fhir/Patient",
            json=PATIENT,
            headers={"content-type": "application/fhir+json"},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        where = f"{server.base}/fhir/Patient/{created.json()['id']}"
        server.proc.send_signal(signal.SIGHUP)  # the same configuration
        line = server.wait_for("configuration reloaded")
        assert json.loads(line)["message"] == "configuration reloaded"
        assert httpx.get(where, timeout=10).status_code == 200

        # Its sandbox configured otherwise, the source gets a new one, and is told so.
        server.config.write_text(OPEN.format(seed=4))
        server.proc.send_signal(signal.SIGHUP)
        line = server.wait_for("configuration reloaded")
        assert json.loads(line)["message"] == (
            "configuration reloaded; sandbox of nyra-demo made anew from its changed "
            "settings (its data too)"
        )
        assert httpx.get(where, timeout=10).status_code == 404
    finally:
        server.stop()


def _workers_config(base_url: str, credentials: dict[str, str], extra: str = "") -> str:
    key = ", ".join(f'{name} = "{value}"' for name, value in credentials.items())
    return f"""
[server]
open_access = true
shutdown_seconds = 1

[sources.nyra-on-a-port]
connector = "nyra"
base_url = "{base_url}"
timezone = "Asia/Kolkata"
keys = [{{ {key} }}]
{extra}"""


def test_with_two_workers_a_configuration_that_does_not_load_is_one_line(tmp_path):
    sandbox = NyraSandbox(seed=3, patients=5, keys=1)
    credentials = sandbox.api_keys()[0].credentials()
    config = tmp_path / "adapter.toml"
    with vendor_on_a_port(sandbox.app) as base_url:
        config.write_text(_workers_config(base_url, credentials))
        facade = Facade(config, workers=2)
        try:
            facade.wait_until_started()
            config.write_text(_workers_config(base_url, credentials, "[server.typo]\n"))
            facade.proc.send_signal(signal.SIGHUP)
            (refused,) = facade.said_until("configuration not reloaded")
            message = json.loads(refused)["message"]
            assert message.startswith("configuration not reloaded: [server]: unknown key 'typo'")
            assert message.endswith("; still serving the previous one")
            # Put right, the next SIGHUP is taken: nothing else was said in between.
            config.write_text(_workers_config(base_url, credentials))
            facade.proc.send_signal(signal.SIGHUP)
            (taken,) = facade.said_until("configuration reloaded")
            assert json.loads(taken)["level"] == "warning"
            assert httpx.get(f"{facade.base}/healthz", timeout=10).status_code == 200
            # Every line, the supervisor's and the workers', uvicorn's and ours: JSON.
            assert [json.loads(line)["at"][-1] for line in facade.lines] == ["Z"] * len(
                facade.lines
            )
        finally:
            facade.stop()
