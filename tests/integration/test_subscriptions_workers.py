"""Two ``fhir-adapter serve`` workers sharing Redis deliver each change exactly once.

The real command runs in a subprocess (``serve --workers 2``, ``[server] redis_url``), in
front of a Nyra sandbox on a loopback port; a rest-hook receiver on loopback records every
notification. Changes are made at the vendor through the sandbox's own API, one at a time
(each waited for) and in a burst; a last marker change is waited for, and then every
change must have arrived exactly once, as a valid R4 history Bundle with the subscriber's
header.

Needs the Redis server at 127.0.0.1:6379 (its keys under a ``redis_prefix`` of its own,
deleted after); without it the test is skipped, saying so (under ``CI=true`` it fails).
"""

from __future__ import annotations

import collections
import queue
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from fhir.resources.R4B.bundle import Bundle
from hooks import Receiver, subscription
from services import REDIS_URL, forget, namespace, needs_redis
from workers import Facade, vendor_on_a_port

from adapter.sandbox import NyraSandbox, RateLimits
from mappings import decode_id

POLL = 0.3
WAIT = 30.0  # for one change's notification, on a slow machine
SCALED = RateLimits(second_window=0.05, minute_window=3.0)  # Nyra's time, 20 times faster


pytestmark = needs_redis


def _config(tmp: Path, base_url: str, credentials: dict[str, str], prefix: str) -> str:
    key = ", ".join(f'{name} = "{value}"' for name, value in credentials.items())
    return f"""
[server]
open_access = true
redis_url = "{REDIS_URL}"
redis_prefix = "{prefix}"
shutdown_seconds = 1

[sources.nyra-two]
connector = "nyra"
base_url = "{base_url}"
timezone = "Asia/Kolkata"
keys = [{{ {key} }}]
rate_limit = {{ second_window = {SCALED.second_window}, minute_window = {SCALED.minute_window} }}

[export]
dir = "{tmp / "export"}"

[subscriptions]
poll_seconds = {POLL}
allowed_endpoints = ["http://127.0.0.1:*"]
"""


class Vendor:
    """The Nyra sandbox's own API, as the hospital's front desk uses it."""

    def __init__(self, sandbox: NyraSandbox, base_url: str) -> None:
        grant = sandbox.api_keys()[0]
        self.http = httpx.Client(
            base_url=base_url,
            timeout=10,
            headers={
                "x-api-key": grant.key,
                "x-api-secret": grant.secret,
                "authorization": f"Bearer {grant.token}",
            },
        )
        self.patient = next(iter(sandbox.patients))
        self.doctor = next(iter(sandbox.doctors))

    def book(self, day: date, hour: int) -> str:
        answer = self.http.post(
            "/appointments",
            json={
                "patient_id": self.patient["id"],
                "doctor_id": self.doctor["id"],
                "branch_id": self.doctor.get("branch_id") or self.patient.get("branch_id"),
                "appointment_date": day.isoformat(),
                "appointment_time": f"{hour:02d}:00:00",
                "type": "CONSULTATION",
                "booking_source": "MANUAL",
            },
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["data"]["appointment_id"])

    def cancel(self, vendor_id: str) -> None:
        answer = self.http.patch(f"/appointments/{vendor_id}/status", json={"status": "CANCELLED"})
        assert answer.status_code == 200, answer.text


def _weekdays(count: int) -> list[date]:
    days, day = [], date.today() + timedelta(days=3)
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def test_two_workers_deliver_each_change_once(tmp_path):
    prefix = namespace()
    sandbox = NyraSandbox(seed=5, patients=12, keys=1, limits=SCALED)
    receiver = Receiver()
    got: list[tuple[dict[str, str], dict[str, Any]]] = []
    try:
        with vendor_on_a_port(sandbox.app) as base_url:
            config = tmp_path / "adapter.toml"
            config.write_text(
                _config(tmp_path, base_url, sandbox.api_keys()[0].credentials(), prefix)
            )
            facade = Facade(config, workers=2)
            vendor = Vendor(sandbox, base_url)
            try:
                facade.wait_until_started()
                with httpx.Client(base_url=f"{facade.base}/fhir", timeout=30) as http:
                    body = subscription(receiver.url, "Appointment?_source=nyra-two")
                    made = http.post(
                        "/Subscription",
                        json=body,
                        headers={"content-type": "application/fhir+json"},
                    )
                    assert made.status_code == 201, made.text
                    sub_id = made.json()["id"]
                    deadline = time.monotonic() + WAIT
                    while http.get(f"/Subscription/{sub_id}").json()["status"] != "active":
                        assert time.monotonic() < deadline, "not active in time"
                        time.sleep(POLL / 3)

                def arrived(vendor_id: str, status: str) -> None:
                    """Until the notification of ``vendor_id`` in ``status`` is in."""
                    deadline = time.monotonic() + WAIT
                    while not any(
                        decode_id(e["resource"]["id"]).vendor_id == vendor_id
                        and e["resource"]["status"] == status
                        for _, b in got
                        for e in b.get("entry", [])
                    ):
                        left = deadline - time.monotonic()
                        assert left > 0, f"{vendor_id} ({status}) was not told in time"
                        got.append(receiver.next(timeout=left))

                days = _weekdays(3)
                changes: list[tuple[str, str]] = []
                for hour in (9, 10, 11, 12):  # one at a time, each waited for
                    booked = vendor.book(days[0], hour)
                    changes.append((booked, "booked"))
                    arrived(booked, "booked")
                vendor.cancel(changes[0][0])
                changes.append((changes[0][0], "cancelled"))
                arrived(changes[0][0], "cancelled")
                burst = [vendor.book(days[1], hour) for hour in (9, 10, 11, 12, 13)]
                changes += [(b, "booked") for b in burst]
                vendor.cancel(burst[0])
                changes.append((burst[0], "cancelled"))
                marker = vendor.book(days[2], 9)
                changes.append((marker, "booked"))
                arrived(marker, "booked")
                # A burst's booking and its cancel may be found in one sweep: then only
                # the cancel is told. Every other change must be.
                must = [c for c in changes if c != (burst[0], "booked")]
                for vendor_id, status in must:
                    arrived(vendor_id, status)
                # Then on until nothing more comes for two poll intervals: a late
                # duplicate, from either worker, is counted too.
                while True:
                    try:
                        got.append(receiver.next(timeout=2 * POLL))
                    except queue.Empty:
                        break
            finally:
                facade.stop()
    finally:
        receiver.close()
        forget(prefix)

    told: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for headers, body in got:
        assert headers["authorization"] == "Bearer hook-secret"
        bundle = Bundle.model_validate(body)
        assert bundle.type == "history"
        for entry in body.get("entry", []):
            resource = entry["resource"]
            told[(resource["id"], resource["status"], resource["meta"]["versionId"])] += 1
    twice = {key: n for key, n in told.items() if n > 1}
    assert not twice, f"told more than once: {twice}"
    seen = {(decode_id(fhir_id).vendor_id, status) for fhir_id, status, _ in told}
    assert set(must) <= seen
    assert seen <= set(changes)
