"""Subscriptions: from a change at the vendor to its delivery, and the vendor budget that
polling uses.

A Nyra sandbox with ``--patients`` patients (and the appointments it makes for them) and
``--keys`` keys, with Nyra's limits (12 a second and 60 a minute per key) on a clock
scaled ``--scale`` times faster; the service in this process (uvicorn on loopback) with
``[subscriptions] poll_seconds = 5`` and ``budget_share = 0.1`` on the same scaled clock;
a rest-hook receiver on loopback. One Subscription ``Appointment?_source=...`` is made and
waited for until ``active`` (its first sweep); then ``--changes`` bookings are made at the
vendor through the sandbox's own API, at seeded random moments, and each one's delivery
is timed. Figures are in vendor seconds (measured time times ``--scale``):

- latency p50 / p99 / max from the booking's answer to the notification's arrival;
- whether each change arrived exactly once;
- budget: the vendor calls the sandbox received from the service while the changes were
  being made and told, over the keys' per-minute budget in that time (target: at most
  ``budget_share``); 429s.

    .venv/bin/python bench/bench_subscriptions.py [--patients 1000] [--keys 1] [--scale 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapter.app import create_app
from adapter.sandbox import NyraSandbox, RateLimits
from adapter.settings import ExportSettings, Settings, SubscriptionSettings
from mappings import decode_id

SOURCE = "nyra-bench"


class Receiver:
    def __init__(self) -> None:
        self.got: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.got.put((time.monotonic(), body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def serve(app: Any) -> tuple[str, uvicorn.Server, threading.Thread]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[sock]),))
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}/fhir", server, thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=1)
    parser.add_argument("--scale", type=float, default=20.0)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    scale = args.scale
    limits = RateLimits(second_window=1 / scale, minute_window=60 / scale)
    sandbox = NyraSandbox(seed=args.seed, patients=args.patients, keys=args.keys, limits=limits)
    root = Path(tempfile.mkdtemp())
    settings = Settings(
        sources={
            SOURCE: {
                "connector": "nyra",
                **sandbox.defaults(),
                "rate_limit": {"second_window": 1 / scale, "minute_window": 60 / scale},
            }
        },
        open_access=True,
        cursor_key=b"b" * 32,
        export=ExportSettings(dir=str(root / "export")),
        subscriptions=SubscriptionSettings(
            dir=str(root / "subscriptions"),
            poll_seconds=5 / scale,
            budget_share=0.1,
            allowed_endpoints=("http://127.0.0.1:*",),
        ),
    )
    app = create_app(settings, transports={SOURCE: sandbox.transport()})
    receiver = Receiver()
    base, server, thread = serve(app)
    grants = sandbox.api_keys()
    try:
        with httpx.Client(base_url=base, timeout=60) as http:
            made = http.post(
                "/Subscription",
                headers={"content-type": "application/fhir+json"},
                json={
                    "resourceType": "Subscription",
                    "status": "requested",
                    "reason": "bench",
                    "criteria": f"Appointment?_source={SOURCE}",
                    "channel": {
                        "type": "rest-hook",
                        "endpoint": receiver.url,
                        "payload": "application/fhir+json",
                    },
                },
            )
            made.raise_for_status()
            sub = made.json()["id"]
            started = time.monotonic()
            while http.get(f"/Subscription/{sub}").json()["status"] != "active":
                time.sleep(0.05)
            first_sweep = (time.monotonic() - started) * scale
        latencies, told, calls_before = run_changes(sandbox, receiver, args, scale)
        calls = sum(g.requests for g in grants) - calls_before - args.changes
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    span = latencies.pop("_span")
    minutes = span * scale / 60
    budget = 60 * args.keys * minutes
    values = sorted(latencies.values())
    p99 = values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]
    print(f"patients {args.patients}, keys {args.keys}, scale {scale:g}, changes {args.changes}")
    print(f"first sweep (Subscription active): {first_sweep:.0f} s")
    print(
        f"latency p50 {statistics.median(values):.1f} s, p99 {p99:.1f} s, "
        f"max {values[-1]:.1f} s (vendor seconds)"
    )
    print(
        f"told: {len(told)} distinct of {args.changes}, duplicates {sum(told.values()) - len(told)}"
    )
    print(
        f"polling calls {calls} in {minutes:.1f} vendor minutes: {calls / budget:.1%} of the "
        f"budget; 429s {sandbox.limited_total()}"
    )


def run_changes(
    sandbox: NyraSandbox, receiver: Receiver, args: argparse.Namespace, scale: float
) -> tuple[dict[str, float], dict[str, int], int]:
    rng = random.Random(args.seed)
    grant = sandbox.api_keys()[0]
    auth = {
        "x-api-key": grant.key,
        "x-api-secret": grant.secret,
        "authorization": f"Bearer {grant.token}",
    }
    doctors = list(sandbox.doctors)
    patients = list(sandbox.patients)
    days = [date.today() + timedelta(days=d) for d in range(20, 80)]
    days = [d for d in days if d.weekday() < 5]
    times = [(d, h) for d in days for h in range(9, 17)]
    rng.shuffle(times)
    booked_at: dict[str, float] = {}
    latencies: dict[str, float] = {}
    told: dict[str, int] = {}
    calls_before = sum(g.requests for g in sandbox.api_keys())
    begun = time.monotonic()

    async def book() -> None:
        async with httpx.AsyncClient(transport=sandbox.transport(), base_url="http://n") as c:
            for n in range(args.changes):
                await asyncio.sleep(rng.uniform(0, 60) / scale)  # up to a vendor minute
                doctor = doctors[n % len(doctors)]
                patient = patients[n % len(patients)]
                while True:
                    day, hour = times.pop()
                    r = await c.post(
                        "/appointments",
                        headers=auth,
                        json={
                            "patient_id": patient["id"],
                            "doctor_id": doctor["id"],
                            "branch_id": doctor.get("branch_id") or patient.get("branch_id"),
                            "appointment_date": day.isoformat(),
                            "appointment_time": f"{hour:02d}:00:00",
                            "type": "CONSULTATION",
                            "booking_source": "MANUAL",
                        },
                    )
                    if r.status_code in (200, 201):
                        booked_at[str(r.json()["data"]["appointment_id"])] = time.monotonic()
                        break

    asyncio.run(book())
    deadline = time.monotonic() + 3600 / scale
    while len(latencies) < len(booked_at) and time.monotonic() < deadline:
        try:
            arrived, body = receiver.got.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        for entry in body.get("entry", []):
            vendor_id = decode_id(entry["resource"]["id"]).vendor_id
            if vendor_id in booked_at:
                told[vendor_id] = told.get(vendor_id, 0) + 1
                latencies.setdefault(vendor_id, (arrived - booked_at[vendor_id]) * scale)
    latencies["_span"] = time.monotonic() - begun
    return latencies, told, calls_before


if __name__ == "__main__":
    main()
