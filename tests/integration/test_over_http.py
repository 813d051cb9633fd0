"""Sandboxes as real HTTP peers: under uvicorn on a loopback port, and from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest
from serving import on_a_port

from adapter.connectors.base import iterate
from adapter.connectors.registry import create_connector
from adapter.fhir.search import SearchParam, SearchRequest
from adapter.sandbox import LeyrSandbox
from mappings import decode_id

pytestmark = pytest.mark.anyio


@pytest.fixture
def leyr_on_a_port():
    """A Leyr sandbox served by uvicorn on 127.0.0.1 (a free port), in a thread."""
    sandbox = LeyrSandbox(seed=4, patients=40)
    with on_a_port(sandbox.app) as base_url:
        yield sandbox, base_url


async def test_the_leyr_connector_over_real_http(leyr_on_a_port):
    sandbox, base_url = leyr_on_a_port
    config = {"connector": "leyr", **sandbox.defaults(), "base_url": base_url}
    connector = create_connector("leyr-http", config)  # no transport: real sockets
    try:
        patients = [p async for p in iterate(connector, SearchRequest("Patient", count=7))]
        assert len(patients) == 40
        assert await connector.read("Patient", patients[5]["id"]) == patients[5]
        ref = f"Patient/{patients[5]['id']}"
        request = SearchRequest("Appointment", (SearchParam("patient", (ref,)),))
        appointments = [a async for a in iterate(connector, request)]
        vendor_id = decode_id(patients[5]["id"]).vendor_id
        held = [a for t in sandbox.appointments.values() for a in t if a["patient_id"] == vendor_id]
        assert len(appointments) == len(held)
    finally:
        await connector.aclose()


async def test_the_cli_sandbox_prints_a_configuration_that_works():
    command = [
        sys.executable, "-m", "adapter.cli", "sandbox", "nyra",
        "--port", "0", "--seed", "7", "--patients", "25",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        for line in proc.stdout:  # blocks until the sandbox has bound its port and printed
            lines.append(line)
            if line.startswith("Ready:"):
                break
        text = "".join(lines)
        assert "x-api-key:     nyra_" in text
        toml = text.split("Source configuration:\n", 1)[1].rsplit("Ready:", 1)[0]
        source = tomllib.loads(toml.replace("\n  ", "\n"))["sources"]["nyra-sandbox"]
        connector = create_connector("nyra-cli", source)
        try:
            patients = [p async for p in iterate(connector, SearchRequest("Patient"))]
        finally:
            await connector.aclose()
        assert len(patients) == 25
    finally:
        proc.terminate()
        proc.wait(timeout=10)
