"""What the Subscription tests share: a service over both sandboxes with a fast poller
(``World``), the poller's rounds to wait on, the service on a loopback port, and a
booking made at the vendor as its front desk would."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from harness import FAST
from hooks import Receiver
from serving import on_a_port
from worlds import weekday

from adapter.app import create_app
from adapter.auth.clients import load_clients
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import ExportSettings, Settings, SubscriptionSettings

JSON = {"content-type": "application/fhir+json"}
POLL = 0.2
WAIT = 10 * POLL + 3  # two poll intervals, with room for a slow machine


class Rounds:
    """The poller's rounds as they end, for a test thread to wait on (no sleeping)."""

    def __init__(self) -> None:
        self.ended = 0
        self._changed = threading.Condition()

    def __call__(self, ended: int) -> None:
        with self._changed:
            self.ended = ended
            self._changed.notify_all()

    def two_more(self) -> None:
        """Until the round under way and the whole one after it have ended."""
        with self._changed:
            target = self.ended + 2
            assert self._changed.wait_for(lambda: self.ended >= target, timeout=60), (
                "the poller ended no rounds"
            )


def told_once(world: World, receiver: Receiver) -> None:
    """Nothing more reaches the receiver while the poller looks twice more."""
    world.rounds.two_more()
    with pytest.raises(queue.Empty):
        receiver.got.get_nowait()


class World:
    def __init__(self, root: Path) -> None:
        self.leyr = LeyrSandbox(seed=2, patients=12)
        self.nyra = NyraSandbox(seed=2, patients=12, limits=FAST)
        sources = {
            "leyr-w": {"connector": "leyr", **self.leyr.defaults()},
            "nyra-w": {"connector": "nyra", **self.nyra.defaults()},
        }
        raw = {
            "crm": {"secret": "c" * 24, "scopes": ["system/*.cruds"]},
            "other": {"secret": "o" * 24, "scopes": ["system/*.cruds"]},
            "reader": {"secret": "r" * 24, "scopes": ["system/Subscription.rs"]},
        }
        self.clients = load_clients(raw, list(sources))
        settings = Settings(
            sources=sources,
            clients=self.clients,
            cursor_key=b"w" * 32,
            token_key=b"t" * 32,
            token_minutes=60,
            public_base_url="https://fhir.example.org/fhir",
            export=ExportSettings(dir=str(root / "export")),
            subscriptions=SubscriptionSettings(
                dir=str(root / "subscriptions"),
                poll_seconds=POLL,
                max_failures=3,
                allowed_endpoints=("http://127.0.0.1:*",),
            ),
        )
        self.settings = settings
        self.app = self.restarted()

    def restarted(self) -> Any:
        """The service anew over the same sandboxes and directories (a restart)."""
        transports = {"leyr-w": self.leyr.transport(), "nyra-w": self.nyra.transport()}
        self.app = create_app(self.settings, transports=transports)
        self.rounds = Rounds()
        self.app.state.subscriptions.on_round_end = self.rounds
        return self.app

    def auth(self, name: str) -> dict[str, str]:
        client = self.clients[name]
        token, _ = self.app.state.tokens.issue(client, dict(client.scopes))
        return {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def serving(world: World) -> Iterator[httpx.Client]:
    """``world.app`` on a loopback port, and a client of it as the CRM."""
    with (
        on_a_port(world.app) as base,
        httpx.Client(base_url=f"{base}/fhir", timeout=30, headers=world.auth("crm")) as client,
    ):
        yield client


def until(check: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait (bounded) for ``check``: what the poller does shows in reads."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(POLL / 4)


def subscribe(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    made = http.post("/Subscription", json=body, headers=JSON)
    assert made.status_code == 201, made.text
    sub = made.json()
    assert made.headers["location"].endswith(f"/Subscription/{sub['id']}")
    assert sub["status"] == "requested"
    until(lambda: http.get(f"/Subscription/{sub['id']}").json()["status"] == "active")
    return sub


def valid_history(body: dict[str, Any]) -> Bundle:
    bundle = Bundle.model_validate(body)
    assert bundle.type == "history"
    for entry in body.get("entry", []):
        assert entry["request"]["method"] == "PUT"
        assert (
            entry["request"]["url"]
            == f"{entry['resource']['resourceType']}/{entry['resource']['id']}"
        )
        assert entry["response"]["status"] == "200"
        assert entry["fullUrl"] == f"https://fhir.example.org/fhir/{entry['request']['url']}"
    return bundle


def book_at_the_vendor(world: World, source: str, hour: int) -> str:
    """A booking made at the vendor through its own API (as the front desk's system
    would), three weekdays ahead at ``hour`` local time; the vendor's appointment id."""
    day = weekday(3)
    if source == "leyr-w":
        cu = next(iter(world.leyr.care_units))
        patient = next(iter(world.leyr.patients[cu]))
        doctor = next(r for r in world.leyr.resources if r["care_unit_id"] == cu)
        service = next(s for s in world.leyr.services if s["care_unit_id"] == cu)
        zone = ZoneInfo(world.leyr.timezone)
        start = datetime.combine(day, datetime.min.time(), zone).replace(hour=hour)
        path = f"/emrs/{world.leyr.emr}/care-units/{cu}/appointments"
        body: dict[str, Any] = {
            "patient_id": patient["id"],
            "resource_id": doctor["id"],
            "healthcare_service_id": service["id"],
            "start": start.isoformat(),
        }
        auth = {
            "x-leyr-client-id": world.leyr.client_id,
            "x-leyr-client-secret": world.leyr.client_secret,
        }
        transport = world.leyr.transport()
    else:
        patient = next(iter(world.nyra.patients))
        doctor = next(iter(world.nyra.doctors))
        path = "/appointments"
        body = {
            "patient_id": patient["id"],
            "doctor_id": doctor["id"],
            "branch_id": doctor.get("branch_id") or patient.get("branch_id"),
            "appointment_date": day.isoformat(),
            "appointment_time": f"{hour:02d}:00:00",
            "type": "CONSULTATION",
            "booking_source": "MANUAL",
        }
        grant = world.nyra.api_keys()[0]
        auth = {
            "x-api-key": grant.key,
            "x-api-secret": grant.secret,
            "authorization": f"Bearer {grant.token}",
        }
        transport = world.nyra.transport()

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://vendor") as c:
            return await c.post(path, json=body, headers=auth)

    answer = asyncio.run(post())
    assert answer.status_code == 201, answer.text
    made = answer.json()
    if source == "leyr-w":
        return str(made[0]["id"])
    return str(made["data"]["appointment_id"])
