"""Two clients and the background sharing one Nyra key through three workers and Redis:
what each gets, how long the quiet client waits, how full the budget is, and each lane's
part of it.

``fhir-adapter serve --workers 3`` with ``[server] redis_url`` runs in a subprocess in
front of one Nyra sandbox with one key, served by uvicorn on a loopback port in a thread
of this process (``bench_load``'s harness). Time is scaled (``--scale``, default 10: a
"minute" of 6 s), Nyra's counts kept (60 a minute), the source configured with the same
windows. The load, for ``--minutes`` scaled minutes:

- client **a** (weight 1, ``max_exports = 20``) kicks off 20 exports of the source's
  Patients and Appointments, and runs 10 search loops (``Appointment?status=booked``,
  one page after another);
- client **b** (weight 1) runs 2 interactive search loops (``Patient?_count=5``);
- one Subscription of b's polls the source (background lane).

Reported: b's median and p95 latency (in real time: scaled back up by ``--scale``), the
statuses of each client, the vendor's arrivals over its budget in the measured windows
(the first window is warm-up), the vendor's 429s, the lanes' parts of the calls granted
(from ``/metrics``), and whether the exports progressed (files written). Then a **burst**:
a's loops stop, 10 x the budget of reads arrive in one scaled second from a, and the time
from the burst's end until b's next search answers 200 within its usual latency.

    .venv/bin/python bench/bench_fairness.py    # needs Redis at 127.0.0.1:6379 (database 15)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from bench_load import REDIS_URL, Arrivals, Facade, percentile, vendor_on_a_port

from adapter.sandbox import NyraSandbox, RateLimits

SECRETS = {"a": "a-secret-0123456789abcdef", "b": "b-secret-0123456789abcdef"}


def config(source: str, base_url: str, sandbox: NyraSandbox, limits: RateLimits, tmp: Path) -> str:
    grant = sandbox.api_keys()[0].credentials()
    key = "{ " + ", ".join(f'{k} = "{v}"' for k, v in grant.items()) + " }"
    return f"""
[server]
redis_url = "{REDIS_URL}"
shutdown_seconds = 1
trusted_hosts = ["127.0.0.1:*"]

[sources.{source}]
connector = "nyra"
base_url = "{base_url}"
timezone = "Asia/Kolkata"
keys = [{key}]
rate_limit = {{ second_window = {limits.second_window}, minute_window = {limits.minute_window} }}

[export]
dir = "{tmp / "export"}"

[subscriptions]
dir = "{tmp / "subscriptions"}"
poll_seconds = {limits.minute_window / 6}
allowed_endpoints = ["http://127.0.0.1:*"]

[clients.a]
secret = "{SECRETS["a"]}"
scopes = ["system/*.cruds"]
max_exports = 20
rate_limit = {{ per_minute = 1000000 }}

[clients.b]
secret = "{SECRETS["b"]}"
scopes = ["system/*.cruds"]
rate_limit = {{ per_minute = 1000000 }}
"""


async def request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes = b"",
    timeout: float = 120,
) -> tuple[int | str, dict[str, str], bytes]:
    """One request on a connection of its own, written and read by hand."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            head += f"Content-Length: {len(body)}\r\n\r\n"
            writer.write(head.encode() + body)
            raw_head = await reader.readuntil(b"\r\n\r\n")
            content = await reader.read()
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        return type(exc).__name__, {}, b""
    finally:
        if writer is not None:
            writer.close()
    lines = raw_head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)[1]
    fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return int(status) if status.isdigit() else status, fields, content


async def token(port: int, client: str) -> str:
    basic = base64.b64encode(f"{client}:{SECRETS[client]}".encode()).decode()
    status, _, body = await request(
        port,
        "POST",
        "/auth/token",
        {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        b"grant_type=client_credentials",
    )
    assert status == 200, (status, body[:200])
    return str(json.loads(body)["access_token"])


def division(source: str) -> dict[str, tuple[float, float]]:
    """Per lane, from the shared order in Redis: the calls it was granted, and what its
    share gave it among the lanes waiting at each grant."""
    with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1) as r:
        raw = r.hgetall(f"fhir-adapter:budget:{source}:fq:stat")
    return {
        lane: (float(raw.get(f"got:{lane}".encode(), 0)), float(raw.get(f"due:{lane}".encode(), 0)))
        for lane in ("interactive", "writes", "bulk", "background")
    }


