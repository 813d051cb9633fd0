"""A soak: three ``serve`` workers sharing Redis, in front of a Leyr and a Nyra sandbox on
loopback ports, under a steady mix of calls for ``--minutes`` on the real clock.

Four clients loop over searches, ``_include``, ``_revinclude``, reads, ``$everything`` and
Patient creates; an export is kicked off every three minutes and followed to its end; one
Subscription listens to every Patient and its notifications are taken by a receiver on
loopback. Every ``--sample`` seconds the bench records each worker's resident memory and
open file descriptors (``/proc``), and the Redis keys without an expiry. At the end it
prints the samples, each worker's growth over the last two thirds of the run, and the
answers by status (every one must be 2xx, 4xx, or 503/504 with ``Retry-After``).

    .venv/bin/python bench/bench_soak.py --minutes 30      # needs Redis at 127.0.0.1:6379

It ends with a Markdown table of the samples and checks each worker against what the
README promises: its resident memory stays under its first sample plus the caches' limits
(``[server] cache_mb`` and the fixed tables), and moves by at most 10% over the last 20
minutes (the last two thirds of a shorter run); descriptors and persistent Redis keys
stay flat.

``--trace DIR`` runs the workers under ``tracemalloc`` (one frame) and has each write a
snapshot to DIR after a third of the run and at its end; ``bench/soak_diff.py DIR`` then
lists the allocators that grew in between. Tracing costs memory, so its figures are not
the table's: run it apart.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import redis
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REDIS_URL = "redis://127.0.0.1:6379"
CACHE_MB = 96  # [server] cache_mb, the default
TABLES_MB = 16  # the fixed tables of a worker with two sources (docs/operations.md)
# Loaded by each worker at start-up when tracing: tracemalloc on, and a snapshot written
# on SIGUSR2.
TRACER = """
import os
if os.environ.get("SOAK_TRACE_DIR"):
    import signal, tracemalloc
    tracemalloc.start(1)
    def _dump(signum, frame):
        where = os.environ["SOAK_TRACE_DIR"]
        n = sum(1 for f in os.listdir(where) if f.startswith(f"{os.getpid()}-"))
        tracemalloc.take_snapshot().dump(os.path.join(where, f"{os.getpid()}-{n}.snap"))
    signal.signal(signal.SIGUSR2, _dump)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_in_thread(app: object, port: int) -> None:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    threading.Thread(target=uvicorn.Server(config).run, daemon=True).start()


def receiver() -> str:
    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/hook"


def config(
    leyr_port: int,
    nyra_port: int,
    leyr: object,
    nyra: object,
    root: Path,
    redis_url: str,
    prefix: str,
) -> str:
    ld, nd = leyr.defaults(), nyra.defaults()  # type: ignore[attr-defined]
    keys = ", ".join(
        f'{{ key = "{k["key"]}", secret = "{k["secret"]}", token = "{k["token"]}" }}'
        for k in nd["keys"]
    )
    limits = nd.get("rate_limit") or {}
    rate = ", ".join(f"{k} = {v}" for k, v in limits.items())
    return f"""
[server]
open_access = true
redis_url = "{redis_url}"
redis_prefix = "{prefix}"
cache_mb = {CACHE_MB}
trusted_hosts = ["127.0.0.1:*"]

[export]
dir = "{root / "export"}"

[subscriptions]
poll_seconds = 5
allowed_endpoints = ["http://127.0.0.1:*"]

[sources.leyr-soak]
connector = "leyr"
base_url = "http://127.0.0.1:{leyr_port}"
emr = "{ld["emr"]}"
care_units = {json.dumps(ld["care_units"])}
timezone = "{ld["timezone"]}"
client_id = "{ld["client_id"]}"
client_secret = "{ld["client_secret"]}"

[sources.nyra-soak]
connector = "nyra"
base_url = "http://127.0.0.1:{nyra_port}"
timezone = "{nd["timezone"]}"
keys = [{keys}]
{f"rate_limit = {{ {rate} }}" if rate else ""}
"""


def workers_of(pid: int) -> list[int]:
    """The serving workers under ``serve``'s supervisor (not its resource tracker)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    found = []
    for child in sorted(int(p) for p in out.split()):
        command = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"resource_tracker" not in command:
            found.append(child)
    return found


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def caches_mb(port: int) -> float:
    """What the workers' caches hold together, in MB, as /metrics says (``cache_bytes``,
    summed over live workers)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    except httpx.HTTPError:
        return float("nan")
    lines = [line for line in text.splitlines() if line.startswith("cache_bytes{")]
    held = sum(float(line.rsplit(" ", 1)[1]) for line in lines)
    return held / 1e6


