"""The command line as a newcomer meets it: ``--help`` everywhere gives a purpose and an
example, ``version`` says the installed version, and ``serve`` binds its address before
it prints anything (a busy port is one line and exit code 1, never a fresh demo secret and
token command for a server that is not there).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
from importlib.metadata import version

import httpx
import pytest
from serve_command import COMMAND, bound_port, first_line

from adapter.cli import _parser, main

START_SECONDS = 60.0  # a safety net: serve that says nothing by then is stopped


def subcommands() -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    return capsys.readouterr().out


def test_the_top_help_names_every_command_and_gives_examples(capsys):
    text = help_of(["--help"], capsys)
    assert "FHIR R4" in text and "examples:" in text
    for name in subcommands():
        assert name in text


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_each_commands_help_gives_its_purpose_and_an_example(name, capsys):
    text = help_of([name, "--help"], capsys)
    purpose = subcommands()[name].description or ""
    assert len(purpose) > 10
    assert " ".join(purpose.split()) in " ".join(text.split())
    examples = text.split("examples:\n", 1)[1]
    assert f"fhir-adapter {name}" in examples
    parser = subcommands()[name]
    for action in parser._actions:  # every option says what it is for
        if action.option_strings and action.dest != "help":
            assert action.help, f"{name} {action.option_strings} has no help"


def test_version_is_the_installed_one(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"fhir-adapter {version('fhir-adapter')}"
    with pytest.raises(SystemExit):
        main(["--version"])
    assert version("fhir-adapter") in capsys.readouterr().out


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_ADAPTER_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def test_serve_on_a_busy_port_says_so_in_one_line_and_prints_no_secret(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = subprocess.run(
            [str(COMMAND), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
        )
    assert done.returncode == 1
    assert done.stderr.strip() == f"cannot listen on 127.0.0.1:{port}: Address already in use"
    assert done.stdout == ""  # no banner, no demo secret, no token command


def test_serve_prints_its_banner_once_the_port_answers(tmp_path):
    serve = subprocess.Popen(
        [str(COMMAND), "serve", "--port", "0"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert serve.stdout is not None
        first = first_line(serve, serve.stdout, START_SECONDS)
        # Port 0 asked for: the system picked one, and the first line says which.
        port = bound_port(first)
        assert first.startswith("fhir-adapter serving") and f"127.0.0.1:{port}/fhir" in first
        # The address is taken before the banner: a connection is accepted at once (the
        # app answers it as soon as its start-up is done).
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        banner = "".join(serve.stdout.readline() for _ in range(6))
        assert "TOKEN=$(curl" in banner and f"127.0.0.1:{port}/auth/token" in banner
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=START_SECONDS)
        assert r.status_code == 200
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=30)
