"""The README's walkthrough, pasted in order as a newcomer would.

``fhir-adapter serve`` runs as ``make run`` runs it (the embedded default: two in-process
sandbox sources, the demo client) on a free port; the ``TOKEN=...`` line it prints is the
first command, then every ``sh`` block from "Quick start" to the end of "Analysts", in
order, in one bash (``-euo pipefail``: a command that fails stops the run,
as an error answer makes ``fhir``/``curl --fail`` fail). The README's ports
(8080 for the service, 9009 for the notification receiver) are swapped for free ones,
each bound by the process that listens on it: ``serve --port 0`` says in its first line
which port it got, and the receiver, binding port 0, writes its port to a file that the
script reads before the Subscription names it.

Needs ``bash``, ``curl`` and ``jq`` (the README's own prerequisites); without them the
test is skipped, saying which is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from serve_command import COMMAND, bound_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
START_SECONDS = 60.0
RUN_SECONDS = 300.0


def walkthrough(text: str) -> list[str]:
    """The ``sh`` blocks from "## Quick start" up to "## Operators", in order."""
    start = text.index("\n## Quick start\n")
    end = text.index("\n## Operators\n")
    return re.findall(r"^```sh\n(.*?)^```$", text[start:end], re.S | re.M)


# The README's notification receiver, and the same on a port the system picks, written
# to HOOK_FILE once bound (its Python is inside single quotes: none are used here).
RECEIVER = 'h.HTTPServer(("127.0.0.1", 9009), H).serve_forever()'
HOOK_FILE = "hook.port"
RECEIVER_ON_PORT_0 = (
    's = h.HTTPServer(("127.0.0.1", 0), H); '
    f'open("{HOOK_FILE}", "w").write(str(s.server_port)); s.serve_forever()'
)
# The Subscription's endpoint, inside a single-quoted JSON body: the quote is closed for
# the port the receiver wrote, and opened again.
ENDPOINT = "http://127.0.0.1:9009/hook"
ENDPOINT_AT_HOOK_PORT = "http://127.0.0.1:'\"$HOOK_PORT\"'/hook"


def test_the_walkthrough_finds_its_blocks():
    blocks = walkthrough(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    # One variable carries the address; the helper the others use comes before them.
    assert blocks[0].strip() == "BASE=http://127.0.0.1:8080"
    assert not any("127.0.0.1:8080" in b for b in blocks[1:])
    assert any("fhir() {" in b for b in blocks)  # the helper the others use comes first
    first_use = next(i for i, b in enumerate(blocks) if re.search(r"^fhir ", b, re.M))
    assert any("fhir() {" in b for b in blocks[:first_use])


@pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("bash", "curl", "jq")),
    reason="the README walkthrough needs bash, curl and jq on PATH",
)
def test_the_readme_walkthrough_runs_in_order_against_the_demo(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_ADAPTER_")}
    env["FHIR_ADAPTER_DEMO_SECRET"] = "walkthrough-demo-secret-0123456789"
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    console = tmp_path / "serve.log"
    with console.open("w") as log:
        serve = subprocess.Popen(
            [str(COMMAND), "serve", "--host", "127.0.0.1", "--port", "0"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while "Application startup complete" not in console.read_text(encoding="utf-8"):
            assert serve.poll() is None, console.read_text(encoding="utf-8")[-2000:]
            assert time.monotonic() < deadline, "serve did not start in time"
            time.sleep(0.1)
        printed = console.read_text(encoding="utf-8").splitlines()
        port = bound_port(next(line for line in printed if line.startswith("fhir-adapter ")))
        token_line = next((line.strip() for line in printed if "TOKEN=" in line), None)
        assert token_line is not None, "serve printed no TOKEN=... line"

        def local(text: str) -> str:
            text = text.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            if RECEIVER in text:  # then wait for the port it bound
                text = text.replace(RECEIVER, RECEIVER_ON_PORT_0)
                text += (
                    f"\nuntil [ -s {HOOK_FILE} ]; do sleep 0.1; done; "
                    f"HOOK_PORT=$(cat {HOOK_FILE})\n"
                )
            text = text.replace(ENDPOINT, ENDPOINT_AT_HOOK_PORT)
            assert "9009" not in text, text  # every use of the receiver's port replaced
            return text

        out = tmp_path / "walkthrough.out"
        parts = [token_line]
        blocks = walkthrough(README.read_text(encoding="utf-8"))
        assert sum(RECEIVER in b for b in blocks) == 1, "the README's receiver has changed"
        # the criteria Subscription's walkthrough and the topic-based one's
        assert sum(ENDPOINT in b for b in blocks) == 2, "the README's endpoint has changed"
        for block in blocks:
            if 'Subscription/$SUB_ID" -X DELETE' in block:
                # A person reads the notification before stopping; the script waits for it.
                parts.append(
                    f"for _ in $(seq 300); do grep -q my-hook-secret {out} && break; "
                    "sleep 0.1; done"
                )
            parts.append(local(block))
        parts.append("kill %1")  # the notification receiver, started in the background
        script = tmp_path / "walkthrough.sh"
        script.write_text("\n".join(parts) + "\n", encoding="utf-8")
        with out.open("w") as stdout:
            ran = subprocess.run(
                ["bash", "-euo", "pipefail", str(script)],
                cwd=tmp_path,
                env=env,
                stdout=stdout,
                stderr=subprocess.PIPE,
                text=True,
                timeout=RUN_SECONDS,
            )
        said = out.read_text(encoding="utf-8")
        assert ran.returncode == 0, f"stopped with {ran.returncode}: {ran.stderr[-2000:]}"
        assert "curl: (22)" not in ran.stderr
        assert "Bearer my-hook-secret" in said and '"type":"history"' in said
        assert re.search(r'^W/"[0-9a-f]{16}"$', said, re.M)  # the ETag kept
        assert re.search(r"^412$", said, re.M)  # the stale If-Match
        assert re.search(r'^etag: W/"[0-9a-f]{16}"$', said, re.M | re.I)  # the new version
        assert '"status": "cancelled"' in said
        assert re.search(r"Appointment\.nyra-sandbox\.\d{3}\.ndjson", said)
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=10)
