"""Load on three ``serve`` workers sharing Nyra budgets through Redis: how much of the
vendor's budget they use, how they answer meanwhile, and how they come through a burst.

Each facade is the real command in a subprocess (``fhir-adapter serve --workers 3`` with
``[server] redis_url``) in front of one Nyra sandbox served by uvicorn on a loopback port
in a thread of this process; a small ASGI middleware times every request the sandbox
receives (with the key it came with), on the sandbox's own clock. Time is scaled
(``--scale``, default 10: a "minute" of 6 s and a "second" of 100 ms), Nyra's counts
kept (12 and 60 per key), and the source is configured with the same windows. Requests
are written and read by hand over plain connections: an HTTP client library costs
several times more processor time per request, and on a small machine that becomes the
client's own lag in every figure.

For one and for three keys (``--keys``):

- **budget**: ``--clients`` clients read distinct patients (``GET /fhir/Patient/<id>``,
  never two alike in flight, so each read is a vendor call) one after another. The first
  complete fixed window of the sandbox is warm-up; over the next ``--minutes`` windows the
  share is the vendor's arrivals over 60 x keys x windows. 429s are the sandbox's count
  over the whole run; p50/p99 are the time clients waited for the 200s sent in the
  measured windows (every client waits for budget, so this is mostly the wait in line);
- **identical reads**: once the budget is idle again, ``--identical`` reads of one patient
  sent at once (connections opened first, then every request written back to back); the
  figure is the vendor calls they made, once with the sandbox answering at once and once
  with it answering after ``--latency`` seconds (default 0.3, unscaled), as a vendor
  across a network does. Reads share a call only while it is in flight: a vendor that
  answers before the workers have taken in all the requests gets asked again by the
  latecomers. Then as many distinct reads at once, the vendor answering after
  ``--latency``: more than a key's 12 a second, so some must wait for the first answers;
  their answers are shown.

Then a **burst** for each ``--deadline`` (``[server] request_seconds``; by default 10 s,
and 30 scaled seconds, the default 30 s in scaled time) on a facade with ``--burst-keys``
keys: ``--burst-rate`` requests per scaled second (open loop, distinct patients) for one
scaled minute, ten times the budget by default, sent from a process of its own. Reported:
the share answered (whatever the status) within the deadline, as the client saw it and as
the facade's console logged it; the statuses; the share of 503s carrying an integer
``Retry-After``; vendor calls and 429s; and the recovery: from the last request of the
burst, one client asks again and again (each request after the last answer, 50 ms after
a refusal) until its first 200; the time from the end of the burst to that answer.

    .venv/bin/python bench/bench_load.py        # needs Redis at 127.0.0.1:6379 (database 15)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapter.sandbox import NyraSandbox, RateLimits  # noqa: E402
from mappings import encode_id  # noqa: E402

COMMAND = Path(sys.executable).with_name("fhir-adapter")
REDIS_URL = "redis://127.0.0.1:6379/15"
WORKERS = 3
STARTUP_SECONDS = 60.0


class Arrivals:
    """ASGI middleware: (time, path, key) of each request, on the sandbox's clock; it may
    hold each answer back ``delay`` seconds, as a distant vendor would."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[float, str, str]] = []
        self.delay = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            key = dict(scope["headers"]).get(b"x-api-key", b"").decode()
            self.seen.append((time.time(), scope["path"], key))
            if self.delay:
                await asyncio.sleep(self.delay)
        await self.app(scope, receive, send)


