"""``fhir-adapter serve`` as the tests start it: the installed command, told ``--port 0`` so
that the system picks a free port and ``serve`` binds it itself (no port is chosen here
and bound there later, when another process may have taken it), and the port read back
from the first line ``serve`` prints."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

__all__ = ["COMMAND", "bound_port", "first_line"]

COMMAND = Path(sys.executable).with_name("fhir-adapter")
# "fhir-adapter serving leyr-sandbox, nyra-sandbox (...) at http://127.0.0.1:43817/fhir"
_BANNER = re.compile(r"^fhir-adapter serving .* at http://[^\s]+:(?P<port>[0-9]+)/fhir$")


def bound_port(line: str) -> int:
    """The port ``serve`` says it listens on, from the first line it printed."""
    found = _BANNER.match(line.strip())
    assert found is not None, f"serve's first line names no address: {line!r}"
    port = int(found["port"])
    assert 0 < port < 65536, line
    return port


def first_line(process: subprocess.Popen[str], stream: IO[str], seconds: float) -> str:
    """The first line ``process`` writes to ``stream``. A safety net: a process that
    says nothing within ``seconds`` is killed, which ends the read."""
    timer = threading.Timer(seconds, process.kill)
    timer.start()
    try:
        line = stream.readline()
    finally:
        timer.cancel()
    assert line, f"serve ended (status {process.poll()}) before it said where it listens"
    return line
