"""``fhir-adapter serve`` workers in a subprocess, in front of a vendor sandbox served on a
loopback port in a thread of the test's process: what the tests of several workers
sharing Redis run."""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serve_command import COMMAND, bound_port, first_line
from serving import on_a_port

__all__ = ["Facade", "vendor_on_a_port"]

STARTUP_SECONDS = 45.0  # the most the workers may take to say they are up


@contextlib.contextmanager
def vendor_on_a_port(app: Any) -> Iterator[str]:
    """A vendor sandbox's ``app`` served by uvicorn in a thread; yields its base URL."""
    with on_a_port(app, access_log=False, lifespan="off") as base_url:
        yield base_url


class Facade:
    """``fhir-adapter serve --workers N --port 0`` in its own process group, at the port
    it says it bound. Its console is read to the end by a thread, so that the workers
    never block on a full pipe."""

    def __init__(self, config: Path, workers: int) -> None:
        self.workers = workers
        env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_ADAPTER_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = subprocess.Popen(
            [
                str(COMMAND),
                "serve",
                "--workers",
                str(workers),
                "--config",
                str(config),
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: collections.deque[str] = collections.deque(maxlen=50)
        self._said: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_console, daemon=True).start()
        assert self.proc.stdout is not None
        try:
            self.port = bound_port(first_line(self.proc, self.proc.stdout, STARTUP_SECONDS))
        except BaseException:
            self.stop()
            raise
        self.base = f"http://127.0.0.1:{self.port}"

    def _read_console(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            self._said.put(line)
        self._said.put(None)

    def wait_until_started(self) -> None:
        """Until every worker has said "Application startup complete", within
        ``STARTUP_SECONDS``."""
        started = 0
        deadline = time.monotonic() + STARTUP_SECONDS
        while started < self.workers:
            left = deadline - time.monotonic()
            try:
                line = self._said.get(timeout=max(0.0, left))
            except queue.Empty:
                raise AssertionError(
                    f"{started} of {self.workers} workers started within {STARTUP_SECONDS:g} s: "
                    f"{list(self.lines)[-5:]}"
                ) from None
            if line is None:
                raise AssertionError(f"serve ended while starting: {list(self.lines)[-5:]}")
            started += "Application startup complete" in line

    def said_until(self, text: str) -> list[str]:
        """The console's lines from now until one holds ``text`` (that one included),
        within ``STARTUP_SECONDS``."""
        said: list[str] = []
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                line = self._said.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line said {text!r}: {said[-5:]}") from None
            if line is None:
                raise AssertionError(f"serve ended before saying {text!r}: {said[-5:]}")
            said.append(line)
            if text in line:
                return said

    def stop(self) -> None:
        """SIGTERM (uvicorn stops its workers, then itself); after 15 s, SIGKILL to the
        process group, while ``serve`` is not yet reaped and the group is surely its own."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
