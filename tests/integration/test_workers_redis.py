"""Three ``fhir-adapter serve`` workers in front of one Nyra key keep to the key's limits
together, through the budget they count in Redis, and still use most of it.

The real command runs in a subprocess (``serve --workers 3``, ``[server] redis_url``); the
Nyra sandbox runs on a loopback port in a thread of this process, and every request it
receives is timed as it arrives. Time is scaled 20-fold: a "second" of 50 ms and a
"minute" of 3 s, Nyra's counts kept (12 and 60 per key), and the source is configured
with the same windows. Twenty-four clients read distinct patients through the facade
(distinct, so that no two reads in flight are shared into one vendor call) for five
scaled minutes. What is checked is what the vendor sees:

- no request answered 429 (the sandbox counts them);
- no more than 60 arrivals in any of the sandbox's own fixed minute windows
  (``floor(arrival / minute_window)``), the limit the three workers share;
- at least 80% of the key's 60 a minute used in the complete windows of the run: the
  workers do not keep to the limit by leaving the budget idle.

Needs the Redis server at 127.0.0.1:6379 (database 15; every key the run makes is named
after a source name of its own and deleted at the end); without it the test is skipped,
saying so.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis
import uvicorn
from services import needs_redis

from adapter.sandbox import NyraSandbox, RateLimits
from mappings import encode_id

COMMAND = Path(sys.executable).with_name("fhir-adapter")
REDIS_URL = "redis://127.0.0.1:6379/15"
SCALED = RateLimits(second_window=0.05, minute_window=3.0)  # Nyra's time, 20 times faster
WORKERS = 3
CLIENTS = 24
MINUTES = 5  # of load; the complete fixed windows among them are measured
STARTUP_SECONDS = 45.0  # the most the workers may take to say they are up


pytestmark = needs_redis


class Arrivals:
    """ASGI middleware: the wall-clock time (the sandbox's own clock) of each request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.times: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.times.append(time.time())
        await self.app(scope, receive, send)


@contextlib.contextmanager
def vendor_on_a_port(arrivals: Arrivals) -> Iterator[str]:
    """The sandbox (behind ``arrivals``) served by uvicorn in a thread; yields its base
    URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(arrivals, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the Nyra sandbox did not start within 10 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(source: str, base_url: str, credentials: dict[str, str]) -> str:
    key = ", ".join(f'{name} = "{value}"' for name, value in credentials.items())
    return f"""
[server]
open_access = true
redis_url = "{REDIS_URL}"
shutdown_seconds = 1

[sources.{source}]
connector = "nyra"
base_url = "{base_url}"
timezone = "Asia/Kolkata"
keys = [{{ {key} }}]
rate_limit = {{ second_window = {SCALED.second_window}, minute_window = {SCALED.minute_window} }}
"""


class Facade:
    """``fhir-adapter serve --workers N`` (3 unless told) in its own process group. Its
    console is read to the end by a thread, so that the workers never block on a full
    pipe."""

    def __init__(self, config: Path, workers: int = WORKERS) -> None:
        self.workers = workers
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
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
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: collections.deque[str] = collections.deque(maxlen=50)
        self._said: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_console, daemon=True).start()

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


async def _load(base: str, paths: list[str], until: float) -> collections.Counter[int | str]:
    """``CLIENTS`` clients, each reading its own paths one after another until ``until``
    (monotonic); the count of each status (or failure) the facade answered."""
    statuses: collections.Counter[int | str] = collections.Counter()

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            i = n
            while time.monotonic() < until:
                try:
                    r = await c.get(paths[i % len(paths)])
                    statuses[r.status_code] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                i += CLIENTS

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return statuses


def _forget(source: str) -> None:
    """Delete what the run left in Redis (all of it is named after its source)."""
    with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1) as r:
        names = list(r.scan_iter(match=f"fhir-adapter:*:{source}:*", count=1000))
        if names:
            r.delete(*names)


def test_three_workers_share_one_keys_budget_through_redis(tmp_path):
    source = f"nyra-w{uuid.uuid4().hex[:8]}"
    sandbox = NyraSandbox(seed=11, patients=600, keys=1, limits=SCALED)
    arrivals = Arrivals(sandbox.app)
    # Client n reads patients n, n + 24, ...: no two reads in flight are the same.
    paths = [f"/fhir/Patient/{encode_id(source, p['id'])}" for p in sandbox.patients]
    window = SCALED.minute_window
    config = tmp_path / "adapter.toml"
    try:
        with vendor_on_a_port(arrivals) as base_url:
            config.write_text(_config(source, base_url, sandbox.api_keys()[0].credentials()))
            facade = Facade(config)
            try:
                facade.wait_until_started()
                started = time.time()
                until = time.monotonic() + MINUTES * window
                statuses = asyncio.run(_load(facade.base, paths, until))
                ended = time.time()
            finally:
                facade.stop()
    finally:
        _forget(source)

    per_window = collections.Counter(math.floor(t / window) for t in arrivals.times)
    measured = range(math.ceil(started / window), math.floor(ended / window))
    used = sum(per_window[w] for w in measured)
    budget = SCALED.per_minute * len(measured)
    seen = f"per window {[per_window[w] for w in sorted(per_window)]}, answers {dict(statuses)}"

    assert sandbox.limited_total() == 0, seen
    assert max(per_window.values()) <= SCALED.per_minute, seen
    assert len(measured) >= MINUTES - 1, seen
    assert used >= 0.8 * budget, f"{used} of {budget} in {len(measured)} windows; {seen}"