def lane_calls(port: int) -> collections.Counter[tuple[str, str, str]]:
    """vendor_lane_calls_total by (lane, client, outcome), from /metrics."""
    _, _, body = asyncio.run(request(port, "GET", "/metrics", {}))
    out: collections.Counter[tuple[str, str, str]] = collections.Counter()
    pattern = re.compile(r"^vendor_lane_calls_total\{([^}]*)\} ([0-9.e+]+)$")
    for line in body.decode().splitlines():
        m = pattern.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            out[(labels["lane"], labels["client"], labels["outcome"])] += float(m.group(2))
    return out


async def load(port: int, source: str, minutes: float, window: float, tmp: Path) -> dict[str, Any]:
    tokens = {c: await token(port, c) for c in ("a", "b")}

    def auth(c: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[c]}", "Accept": "application/fhir+json"}

    started = time.monotonic()
    until = started + minutes * window
    statuses: dict[str, collections.Counter[Any]] = {
        "a": collections.Counter(),
        "b": collections.Counter(),
    }
    b_latency: list[tuple[float, float]] = []  # (sent, seconds)

    # One Subscription of b's: the source is polled in the background lane.
    sub = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "bench",
        "criteria": f"Appointment?_source={source}",
        "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"},
    }
    status, _, _ = await request(
        port,
        "POST",
        "/fhir/Subscription",
        {**auth("b"), "Content-Type": "application/fhir+json"},
        json.dumps(sub).encode(),
    )
    statuses["b"][f"subscription {status}"] += 1
    # a's 20 exports.
    for _ in range(20):
        status, _, _ = await request(
            port,
            "GET",
            f"/fhir/Group/{source}/$export?_type=Patient,Appointment",
            {**auth("a"), "Prefer": "respond-async"},
        )
        statuses["a"][f"export {status}"] += 1

    async def loop(client: str, path: str) -> None:
        while time.monotonic() < until:
            sent, t0 = time.monotonic(), time.perf_counter()
            status, _, _ = await request(port, "GET", path, auth(client))
            statuses[client][status] += 1
            if client == "b":
                b_latency.append((sent, time.perf_counter() - t0))
            if status != 200:
                await asyncio.sleep(0.05)

    loops = [
        *(
            loop("a", f"/fhir/Appointment?_source={source}&status=booked&_count=20")
            for _ in range(10)
        ),
        *(loop("b", f"/fhir/Patient?_source={source}&_count=5") for _ in range(2)),
    ]
    await asyncio.gather(*loops)
    measured = [s for sent, s in b_latency if sent >= started + window]
    exported = sum(1 for _ in (tmp / "export").rglob("*.ndjson") if _.stat().st_size > 0)
    return {
        "statuses": statuses,
        "b_latency": measured,
        "started": started,
        "exported_files": exported,
        "auth": auth,
    }


