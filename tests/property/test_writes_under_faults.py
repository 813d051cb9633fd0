"""A state machine of keyed writes under vendor faults: whatever sequence of creates and
bookings, each sent with an ``Idempotency-Key`` and with the vendor's answer lost after it
committed (a 500, a 502, a body cut short, a dropped connection) or with the look-up that
follows failing too, and of retries with the same key, the vendor holds at most one
record per key at every step; once every key is retried to a final answer, exactly one,
and each key's last answer is a 2xx holding that record's id."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from harness import FAST
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from adapter.app import create_app
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings
from mappings import decode_id, encode_id

JSON = {"content-type": "application/fhir+json"}
KEYS = range(4)
FAULTS = ["", "500", "502", "malformed", "drop"]


def _weekday(offset: int) -> date:
    day = date.today() + timedelta(days=offset)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


class KeyedWrites(RuleBasedStateMachine):
    vendor = ""
    zone = ZoneInfo("UTC")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.sandbox = self.make_sandbox()
        source = {"connector": self.vendor, **self.sandbox.defaults(), "retry": {"attempts": 1}}
        self.app = create_app(
            Settings(open_access=True, sources={"src": source}, cursor_key=b"k" * 32),
            transports={"src": self.sandbox.transport()},
        )
        self.connector = self.app.state.facade.connectors["src"]
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://k/fhir"
        )
        self.patient = self.first_patient()
        self.last: dict[str, httpx.Response] = {}  # key -> its last answer
        self.lookups_fail = 0  # the next look-ups that fail

        for name in ("_find_patient", "_find_booking"):
            real = getattr(self.connector, name)

            async def looking(*args: Any, _real: Any = real) -> Any:
                if self.lookups_fail:
                    self.lookups_fail -= 1
                    raise RuntimeError("the vendor's listing fails too")
                return await _real(*args)

            setattr(self.connector, name, looking)

    def make_sandbox(self) -> Any: ...

    def patient_body(self, key: int) -> dict[str, Any]: ...

    def booking_body(self, key: int) -> dict[str, Any]: ...

    def patients_of(self, key: int) -> list[dict[str, Any]]: ...

    def bookings_of(self, key: int) -> list[dict[str, Any]]: ...

    def first_patient(self) -> str:
        page = self.call("GET", "/Patient", params={"_count": "1"}).json()
        return str(page["entry"][0]["resource"]["id"])

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.http.request(method, path, **kw))

    def teardown(self) -> None:
        try:
            self.sandbox.faults.after_commit = ""
            self.lookups_fail = 0
            for key in list(self.last):  # every key retried to its final answer
                kind, number = key.split("-")
                for _ in range(3):
                    if self.last[key].status_code < 500:
                        break
                    self.send(kind, int(number), "", 0)
                answer = self.last[key]
                assert answer.status_code == 201, (key, answer.text)  # made once, by now
                made = self.made(kind, int(number))
                assert len(made) == 1, (key, made)
                assert decode_id(answer.json()["id"]).vendor_id == str(made[0]["id"])
        finally:
            self.loop.run_until_complete(self.http.aclose())
            self.loop.close()

    def made(self, kind: str, key: int) -> list[dict[str, Any]]:
        return self.patients_of(key) if kind == "patient" else self.bookings_of(key)

    def send(self, kind: str, key: int, fault: str, lookups_fail: int) -> None:
        self.sandbox.faults.after_commit = fault
        self.lookups_fail = lookups_fail
        body = self.patient_body(key) if kind == "patient" else self.booking_body(key)
        path = "/Patient" if kind == "patient" else "/Appointment"
        headers = {**JSON, "idempotency-key": f"{self.vendor}-{kind}-{key}"}
        answer = self.call("POST", path, json=body, headers=headers)
        self.sandbox.faults.after_commit = ""
        self.lookups_fail = 0
        assert answer.status_code in (200, 201, 503, 504), answer.text
        self.last[f"{kind}-{key}"] = answer

    @rule(
        key=st.sampled_from(KEYS),
        fault=st.sampled_from(FAULTS),
        lookups_fail=st.sampled_from([0, 0, 1, 2]),
    )
    def create_patient(self, key: int, fault: str, lookups_fail: int) -> None:
        self.send("patient", key, fault, lookups_fail)

    @rule(
        key=st.sampled_from(KEYS),
        fault=st.sampled_from(FAULTS),
        lookups_fail=st.sampled_from([0, 0, 1, 2]),
    )
    def book(self, key: int, fault: str, lookups_fail: int) -> None:
        self.send("booking", key, fault, lookups_fail)

    @invariant()
    def at_most_one_record_per_key(self) -> None:
        for name, answer in self.last.items():
            kind, number = name.split("-")
            made = self.made(kind, int(number))
            assert len(made) <= 1, (name, made)
            if answer.status_code in (200, 201):  # what the client was told is what is held
                assert len(made) == 1
                assert decode_id(answer.json()["id"]).vendor_id == str(made[0]["id"])


class LeyrKeyedWrites(KeyedWrites):
    vendor = "leyr"
    zone = ZoneInfo("Europe/Stockholm")

    def make_sandbox(self) -> Any:
        return LeyrSandbox(seed=11, patients=2)

    def patient_body(self, key: int) -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "meta": {"source": "src"},
            "name": [{"family": f"Keyed{key}", "given": ["Kim"]}],
            "gender": "female",
            "birthDate": "1980-01-0" + str(key + 1),
        }

    def booking_body(self, key: int) -> dict[str, Any]:
        cu = decode_id(self.patient).scope
        doctor = next(r["id"] for r in self.sandbox.resources if r["care_unit_id"] == cu)
        service = next(
            s
            for s in self.sandbox.services
            if s["care_unit_id"] == cu and s["duration_minutes"] == 15
        )
        start = datetime.combine(_weekday(3), datetime.min.time(), self.zone).replace(hour=9 + key)
        system = "https://fhir-adapter.dev/fhir/CodeSystem/src/healthcare-service"
        return {
            "resourceType": "Appointment",
            "status": "booked",
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=15)).isoformat(),
            "serviceType": [{"coding": [{"system": system, "code": service["id"]}]}],
            "participant": [
                {"actor": {"reference": f"Patient/{self.patient}"}, "status": "accepted"},
                {
                    "actor": {"reference": f"Practitioner/{encode_id('src', doctor, cu)}"},
                    "status": "accepted",
                },
            ],
        }

    def patients_of(self, key: int) -> list[dict[str, Any]]:
        return [
            p
            for unit in self.sandbox.patients.values()
            for p in unit
            if p["last_name"] == f"Keyed{key}"
        ]

    def bookings_of(self, key: int) -> list[dict[str, Any]]:
        start = datetime.combine(_weekday(3), datetime.min.time(), self.zone).replace(hour=9 + key)
        return [
            a
            for unit in self.sandbox.appointments.values()
            for a in unit
            if a["status"] == "booked" and datetime.fromisoformat(a["start"]) == start
        ]


class NyraKeyedWrites(KeyedWrites):
    vendor = "nyra"
    zone = ZoneInfo("Asia/Kolkata")

    def make_sandbox(self) -> Any:
        return NyraSandbox(seed=11, patients=2, limits=FAST)

    def patient_body(self, key: int) -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "meta": {"source": "src"},
            "name": [{"family": f"Keyed{key}", "given": ["Kim"]}],
            "telecom": [{"system": "phone", "value": f"+9198123456{70 + key}"}],
            "gender": "female",
            "birthDate": "1980-01-0" + str(key + 1),
        }

    def booking_body(self, key: int) -> dict[str, Any]:
        doctor = next(iter(self.sandbox.doctors))["id"]
        start = datetime.combine(_weekday(3), datetime.min.time(), self.zone).replace(hour=10 + key)
        return {
            "resourceType": "Appointment",
            "status": "booked",
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=15)).isoformat(),
            "participant": [
                {"actor": {"reference": f"Patient/{self.patient}"}, "status": "accepted"},
                {
                    "actor": {"reference": f"Practitioner/{encode_id('src', doctor)}"},
                    "status": "accepted",
                },
            ],
        }

    def patients_of(self, key: int) -> list[dict[str, Any]]:
        return [p for p in self.sandbox.patients if p["name"] == f"Kim Keyed{key}"]

    def bookings_of(self, key: int) -> list[dict[str, Any]]:
        time = f"{10 + key:02d}:00"
        return [
            a
            for a in self.sandbox.appointments
            if a["status"] == "BOOKED"
            and a["appointment_time"][11:16] == time
            and a["appointment_time"][:10] == _weekday(3).isoformat()
        ]


SETTINGS = settings(max_examples=25, stateful_step_count=12, deadline=None)
TestLeyrKeyedWrites = LeyrKeyedWrites.TestCase
TestLeyrKeyedWrites.settings = SETTINGS
TestNyraKeyedWrites = NyraKeyedWrites.TestCase
TestNyraKeyedWrites.settings = SETTINGS