def persistent_keys(client: redis.Redis, prefix: str) -> int:
    keys = client.scan_iter(match=f"{prefix}*", count=500)
    return sum(1 for key in keys if client.ttl(key) == -1)


async def mix(base: str, stop: float, seen: collections.Counter[str], n: int) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        ids: list[str] = []
        step = 0
        while time.monotonic() < stop:
            step += 1
            kind = step % 7
            try:
                if kind == 0:
                    r = await http.get("/Patient", params={"_count": "20"})
                    ids = [
                        e["resource"]["id"]
                        for e in r.json().get("entry", [])
                        if e["search"]["mode"] == "match"
                    ] or ids
                elif kind == 1:
                    r = await http.get(
                        "/Appointment", params={"_count": "20", "_include": "Appointment:actor"}
                    )
                elif kind == 2:
                    r = await http.get(
                        "/Patient", params={"_count": "5", "_revinclude": "Appointment:patient"}
                    )
                elif kind == 3 and ids:
                    r = await http.get(f"/Patient/{ids[step % len(ids)]}")
                elif kind == 4 and ids:
                    r = await http.get(f"/Patient/{ids[step % len(ids)]}/$everything")
                elif kind == 5:
                    r = await http.get("/Appointment", params={"status": "booked", "_count": "50"})
                else:
                    source = "nyra-soak" if step % 2 else "leyr-soak"
                    body = {
                        "resourceType": "Patient",
                        "meta": {"source": source},
                        "name": [{"family": f"Soak{n}x{step}", "given": ["Sam"]}],
                        "telecom": [{"system": "phone", "value": f"+9198{n}{step % 10**7:07d}"}],
                        "gender": "female",
                        "birthDate": "1990-01-01",
                    }
                    r = await http.post(
                        "/Patient", json=body, headers={"content-type": "application/fhir+json"}
                    )
            except httpx.HTTPError as exc:
                seen[f"error {type(exc).__name__}"] += 1
                continue
            ok = r.status_code < 500 or "retry-after" in r.headers
            seen[f"{r.status_code}{'' if ok else ' without Retry-After'}"] += 1
            if 400 <= r.status_code < 500:
                issue = (r.json().get("issue") or [{}])[0]
                seen[f"  {r.status_code}: {issue.get('diagnostics', '')[:60]}"] += 1


