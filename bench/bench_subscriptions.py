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

At scale (``--subscriptions 1000 --endpoints 20 --silent 4``): that many Subscriptions,
spread evenly over that many rest-hook endpoints of which ``--silent`` take connections
and never answer; each change's latency is then counted at every answering Subscription,
and the deliveries (notifications taken) per second while the changes were told are
given. ``--where`` says where the changes are made: ``elsewhere`` (bookings at the vendor
20 to 80 days ahead, outside the hot set), ``hot`` (bookings at the vendor in the next
13 days: the hot set, swept beside the whole listing) or ``service`` (cancels through
this service, told as they are answered).

``--log-size`` measures instead the event log's size per 10,000 events of a real
Appointment (the log is also the queue they are delivered from): the SQLite file's bytes
without Redis, and (when it answers at 127.0.0.1:6379) the stream's ``MEMORY USAGE`` in
Redis, under a Subscription id of its own that it deletes after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
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
from adapter.subscriptions.poller import HOT_DAYS
from mappings import decode_id

SOURCE = "nyra-bench"


class Receiver:
    def __init__(self) -> None:
        self.got: queue.Queue[tuple[float, dict[str, Any], str]] = queue.Queue()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.got.put((time.monotonic(), body, self.path))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Silent:
    """An endpoint that takes connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.taken: list[socket.socket] = []
        threading.Thread(target=self._take, daemon=True).start()

    def _take(self) -> None:
        try:
            while True:
                self.taken.append(self.sock.accept()[0])
        except OSError:
            pass


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
    parser.add_argument("--subscriptions", type=int, default=1)
    parser.add_argument("--endpoints", type=int, default=1)
    parser.add_argument("--silent", type=int, default=0)
    parser.add_argument("--where", choices=("elsewhere", "hot", "service"), default="elsewhere")
    parser.add_argument("--log-size", action="store_true")
    args = parser.parse_args()
    if args.log_size:
        log_size(args)
        return
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
    silent = [Silent() for _ in range(args.silent)]
    endpoints = [s.url for s in silent] + [
        f"{receiver.url}/{n}" for n in range(args.endpoints - args.silent)
    ]
    base, server, thread = serve(app)
    grants = sandbox.api_keys()
    answering: set[str] = set()  # the paths of the Subscriptions whose endpoint answers
    try:
        with httpx.Client(base_url=base, timeout=60) as http:
            subs = []
            for n in range(args.subscriptions):
                endpoint = endpoints[n % len(endpoints)]
                hook = endpoint if endpoint.startswith(tuple(s.url for s in silent)) else None
                if hook is None:
                    endpoint = f"{endpoint}/{n}"
                    answering.add(endpoint.removeprefix(receiver.url.removesuffix("/hook")))
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
                            "endpoint": endpoint,
                            "payload": "application/fhir+json",
                        },
                    },
                )
                made.raise_for_status()
                subs.append(made.json()["id"])
            started = time.monotonic()
            while http.get(f"/Subscription/{subs[-1]}").json()["status"] != "active":
                time.sleep(0.05)
            first_sweep = (time.monotonic() - started) * scale
            if args.where == "service":
                latencies, told, calls_before, deliveries = run_service_changes(
                    http, sandbox, receiver, args, scale, answering
                )
            else:
                latencies, told, calls_before, deliveries = run_changes(
                    sandbox, receiver, args, scale, answering
                )
        calls = sum(g.requests for g in grants) - calls_before
        if args.where != "service":
            calls -= args.changes
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        for hung in silent:
            hung.sock.close()
    span = latencies.pop("_span")
    delivering = latencies.pop("_delivering")
    minutes = span * scale / 60
    budget = 60 * args.keys * minutes
    values = sorted(latencies.values())
    p99 = values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]
    print(
        f"patients {args.patients}, keys {args.keys}, scale {scale:g}, changes {args.changes} "
        f"({args.where}), subscriptions {args.subscriptions} over {args.endpoints} endpoints "
        f"({args.silent} never answer)"
    )
    print(f"first sweep (Subscriptions active): {first_sweep:.0f} s")
    print(
        f"latency over {len(values)} (change, answering Subscription) pairs: "
        f"p50 {statistics.median(values):.2f} s, p99 {p99:.2f} s, "
        f"max {values[-1]:.2f} s (vendor seconds; real: p50 "
        f"{statistics.median(values) / scale:.3f} s, p99 {p99 / scale:.3f} s)"
    )
    expected = args.changes * len(answering)
    print(f"told: {len(told)} distinct of {expected}, duplicates {sum(told.values()) - len(told)}")
    print(
        f"deliveries: {deliveries} notifications in {delivering:.1f} real s: "
        f"{deliveries / max(delivering, 1e-9):.0f} a second"
    )
    print(
        f"polling calls {calls} in {minutes:.1f} vendor minutes: {calls / budget:.1%} of the "
        f"budget; 429s {sandbox.limited_total()}"
    )
    # What one sweep takes at the budget share: a page of 100 is one call, and the share
    # of the keys' 60 calls a minute allows 60 * share * keys of them a minute.
    first, last = date.today(), date.today() + timedelta(days=HOT_DAYS)
    upcoming = sum(
        1
        for a in sandbox.appointments
        if first.isoformat() <= str(a.get("appointment_time"))[:10] < last.isoformat()
    )
    every = sum(1 for _ in sandbox.appointments)
    per_call = 60 / (60 * 0.1 * args.keys)
    print(
        f"one sweep at the budget share: hot set ({upcoming} appointments) "
        f"{math.ceil(upcoming / 100) * per_call:.0f} s, all ({every}) "
        f"{math.ceil(every / 100) * per_call:.0f} s (vendor seconds)"
    )


def log_size(args: argparse.Namespace) -> None:
    """The event log's bytes per 10,000 events of one real Appointment (a read's JSON):
    the SQLite file (its WAL checkpointed into it as the store closes), the Redis stream."""
    import os
    import uuid

    import redis.asyncio as aioredis

    from adapter.subscriptions.store import FileSubscriptionStore, RedisSubscriptionStore

    sandbox = NyraSandbox(seed=args.seed, patients=50)
    settings = Settings(
        sources={SOURCE: {"connector": "nyra", **sandbox.defaults()}},
        open_access=True,
        cursor_key=b"b" * 32,
        export=ExportSettings(dir=tempfile.mkdtemp()),
    )
    app = create_app(settings, transports={SOURCE: sandbox.transport()})
    base, server, thread = serve(app)
    try:
        with httpx.Client(base_url=base, timeout=60) as http:
            appointment = http.get("/Appointment", params={"_count": 1}).json()["entry"][0][
                "resource"
            ]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    size = len(json.dumps(appointment, separators=(",", ":")))
    events = 10_000

    async def fill(store: Any, sub_id: str) -> None:
        await store.create(
            {"owner": None, "resource": {"resourceType": "Subscription", "id": sub_id}}
        )
        for start in range(0, events, 100):
            await store.push_events(
                sub_id,
                [
                    {**appointment, "id": f"{appointment['id']}{n}"}
                    for n in range(start, start + 100)
                ],
            )

    async def measure() -> None:
        root = Path(tempfile.mkdtemp())
        files = FileSubscriptionStore(root)
        await fill(files, "bench")
        await files.aclose()
        logged = os.path.getsize(root / "events.sqlite3")
        print(f"one Appointment: {size} bytes of JSON")
        print(f"SQLite: event log {logged / 1e6:.1f} MB per {events:,} events (file bytes)")
        client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
        try:
            await client.ping()
        except Exception:
            print("Redis: not answering at 127.0.0.1:6379, not measured")
            return
        store = RedisSubscriptionStore(client)
        sub_id = f"bench-{uuid.uuid4().hex}"
        try:
            await fill(store, sub_id)
            log_bytes = await client.memory_usage(store.stream(sub_id), samples=0)
            print(
                f"Redis: event log (stream) {log_bytes / 1e6:.1f} MB per {events:,} events "
                "(MEMORY USAGE)"
            )
        finally:
            await store.delete(sub_id)
            await store.aclose()

    asyncio.run(measure())


def collect(
    receiver: Receiver,
    changed_at: dict[str, float],
    answering: set[str],
    scale: float,
    wait: float,
) -> tuple[dict[str, float], dict[str, int], int]:
    """Notifications until each change reached every answering Subscription (or
    ``wait`` real seconds): latency per (Subscription, change), counts, deliveries."""
    latencies: dict[str, float] = {}
    told: dict[str, int] = {}
    deliveries = 0
    first = last = None
    deadline = time.monotonic() + wait
    wanted = len(changed_at) * len(answering)
    while len(latencies) < wanted and time.monotonic() < deadline:
        try:
            arrived, body, path = receiver.got.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        deliveries += 1
        first = arrived if first is None else first
        last = arrived
        for entry in body.get("entry", []):
            vendor_id = decode_id(entry["resource"]["id"]).vendor_id
            if vendor_id in changed_at:
                pair = f"{path} {vendor_id}"
                told[pair] = told.get(pair, 0) + 1
                latencies.setdefault(pair, (arrived - changed_at[vendor_id]) * scale)
    latencies["_delivering"] = (last - first) if first is not None and last is not None else 0.0
    return latencies, told, deliveries


def run_service_changes(
    http: httpx.Client,
    sandbox: NyraSandbox,
    receiver: Receiver,
    args: argparse.Namespace,
    scale: float,
    answering: set[str],
) -> tuple[dict[str, float], dict[str, int], int, int]:
    """Cancels through this service, at seeded random moments (up to a vendor minute
    apart), each timed from its answer."""
    rng = random.Random(args.seed)
    listed = http.get(
        "/Appointment",
        params={"_source": SOURCE, "status": "booked", "date": f"ge{date.today()}", "_count": 200},
    ).json()
    booked = [
        e["resource"] for e in listed.get("entry", []) if e.get("search", {}).get("mode") == "match"
    ]
    rng.shuffle(booked)
    calls_before = sum(g.requests for g in sandbox.api_keys())
    changed_at: dict[str, float] = {}
    begun = time.monotonic()
    for resource in booked[: args.changes]:
        time.sleep(rng.uniform(0, 60) / scale)
        answer = http.put(
            f"/Appointment/{resource['id']}",
            json={**resource, "status": "cancelled"},
            headers={"content-type": "application/fhir+json"},
        )
        answer.raise_for_status()
        changed_at[decode_id(resource["id"]).vendor_id] = time.monotonic()
    latencies, told, deliveries = collect(receiver, changed_at, answering, scale, 3600 / scale)
    latencies["_span"] = time.monotonic() - begun
    return latencies, told, calls_before, deliveries


def run_changes(
    sandbox: NyraSandbox,
    receiver: Receiver,
    args: argparse.Namespace,
    scale: float,
    answering: set[str],
) -> tuple[dict[str, float], dict[str, int], int, int]:
    rng = random.Random(args.seed)
    grant = sandbox.api_keys()[0]
    auth = {
        "x-api-key": grant.key,
        "x-api-secret": grant.secret,
        "authorization": f"Bearer {grant.token}",
    }
    doctors = list(sandbox.doctors)
    patients = list(sandbox.patients)
    ahead = range(1, 14) if args.where == "hot" else range(20, 80)
    days = [date.today() + timedelta(days=d) for d in ahead]
    days = [d for d in days if d.weekday() < 5]
    times = [(d, h) for d in days for h in range(9, 17)]
    rng.shuffle(times)
    booked_at: dict[str, float] = {}
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
    latencies, told, deliveries = collect(receiver, booked_at, answering, scale, 3600 / scale)
    latencies["_span"] = time.monotonic() - begun
    return latencies, told, calls_before, deliveries


if __name__ == "__main__":
    main()
