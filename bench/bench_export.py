"""Bulk export: every Patient and Appointment of one Nyra sandbox with 3 keys, through
``fhir-adapter export`` and through HTTP ``$export``, at 10,000 and 100,000 patients.

The sandbox runs in this process (uvicorn on a loopback port, in a thread), with Nyra's
limits (12 a second and 60 a minute per key) on a clock scaled ``--scale`` times faster:
the same counts per window, so an export of 100,000 patients takes minutes, not hours.
The export runs in its own process (the command, or ``fhir-adapter serve`` with one
worker), so its peak RSS (``VmHWM`` in ``/proc``) is the export's alone. For each run:

- **budget used**: the vendor calls the sandbox received during the run, over what the
  export may use in that time (``[export] budget_share`` of 60 a minute-window per key,
  times the keys);
- **peak RSS** of the exporting process;
- **records/s**: resources written over the run's wall time.

With ``--storage`` the files go to object storage (``[export] storage``): an S3 service
(moto, in server mode on a loopback port, in a process of its own) that the exporting process
reaches through its endpoint, with the tails of the files not yet uploaded beside the jobs
(a directory, or Redis with ``--redis``).

    .venv/bin/python bench/bench_export.py                    # 10,000 and 100,000 patients
    .venv/bin/python bench/bench_export.py --patients 2000    # a quick look
    .venv/bin/python bench/bench_export.py --storage --patients 10000 100000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_load import Arrivals, free_port, vendor_on_a_port  # noqa: E402

from adapter.sandbox import NyraSandbox, RateLimits  # noqa: E402

COMMAND = Path(sys.executable).with_name("fhir-adapter")
SOURCE = "nyra-bench"
PER_MINUTE = 60  # Nyra: per key, per minute window
# With --redis: the run's keys, apart from anything else on that server (deleted at the end).
PREFIX = f"bench-export-{os.getpid()}:"


# The exporting process's view of the S3 service (moto takes any credentials).
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def config(
    base_url: str,
    sandbox: NyraSandbox,
    limits: RateLimits,
    share: float,
    jobs: Path,
    storage: str = "",
    redis_url: str = "",
) -> str:
    keys = ", ".join(
        "{ " + ", ".join(f'{k} = "{v}"' for k, v in g.credentials().items()) + " }"
        for g in sandbox.api_keys()
    )
    return f"""
[server]
open_access = true
shutdown_seconds = 1
{f'redis_url = "{redis_url}"{chr(10)}redis_prefix = "{PREFIX}"' if redis_url else ""}

[export]
dir = "{jobs}"
budget_share = {share}
{storage}

[sources.{SOURCE}]
connector = "nyra"
base_url = "{base_url}"
timezone = "Asia/Kolkata"
keys = [{keys}]
rate_limit = {{ second_window = {limits.second_window}, minute_window = {limits.minute_window} }}
"""


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_ADAPTER_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return {**env, **S3_ENV}


def by_command(cfg: Path, out: Path) -> tuple[float, int, dict[str, Any]]:
    """(seconds, peak RSS in KiB, manifest) of ``fhir-adapter export``."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(COMMAND), "export", "--config", str(cfg), "--source", SOURCE,
         "--type", "Patient,Appointment", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env(),
    )  # fmt: skip
    # The peak RSS as /proc tells it, read while the command runs: wait4's ru_maxrss would
    # count this process's own pages (its sandbox) copied into the child before its exec.
    rss = 0
    while proc.poll() is None:
        rss = max(rss, peak_rss(proc.pid))
        time.sleep(0.1)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"export failed: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
    return seconds, rss, json.loads((out / "manifest.json").read_text())