async def exports(base: str, stop: float, seen: collections.Counter[str]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        while time.monotonic() < stop:
            r = await http.get("/$export", headers={"prefer": "respond-async"})
            seen[f"export {r.status_code}"] += 1
            where = r.headers.get("content-location")
            while where and time.monotonic() < stop:
                status = await http.get(where)
                if status.status_code != 202:
                    seen[f"export poll {status.status_code}"] += 1
                    break
                await asyncio.sleep(2)
            next_one = time.monotonic() + 180
            while time.monotonic() < min(next_one, stop):
                await asyncio.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--sample", type=float, default=30)
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--redis", default=REDIS_URL, help="the Redis server to use")
    parser.add_argument("--trace", type=Path, help="tracemalloc snapshots into this directory")
    args = parser.parse_args()

    from adapter.sandbox import LeyrSandbox, NyraSandbox
    from adapter.sandbox.nyra.keys import RateLimits

    store = redis.Redis.from_url(args.redis)
    # The run's keys, and only those, are its own: counted, then deleted at the end.
    prefix = f"soak-{os.getpid()}-{int(time.time())}:"
    leyr = LeyrSandbox(seed=9, patients=args.patients)
    nyra = NyraSandbox(
        seed=9,
        patients=args.patients,
        keys=3,
        limits=RateLimits(second_window=1 / 10, minute_window=6.0),
    )
    leyr_port, nyra_port, port = free_port(), free_port(), free_port()
    serve_in_thread(leyr.app, leyr_port)
    serve_in_thread(nyra.app, nyra_port)
    root = Path(tempfile.mkdtemp(prefix="soak-"))
    path = root / "adapter.toml"
    path.write_text(config(leyr_port, nyra_port, leyr, nyra, root, args.redis, prefix))
    env = {**os.environ, "FHIR_ADAPTER_CONFIG": str(path)}
    if args.trace:
        args.trace.mkdir(parents=True, exist_ok=True)
        (root / "sitecustomize.py").write_text(TRACER)
        env["PYTHONPATH"] = f"{root}{os.pathsep}{env.get('PYTHONPATH', '')}"
        env["SOAK_TRACE_DIR"] = str(args.trace.resolve())
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/fhir-adapter"), "serve", "--workers", "3", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        hook = receiver()
        httpx.post(
            f"{base}/Subscription",
            json={
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "soak",
                "criteria": "Patient?",
                "channel": {
                    "type": "rest-hook",
                    "endpoint": hook,
                    "payload": "application/fhir+json",
                },
            },
            headers={"content-type": "application/fhir+json"},
            timeout=30,
        )
        seen: collections.Counter[str] = collections.Counter()
        stop = time.monotonic() + args.minutes * 60

        def load() -> None:
            async def everything() -> None:
                await asyncio.gather(
                    *(mix(base, stop, seen, n) for n in range(4)), exports(base, stop, seen)
                )

            asyncio.run(everything())

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        started = time.monotonic()
        rows = []
        traced = 0  # snapshots asked for: after a third of the run, and at its end
        print(
            "minute  "
            + "  ".join(f"worker {i + 1} MB / fds" for i in range(3))
            + "  persistent Redis keys  answers  caches MB",
            flush=True,
        )
        while loader.is_alive():
            pids = workers_of(server.pid)
            row = (
                round((time.monotonic() - started) / 60, 1),
                [(round(rss_mb(p), 1), fds(p)) for p in pids],
                persistent_keys(store, prefix),
                sum(seen.values()),
                round(caches_mb(port), 1),
            )
            rows.append(row)
            print(
                f"{row[0]:>6}  "
                + "  ".join(f"{m:>8} / {f:<4}" for m, f in row[1])
                + f"  {row[2]:>21}  {row[3]}  {row[4]}",
                flush=True,
            )
            if args.trace and traced == 0 and row[0] >= args.minutes / 3:
                traced = 1
                for pid in pids:
                    os.kill(pid, signal.SIGUSR2)
            loader.join(args.sample)
        if args.trace:
            for pid in workers_of(server.pid):
                os.kill(pid, signal.SIGUSR2)
            time.sleep(20)  # the snapshots are written
        report(rows, seen, args.minutes)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        names = list(store.scan_iter(match=f"{prefix}*", count=1000))
        if names:
            store.delete(*names)


def report(rows: list, seen: collections.Counter[str], minutes: float) -> None:
    """The samples as a Markdown table, the answers, and each check."""
    workers = len(rows[0][1])
    print()
    print(
        "| minute | "
        + " | ".join(f"worker {i + 1} RSS MB / fds" for i in range(workers))
        + " | persistent Redis keys | answers | caches MB, all workers |"
    )
    print("|---" * (workers + 4) + "|")
    for minute, samples, keys, answers, held in rows:
        cells = " | ".join(f"{m:.0f} / {f}" for m, f in samples)
        print(f"| {minute} | {cells} | {keys} | {answers:,} | {held:.0f} |")
    print()
    print("answers:", ", ".join(f"{k}: {v}" for k, v in sorted(seen.items())))
    bad = [k for k in seen if "without Retry-After" in k or k.startswith("error")]
    print(f"every answer 2xx, 4xx or 5xx with Retry-After: {bad or 'yes'}")
    flat_from = max(minutes - 20, minutes / 3)
    tail = [r for r in rows if r[0] >= flat_from]
    cap = CACHE_MB + TABLES_MB
    for i in range(workers):
        start = rows[0][1][i][0]
        peak = max(r[1][i][0] for r in rows)
        low, high = min(r[1][i][0] for r in tail), max(r[1][i][0] for r in tail)
        under = "yes" if peak <= start + cap else "NO"
        print(
            f"worker {i + 1}: {start:.0f} MB at start, peak {peak:.0f} MB "
            f"(under {start:.0f} + {cap} = {start + cap:.0f}: {under}); "
            f"from minute {tail[0][0]}: {low:.0f} to {high:.0f} MB, "
            f"{(high - low) / low * 100:.1f}% ({'flat' if high <= 1.1 * low else 'NOT flat'}); "
            f"descriptors {min(r[1][i][1] for r in tail)} to {max(r[1][i][1] for r in tail)}"
        )
    print(f"persistent Redis keys from minute {tail[0][0]}: {tail[0][2]} to {tail[-1][2]}")


if __name__ == "__main__":
    main()