@contextlib.contextmanager
def vendor_on_a_port(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a thread; yields its base URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", backlog=4096
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the Nyra sandbox did not start within 10 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def facade_config(
    source: str,
    base_url: str,
    sandbox: NyraSandbox,
    limits: RateLimits,
    deadline: float | None,
    queue: int | None,
) -> str:
    keys = ", ".join(
        "{ " + ", ".join(f'{k} = "{v}"' for k, v in g.credentials().items()) + " }"
        for g in sandbox.api_keys()
    )
    server = f"request_seconds = {deadline}\n" if deadline else ""
    waiting = f"queue = {queue}\n" if queue else ""
    return f"""
[server]
open_access = true
redis_url = "{REDIS_URL}"
shutdown_seconds = 1
{server}
[sources.{source}]
connector = "nyra"
base_url = "{base_url}"
timezone = "Asia/Kolkata"
keys = [{keys}]
rate_limit = {{ second_window = {limits.second_window}, minute_window = {limits.minute_window} }}
{waiting}"""


class Facade:
    """``fhir-adapter serve --workers 3`` in its own process group; its console is read
    to the end by a thread (the workers must never block on a full pipe)."""

    def __init__(self, config: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_ADAPTER_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        command = [str(COMMAND), "serve", "--workers", str(WORKERS)]
        self.proc = subprocess.Popen(
            [*command, "--config", str(config), "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: collections.deque[str] = collections.deque(maxlen=50)
        # (status, duration_ms) of each /fhir request, as the facade's console says it.
        self.requests: list[tuple[int, float]] = []
        self._said: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_console, daemon=True).start()
        self._wait_until_started()

    def _read_console(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            self._said.put(line)
            if line.startswith("{") and '"request"' in line:
                with contextlib.suppress(ValueError):
                    said = json.loads(line)
                    if said.get("event") == "request":
                        self.requests.append((said.get("status"), said.get("duration_ms")))
        self._said.put(None)

    def _wait_until_started(self) -> None:
        started = 0
        deadline = time.monotonic() + STARTUP_SECONDS
        while started < WORKERS:
            try:
                line = self._said.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"serve did not start: {list(self.lines)[-5:]}") from None
            if line is None:
                raise RuntimeError(f"serve ended while starting: {list(self.lines)[-5:]}")
            started += "Application startup complete" in line

    def stop(self) -> None:
        """SIGTERM; after 15 s, SIGKILL to the process group (``serve`` not yet reaped)."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def setup(
    keys: int,
    limits: RateLimits,
    patients: int,
    deadline: float | None = None,
    queue: int | None = None,
) -> Iterator[tuple[NyraSandbox, Arrivals, Facade, list[str], str]]:
    """A sandbox with ``keys`` keys on a port and a three-worker facade in front of it, under
    a source name of its own (its Redis keys are deleted at the end)."""
    source = f"nyra-b{uuid.uuid4().hex[:8]}"
    sandbox = NyraSandbox(seed=5, patients=patients, keys=keys, limits=limits)
    arrivals = Arrivals(sandbox.app)
    paths = [f"/fhir/Patient/{encode_id(source, p['id'])}" for p in sandbox.patients]
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        config = Path(tmp) / "adapter.toml"
        facade = None
        try:
            with vendor_on_a_port(arrivals) as base_url:
                config.write_text(facade_config(source, base_url, sandbox, limits, deadline, queue))
                facade = Facade(config)
                yield sandbox, arrivals, facade, paths, source
        finally:
            if facade is not None:
                facade.stop()
            with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1) as r:
                names = list(r.scan_iter(match=f"fhir-adapter:*:{source}:*", count=1000))
                if names:
                    r.delete(*names)


def percentile(values: list[float], q: float) -> float:
    """Nearest rank."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def wall_to_monotonic(at: float) -> float:
    return time.monotonic() + (at - time.time())


@dataclass
class BudgetRow:
    keys: int
    share: float = 0.0
    arrivals: int = 0
    budget: int = 0
    limited: int = 0
    most_in_a_window: int = 0
    p50: float = math.nan
    p99: float = math.nan
    answers: collections.Counter[int | str] = field(default_factory=collections.Counter)
    identical_calls: dict[float, int] = field(default_factory=dict)  # vendor latency -> calls
    identical_answers: collections.Counter[str] = field(default_factory=collections.Counter)
    distinct_answers: collections.Counter[str] = field(default_factory=collections.Counter)


async def raw_get(port: int, path: str, timeout: float) -> tuple[int | str, str | None]:
    """One ``GET`` on a connection of its own, written and read by hand (an HTTP client
    library costs several times more processor time per request, which at a burst's rate
    would be the client's lag, not the facade's): the status and ``Retry-After``."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.read()  # the body, to the end
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        return type(exc).__name__, None
    finally:
        if writer is not None:
            writer.close()
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)[1]
    after = next(
        (
            v.strip()
            for k, _, v in (h.partition(":") for h in lines[1:])
            if k.lower() == "retry-after"
        ),
        None,
    )
    return int(status) if status.isdigit() else status, after


async def closed_loop(
    port: int, paths: list[str], clients: int, until: float
) -> list[tuple[float, float, int | str]]:
    """``clients`` clients reading their own paths one after another until ``until``
    (monotonic): (sent, seconds taken, status) per request, ``sent`` in wall time."""
    done: list[tuple[float, float, int | str]] = []

    async def client(n: int) -> None:
        i = n
        while time.monotonic() < until:
            sent, t0 = time.time(), time.perf_counter()
            status, _ = await raw_get(port, paths[i % len(paths)], 60)
            done.append((sent, time.perf_counter() - t0, status))
            i += clients

    await asyncio.gather(*(client(n) for n in range(clients)))
    return done


def at_once(port: int, paths: list[str]) -> collections.Counter[str]:
    """A read of each of ``paths`` at once: the connections are opened (and accepted by
    the workers) first, then one request is written on each, back to back, so that all
    reach the facade within a millisecond (an HTTP client library would spread them over
    tens of milliseconds). The answers: status, and ``Retry-After`` when there is one."""
    conns = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in paths]
    answers: collections.Counter[str] = collections.Counter()
    try:
        time.sleep(0.5)
        for conn, path in zip(conns, paths, strict=True):
            conn.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
        for conn in conns:
            answer = bytearray()
            while chunk := conn.recv(65536):
                answer += chunk
            head = bytes(answer).partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
            status = head[0].split(" ", 2)[1] if head[0].startswith("HTTP/") else "no answer"
            after = [h.partition(":")[2].strip() for h in head if h.lower().startswith("retry-")]
            answers[f"{status} (Retry-After {after[0]})" if after else status] += 1
    finally:
        for conn in conns:
            conn.close()
    return answers


def budget_run(args: argparse.Namespace, keys: int, limits: RateLimits) -> BudgetRow:
    row = BudgetRow(keys)
    window = limits.minute_window
    with setup(keys, limits, args.patients) as (sandbox, arrivals, facade, paths, _):
        first = math.ceil(time.time() / window)  # the warm-up window
        measured = range(first + 1, first + 1 + args.minutes)
        until = wall_to_monotonic(measured.stop * window)
        done = asyncio.run(closed_loop(facade.port, paths[2:], args.clients, until))
        per_window = collections.Counter(math.floor(t / window) for t, _, _ in arrivals.seen)
        per_key_window = collections.Counter(
            (key, math.floor(t / window)) for t, _, key in arrivals.seen
        )
        row.arrivals = sum(per_window[w] for w in measured)
        row.budget = limits.per_minute * keys * args.minutes
        row.share = row.arrivals / row.budget
        row.most_in_a_window = max(per_key_window.values())
        row.answers = collections.Counter(status for _, _, status in done)
        ok = [
            took
            for sent, took, status in done
            if status == 200 and measured.start * window <= sent < measured.stop * window
        ]
        row.p50, row.p99 = percentile(ok, 50) * 1000, percentile(ok, 99) * 1000
        # The identical reads on an idle budget (a window after the last call's slot), with
        # the vendor answering at once and then after --latency; a patient of its own each.
        time.sleep(window * 1.1)
        patients = iter(sandbox.patients)
        for n, latency in enumerate((0.0, args.latency)):
            vendor_path = f"/patients/{next(patients)['id']}"
            before = len(arrivals.seen)
            arrivals.delay = latency
            row.identical_answers += at_once(facade.port, [paths[n]] * args.identical)
            arrivals.delay = 0.0
            calls = sum(p == vendor_path for _, p, _ in arrivals.seen[before:])
            row.identical_calls[latency] = calls
        # As many distinct reads at once, the vendor answering after --latency: more than
        # a key's 12 a second, so some wait for the first answers.
        arrivals.delay = args.latency
        row.distinct_answers = at_once(facade.port, paths[-args.identical :])
        arrivals.delay = 0.0
        row.limited = sandbox.limited_total()
    return row


@dataclass
class BurstResult:
    sent: int = 0
    offered_rate: float = 0.0
    answers: collections.Counter[int | str] = field(default_factory=collections.Counter)
    within_deadline: float = 0.0
    refusals_with_retry_after: float = math.nan
    retry_afters: collections.Counter[str] = field(default_factory=collections.Counter)
    limited: int = 0
    vendor_calls: int = 0
    most_in_a_window: int = 0
    recovery: float = math.nan
    probes: int = 0
    p50_ok: float = math.nan
    slowest: float = 0.0
    logged_within_deadline: float = math.nan  # as the facade's console says
    logged_slowest: float = math.nan


async def burst(
    port: int, paths: list[str], rate: float, seconds: float, deadline: float
) -> tuple[list[tuple[float, float, int | str, str | None]], float, float, int]:
    """Open loop: a request every 1/``rate`` s for ``seconds``, then one client until its
    first 200. (sent, seconds taken, status, Retry-After) per burst request; when the
    burst ended; when the first 200 after it came; requests that client sent."""
    done: list[tuple[float, float, int | str, str | None]] = []
    wait = deadline + 30

    async def one(path: str) -> None:
        t0 = time.perf_counter()
        status, after = await raw_get(port, path, wait)
        done.append((t0, time.perf_counter() - t0, status, after))

    n = round(rate * seconds)
    start = time.perf_counter()
    tasks = []
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(paths[i % len(paths)])))
    ended = time.perf_counter()
    probes, recovered = 0, math.nan
    while time.perf_counter() - ended < 120:
        probes += 1
        status, _ = await raw_get(port, paths[(n + probes) % len(paths)], wait)
        if status == 200:
            recovered = time.perf_counter()
            break
        await asyncio.sleep(0.05)
    await asyncio.gather(*tasks)
    return done, ended, recovered, probes


def burst_in_child(
    port: int, paths: list[str], rate: float, seconds: float, deadline: float
) -> tuple[list[tuple[float, float, int | str, str | None]], float, float, int]:
    """:func:`burst` in a process of its own: this one serves the sandbox, and a client
    sharing its interpreter lock would slow the vendor and be slowed by it."""
    spec = {"port": port, "paths": paths, "rate": rate, "seconds": seconds, "deadline": deadline}
    done = subprocess.run(
        [sys.executable, __file__, "--burst-client"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=seconds + deadline + 180,
        check=True,
    )
    answers, ended, recovered, probes = json.loads(done.stdout)
    return [tuple(a) for a in answers], ended, recovered, probes


def burst_client() -> None:
    """The ``--burst-client`` process: a spec on standard input, the outcome as JSON on
    standard output."""
    spec = json.load(sys.stdin)
    outcome = asyncio.run(
        burst(spec["port"], spec["paths"], spec["rate"], spec["seconds"], spec["deadline"])
    )
    json.dump(outcome, sys.stdout)


def burst_run(
    args: argparse.Namespace, limits: RateLimits, deadline: float, queue: int | None
) -> BurstResult:
    result = BurstResult()
    window = limits.minute_window
    per_second = args.burst_rate / limits.second_window  # real requests per second
    with setup(args.burst_keys, limits, args.patients, deadline, queue) as made:
        sandbox, arrivals, facade, paths, _ = made
        # Start on an idle budget, at the start of a fixed window.
        time.sleep(math.ceil(time.time() / window) * window - time.time())
        done, ended, recovered, probes = burst_in_child(
            facade.port, paths, per_second, window, deadline
        )
        result.limited = sandbox.limited_total()
        result.vendor_calls = len(arrivals.seen)
        per_key_window = collections.Counter(
            (key, math.floor(t / window)) for t, _, key in arrivals.seen
        )
        result.most_in_a_window = max(per_key_window.values(), default=0)
        time.sleep(0.5)  # the console's last lines
        logged = [ms / 1000 for _, ms in facade.requests if ms is not None]
    if logged:
        result.logged_within_deadline = sum(t <= deadline for t in logged) / len(logged)
        result.logged_slowest = max(logged)
    result.sent = len(done)
    first = min(t for t, _, _, _ in done)
    last = max(t for t, _, _, _ in done)
    result.offered_rate = (len(done) - 1) / (last - first) * limits.second_window
    result.answers = collections.Counter(status for _, _, status, _ in done)
    result.within_deadline = sum(took <= deadline for _, took, _, _ in done) / len(done)
    refusals = [after for _, _, status, after in done if status == 503]
    if refusals:
        integer = [a for a in refusals if a is not None and a.isdigit()]
        result.refusals_with_retry_after = len(integer) / len(refusals)
        result.retry_afters = collections.Counter(str(a) for a in refusals)
    result.recovery = recovered - ended
    result.probes = probes
    ok = [took for _, took, status, _ in done if status == 200]
    result.p50_ok = percentile(ok, 50) * 1000
    result.slowest = max(took for _, took, _, _ in done)
    return result


def statuses(counter: collections.Counter[Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items(), key=lambda kv: str(kv[0])))


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst-client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=10.0, help="time runs this much faster")
    parser.add_argument("--minutes", type=int, default=5, help="measured scaled minutes")
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--keys", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--identical", type=int, default=50)
    parser.add_argument(
        "--latency", type=float, default=0.3, help="the vendor's answer time for reads at once, s"
    )
    parser.add_argument("--burst-keys", type=int, default=2)
    parser.add_argument("--burst-rate", type=float, default=20.0, help="per scaled second")
    parser.add_argument(
        "--deadline",
        type=float,
        nargs="+",
        help="[server] request_seconds of the burst's facade, one burst each "
        "(default: 10, and 30 scaled seconds)",
    )
    parser.add_argument("--queue", type=int, help="the source's queue (default: the facade's)")
    parser.add_argument("--skip-budget", action="store_true")
    parser.add_argument("--skip-burst", action="store_true")
    args = parser.parse_args()
    if args.burst_client:
        burst_client()
        return
    if not redis_up():
        sys.exit("needs a Redis server at 127.0.0.1:6379")
    limits = RateLimits(second_window=1 / args.scale, minute_window=60 / args.scale)
    print(
        f"{WORKERS} workers sharing Redis, one Nyra sandbox on a port; time scaled "
        f"1/{args.scale:g} (minute window {limits.minute_window:g} s, second window "
        f"{limits.second_window * 1000:g} ms), 12/s and 60/min per key"
    )
    if not args.skip_budget:
        print(
            f"budget: {args.clients} clients, distinct reads, 1 warm-up + {args.minutes} "
            f"measured windows; identical: {args.identical} reads of one patient at once, "
            f"the vendor answering at once / in {args.latency:g} s"
        )
        print(
            f"{'keys':>4} {'share':>7} {'calls/budget':>13} {'max/key/win':>11} {'429s':>5} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'identical: calls':>16}  facade answers"
        )
    for keys in [] if args.skip_budget else args.keys:
        row = budget_run(args, keys, limits)
        calls = " / ".join(str(c) for c in row.identical_calls.values())
        print(
            f"{row.keys:>4} {row.share:>7.1%} {f'{row.arrivals}/{row.budget}':>13} "
            f"{row.most_in_a_window:>11} {row.limited:>5} {row.p50:>7.0f} {row.p99:>7.0f} "
            f"{calls:>16}  {statuses(row.answers)}; identical: "
            f"{statuses(row.identical_answers)}; {args.identical} distinct at once: "
            f"{statuses(row.distinct_answers)}",
            flush=True,
        )
    if args.skip_burst:
        return
    budget = limits.per_minute * args.burst_keys
    deadlines = args.deadline or [10.0, 30 / args.scale]
    results = [burst_run(args, limits, d, args.queue) for d in deadlines]
    print(
        f"burst: {args.burst_keys} keys ({budget} calls per scaled minute), "
        f"{args.burst_rate:g} requests per scaled second for one scaled minute "
        f"({args.burst_rate * 60 / budget:g}x the budget), queue = {args.queue or 'default'}"
    )
    rows: list[tuple[str, list[str]]] = [
        ("request_seconds", [f"{d:g} s ({d * args.scale:g} scaled)" for d in deadlines]),
        ("requests sent", [f"{r.sent} ({r.offered_rate:.1f}/scaled s)" for r in results]),
        ("answers", [statuses(r.answers) for r in results]),
        ("within the deadline, client", [f"{r.within_deadline:.1%}" for r in results]),
        ("slowest answer, client", [f"{r.slowest:.2f} s" for r in results]),
        ("within the deadline, facade log", [f"{r.logged_within_deadline:.1%}" for r in results]),
        ("slowest answer, facade log", [f"{r.logged_slowest:.2f} s" for r in results]),
        ("p50 of the 200s", [f"{r.p50_ok:.0f} ms" for r in results]),
        ("503s with integer Retry-After", [f"{r.refusals_with_retry_after:.1%}" for r in results]),
        ("Retry-After values", [statuses(r.retry_afters) for r in results]),
        (
            "vendor calls (max per key-window)",
            [f"{r.vendor_calls} ({r.most_in_a_window})" for r in results],
        ),
        ("vendor 429s", [str(r.limited) for r in results]),
        (
            "first 200 after the burst",
            [f"{r.recovery:.2f} s ({r.probes} requests)" for r in results],
        ),
    ]
    width = max(len(name) for name, _ in rows)
    columns = [max(len(row[1][i]) for row in rows) for i in range(len(deadlines))]
    for name, cells in rows:
        line = "  ".join(cell.ljust(w) for cell, w in zip(cells, columns, strict=True))
        print(f"  {name.ljust(width)}  {line}")


if __name__ == "__main__":
    main()