def by_http(cfg: Path) -> tuple[float, int, dict[str, Any]]:
    """(seconds, peak RSS in KiB, manifest) of a ``$export`` through ``fhir-adapter serve``."""
    port = free_port()
    proc = subprocess.Popen(
        [str(COMMAND), "serve", "--config", str(cfg), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env(),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        with httpx.Client(timeout=30) as http:
            for _ in range(600):  # wait for it to listen (a benchmark, not a test)
                try:
                    if http.get(f"{base}/metadata").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            started = time.monotonic()
            kick = http.get(
                f"{base}/$export",
                params={"_type": "Patient,Appointment"},
                headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
            )
            if kick.status_code != 202:
                raise RuntimeError(f"kick-off: {kick.status_code} {kick.text[:300]}")
            status_url = kick.headers["content-location"]
            while True:
                answer = http.get(status_url)
                if answer.status_code == 200:
                    break
                if answer.status_code != 202:
                    raise RuntimeError(f"status: {answer.status_code} {answer.text[:300]}")
                time.sleep(0.1)
            seconds = time.monotonic() - started
        rss = peak_rss(proc.pid)
        return seconds, rss, answer.json()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def peak_rss(pid: int) -> int:
    """VmHWM of a process, in KiB (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run(
    patients: int,
    keys: int,
    scale: float,
    share: float,
    s3: tuple[str, Any] | None = None,
    redis_url: str = "",
) -> list[dict[str, Any]]:
    limits = RateLimits(second_window=1 / scale, minute_window=60 / scale)
    made = time.monotonic()
    sandbox = NyraSandbox(seed=5, patients=patients, keys=keys, limits=limits)
    appointments = len(sandbox.appointments)
    print(f"  sandbox of {patients:,} patients, {appointments:,} appointments made in "
          f"{time.monotonic() - made:.0f} s", flush=True)  # fmt: skip
    arrivals = Arrivals(sandbox.app)
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-export-") as tmp,
        vendor_on_a_port(arrivals) as url,
    ):
        for path in ("command", "http"):
            cfg = Path(tmp) / f"{path}.toml"
            storage = ""
            if s3 is not None:
                bucket = f"bench-{patients}-{path}"
                s3[1].create_bucket(Bucket=bucket)
                storage = f'storage = "s3://{bucket}/exports"\nendpoint_url = "{s3[0]}"'
            jobs = Path(tmp) / f"{path}-jobs"
            cfg.write_text(config(url, sandbox, limits, share, jobs, storage, redis_url))
            before, limited = len(arrivals.seen), sandbox.limited_total()
            if path == "command":
                seconds, rss, body = by_command(cfg, Path(tmp) / "out")
            else:
                seconds, rss, body = by_http(cfg)
            calls = len(arrivals.seen) - before
            allowed = share * keys * PER_MINUTE * seconds / limits.minute_window
            written = {o["type"]: 0 for o in body["output"]}
            for o in body["output"]:
                written[o["type"]] += o["count"]
            records = sum(written.values())
            row = {
                "patients": patients,
                "path": path,
                "seconds": seconds,
                "records": records,
                "written": written,
                "expected": {"Patient": patients, "Appointment": appointments},
                "records_per_s": records / seconds,
                "calls": calls,
                "budget_used": calls / allowed,
                "rss_mb": rss / 1024,
                "limited": sandbox.limited_total() - limited,
                "errors": len(body.get("error", [])),
                "storage": "s3" if s3 else "disk",
            }
            rows.append(row)
            print(
                f"  {path:8s} {records:,} records in {seconds:.1f} s "
                f"({row['records_per_s']:,.0f}/s); "
                f"{calls:,} vendor calls = {row['budget_used']:.1%} of the allowed budget; "
                f"peak RSS {row['rss_mb']:.0f} MB; 429s {row['limited']}; "
                f"written {written} of {row['expected']}",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--keys", type=int, default=3)
    parser.add_argument("--scale", type=float, default=10.0, help="time runs this much faster")
    parser.add_argument("--share", type=float, default=0.5, help="[export] budget_share")
    parser.add_argument(
        "--storage", action="store_true", help="files on object storage (moto on a port)"
    )
    parser.add_argument("--redis", default="", help="[server] redis_url (jobs, tails, budget)")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    where = "object storage (moto)" if args.storage else "disk"
    print(
        f"Nyra sandbox, {args.keys} keys, time x{args.scale:g}, budget_share {args.share}, "
        f"files on {where}{', Redis' if args.redis else ''}"
    )
    with contextlib.ExitStack() as running:
        s3 = running.enter_context(moto_on_a_port()) if args.storage else None
        if args.redis:
            running.callback(_forget, args.redis)
        for n in args.patients:
            run(n, args.keys, args.scale, args.share, s3, args.redis)


def _forget(redis_url: str) -> None:
    import redis

    with redis.Redis.from_url(redis_url) as client:
        names = list(client.scan_iter(match=f"{PREFIX}*", count=1000))
        if names:
            client.delete(*names)


@contextlib.contextmanager
def moto_on_a_port() -> Iterator[tuple[str, Any]]:
    """moto's S3 on 127.0.0.1 at a port the system picks, in a process of its own (its
    CPU is not the sandbox's, as a real S3 service's is not): (endpoint, a boto3 client)."""
    import boto3

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve_moto, args=(child,), daemon=True
    )
    server.start()
    try:
        endpoint = parent.recv()
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=S3_ENV["AWS_DEFAULT_REGION"],
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        )
        yield endpoint, client
    finally:
        server.terminate()
        server.join(10)


def _serve_moto(pipe: Any) -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    pipe.send(f"http://{host}:{port}")
    threading.Event().wait()


if __name__ == "__main__":
    main()