async def burst(
    port: int, source: str, auth: Any, window: float, budget: int
) -> tuple[float, collections.Counter[Any], list[tuple[Any, float]], float]:
    """10 x the budget of a's reads in one scaled second; then b asks until its answer is
    a 200 again: seconds from the burst's end to that answer, a's statuses, b's answers
    until then (status, seconds from the burst's end), and when a's last answer came."""
    path = f"/fhir/Patient?_source={source}&_count=1"
    sends = [request(port, "GET", path, auth("a"), timeout=60) for _ in range(10 * budget)]
    tasks = []
    second = window / 60
    for i, send in enumerate(sends):
        tasks.append(asyncio.create_task(send))
        if i % budget == budget - 1:
            await asyncio.sleep(second / 10)
    ended = time.monotonic()
    tries: list[tuple[Any, float]] = []
    while True:
        status, _, _ = await request(
            port, "GET", f"/fhir/Patient?_source={source}&_count=5", auth("b")
        )
        tries.append((status, time.monotonic() - ended))
        if status == 200:
            recovered = time.monotonic() - ended
            break
        await asyncio.sleep(0.05)
    answers = await asyncio.gather(*tasks)
    last = time.monotonic() - ended
    return recovered, collections.Counter(a[0] for a in answers), tries, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--minutes", type=float, default=4.0)
    args = parser.parse_args()
    limits = RateLimits(second_window=1.0 / args.scale, minute_window=60.0 / args.scale)
    window = limits.minute_window
    source = f"nyra-f{uuid.uuid4().hex[:8]}"
    sandbox = NyraSandbox(seed=5, patients=300, keys=1, limits=limits)
    arrivals = Arrivals(sandbox.app)
    with tempfile.TemporaryDirectory(prefix="bench-fair-") as name:
        tmp = Path(name)
        path = tmp / "adapter.toml"
        facade = None
        try:
            with vendor_on_a_port(arrivals) as base_url:
                path.write_text(config(source, base_url, sandbox, limits, tmp))
                facade = Facade(path)
                port = facade.port
                before, due_before = lane_calls(port), division(source)
                result = asyncio.run(load(port, source, args.minutes, window, tmp))
                after, due_after = lane_calls(port), division(source)
                seen = list(arrivals.seen)
                recovered, burst_a, burst_b, burst_last = asyncio.run(
                    burst(port, source, result["auth"], window, limits.per_minute)
                )
                burst_calls = lane_calls(port)
        finally:
            if facade is not None:
                facade.stop()
            with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1) as r:
                names = list(r.scan_iter(match=f"fhir-adapter:*{source}*", count=1000))
                if names:
                    r.delete(*names)
    # Vendor arrivals per fixed window of the sandbox's clock, after the first.
    per_window = collections.Counter(int(t // window) for t, _, _ in seen)
    windows = sorted(per_window)[1:-1]
    used = sum(per_window[w] for w in windows) / (limits.per_minute * max(1, len(windows)))
    granted = {
        f"{lane}/{c}": after[(lane, c, "granted")] - before[(lane, c, "granted")]
        for lane in ("interactive", "writes", "bulk", "background")
        for c in ("a", "b", "-")
        if after[(lane, c, "granted")] - before[(lane, c, "granted")]
    }
    by_lane: collections.Counter[str] = collections.Counter()
    for lane in ("interactive", "writes", "bulk", "background"):
        for c in ("a", "b", "-"):
            by_lane[lane] += after[(lane, c, "granted")] - before[(lane, c, "granted")]
    total = sum(by_lane.values()) or 1
    lat = result["b_latency"]
    print(f"scale {args.scale:g}, {args.minutes:g} scaled minutes, 1 key, 3 workers, Redis")
    print(
        f"b: {len(lat)} searches, median {percentile(lat, 50) * args.scale:.2f} s, "
        f"p95 {percentile(lat, 95) * args.scale:.2f} s (real time)"
    )
    print(f"statuses a {dict(result['statuses']['a'])}")
    print(f"statuses b {dict(result['statuses']['b'])}")
    print(
        f"vendor budget used {used:.1%} over {len(windows)} windows "
        f"({', '.join(str(per_window[w]) for w in windows)} calls); "
        f"429s {sandbox.limited_total()}"
    )
    print(
        "lanes' parts of the calls granted: "
        + ", ".join(f"{lane} {n / total:.1%}" for lane, n in by_lane.items())
    )
    print(f"granted by lane and client: {granted}")
    shown = []
    for lane, (got, due) in due_after.items():
        got -= due_before[lane][0]
        due -= due_before[lane][1]
        if due:
            shown.append(f"{lane} {got:g} of {due:.1f} due ({got / due:.0%})")
    print("each lane's calls against its share among the lanes waiting: " + ", ".join(shown))
    print(f"export files written: {result['exported_files']}")
    print(
        f"after a burst of {10 * limits.per_minute} reads: b answered 200 again after "
        f"{recovered * args.scale:.1f} s (real time)"
    )
    print(f"the burst's answers to a: {dict(burst_a)}, the last {burst_last * args.scale:.1f} s")
    print(
        "vendor calls granted during the burst: "
        + ", ".join(
            f"{c} {burst_calls[(lane, c, 'granted')] - after[(lane, c, 'granted')]:g}"
            for lane in ("interactive",)
            for c in ("a", "b")
        )
        + " (interactive)"
    )
    shown = ", ".join(f"{s} at {t * args.scale:.1f} s" for s, t in burst_b[:8])
    print(f"b's answers until then: {shown}{' ...' if len(burst_b) > 8 else ''}")


if __name__ == "__main__":
    main()
