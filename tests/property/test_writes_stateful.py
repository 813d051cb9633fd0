"""A rule-based state machine writes through the facade (create patient, book, move,
cancel) and searches; its invariant: the facade's view always equals a simple model of
what was written. One machine per vendor, each against its own empty sandbox."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from harness import FAST
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from adapter.app import create_app
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings
from mappings import decode_id, encode_id

JSON = {"content-type": "application/fhir+json"}
GIVEN = ["Anna", "Erik", "Priya", "Ravi", "Åsa", "José"]
FAMILY = ["Berg", "Kumar", "Nilsson", "Rao", "Öberg"]
DAYS = [3, 4, 5]
HOURS = [9, 10, 11]


def _weekday(offset: int) -> date:
    day = date.today() + timedelta(days=offset)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


class WritesMachine(RuleBasedStateMachine):
    vendor = ""
    zone = ZoneInfo("UTC")
    patients = Bundle("patients")
    booked = Bundle("booked")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.sandbox = self.make_sandbox()
        source = {"connector": self.vendor, **self.sandbox.defaults()}
        app = create_app(
            Settings(open_access=True, sources={"src": source}, cursor_key=b"m" * 32),
            transports={"src": self.sandbox.transport()},
        )
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m")
        self.model_patients: dict[str, str] = {}  # id -> family name
        self.model_appointments: dict[str, dict] = {}  # id -> {patient, start, status}

    def teardown(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()

    def call(self, method: str, url: str, **kw) -> httpx.Response:
        return self.loop.run_until_complete(self.http.request(method, url, **kw))

    # -- vendor specifics -----------------------------------------------------------------

    def make_sandbox(self): ...

    def patient_body(self, given: str, family: str, unit: int) -> dict: ...

    def practitioner(self, patient_id: str) -> str: ...

    def booking_extra(self, patient_id: str) -> dict:
        return {}

    can_move = True

    # -- rules ----------------------------------------------------------------------------

    @rule(
        target=patients,
        given=st.sampled_from(GIVEN),
        family=st.sampled_from(FAMILY),
        unit=st.integers(0, 1),
    )
    def create_patient(self, given, family, unit):
        r = self.call(
            "POST", "/fhir/Patient", json=self.patient_body(given, family, unit), headers=JSON
        )
        assert r.status_code == 201, r.json()
        made = r.json()
        self.model_patients[made["id"]] = family
        return made["id"]

    def _start(self, day: int, hour: int) -> datetime:
        return datetime.combine(_weekday(day), datetime.min.time(), self.zone).replace(hour=hour)

    def _taken(self, patient_id: str, start: datetime) -> bool:
        doctor = self.practitioner(patient_id)
        return any(
            a["status"] in ("booked", "pending") and a["start"] == start and a["doctor"] == doctor
            for a in self.model_appointments.values()
        )

    @rule(target=booked, patient=patients, day=st.sampled_from(DAYS), hour=st.sampled_from(HOURS))
    def book(self, patient, day, hour):
        start = self._start(day, hour)
        body = {
            "resourceType": "Appointment",
            "status": "booked",
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=15)).isoformat(),
            "participant": [
                {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
                {"actor": {"reference": self.practitioner(patient)}, "status": "accepted"},
            ],
            **self.booking_extra(patient),
        }
        taken = self._taken(patient, start)
        r = self.call("POST", "/fhir/Appointment", json=body, headers=JSON)
        if taken:
            assert r.status_code == 409, r.json()
            return "none"
        assert r.status_code == 201, r.json()
        made = r.json()
        self.model_appointments[made["id"]] = {
            "patient": patient,
            "start": start,
            "status": "booked",
            "doctor": self.practitioner(patient),
        }
        return made["id"]

    @rule(appointment=booked, day=st.sampled_from(DAYS), hour=st.sampled_from(HOURS))
    def move(self, appointment, day, hour):
        model = self.model_appointments.get(appointment)
        if model is None or model["status"] != "booked":
            return
        current = self.call("GET", f"/fhir/Appointment/{appointment}").json()
        start = self._start(day, hour)
        wanted = {
            **current,
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=15)).isoformat(),
        }
        if wanted["start"] == current["start"]:
            return
        taken = self._taken(model["patient"], start)
        r = self.call("PUT", f"/fhir/Appointment/{appointment}", json=wanted, headers=JSON)
        if not self.can_move:
            assert r.status_code == 422
            assert r.json()["issue"][0]["expression"][0] in ("Appointment.start", "Appointment.end")
        elif taken:
            assert r.status_code == 409, r.json()
        else:
            assert r.status_code == 200, r.json()
            model["start"] = start

    @rule(appointment=consumes(booked))
    def cancel(self, appointment):
        model = self.model_appointments.get(appointment)
        if model is None or model["status"] != "booked":
            return
        current = self.call("GET", f"/fhir/Appointment/{appointment}").json()
        r = self.call(
            "PUT",
            f"/fhir/Appointment/{appointment}",
            json={**current, "status": "cancelled"},
            headers=JSON,
        )
        assert r.status_code == 200, r.json()
        after = r.json()
        if after["id"] != appointment:  # Leyr: awaiting the patient's confirmation
            assert after["status"] == "pending"
            del self.model_appointments[appointment]
            self.model_appointments[after["id"]] = {**model, "status": "pending"}
        else:
            assert after["status"] == "cancelled"
            model["status"] = "cancelled"

    @invariant()
    def facade_equals_model(self):
        for patient, family in self.model_patients.items():
            read = self.call("GET", f"/fhir/Patient/{patient}").json()
            assert read["name"][0]["family"] == family
            bundle = self.call(
                "GET",
                "/fhir/Appointment",
                params={"patient": f"Patient/{patient}", "_count": "100"},
            ).json()
            seen = {
                e["resource"]["id"]: (
                    e["resource"]["status"],
                    datetime.fromisoformat(e["resource"]["start"]),
                )
                for e in bundle.get("entry", [])
            }
            expected = {
                i: (a["status"], a["start"])
                for i, a in self.model_appointments.items()
                if a["patient"] == patient
            }
            assert seen == expected
        everyone = self.call("GET", "/fhir/Patient", params={"_summary": "count"}).json()
        assert everyone["total"] == len(self.model_patients)


class LeyrWrites(WritesMachine):
    vendor = "leyr"
    zone = ZoneInfo("Europe/Stockholm")

    def make_sandbox(self):
        return LeyrSandbox(seed=1, patients=0)

    def patient_body(self, given, family, unit):
        cu = ("L0_1", "L0_2")[unit]
        return {
            "resourceType": "Patient",
            "name": [{"given": [given], "family": family}],
            "managingOrganization": {"reference": f"Organization/{encode_id('src', cu)}"},
        }

    def practitioner(self, patient_id):
        cu = decode_id(patient_id).scope
        doctor = next(r["id"] for r in self.sandbox.resources if r["care_unit_id"] == cu)
        return f"Practitioner/{encode_id('src', doctor, cu)}"

    def booking_extra(self, patient_id):
        cu = decode_id(patient_id).scope
        service = next(
            s
            for s in self.sandbox.services
            if s["care_unit_id"] == cu and s["duration_minutes"] == 15
        )
        system = "https://fhir-adapter.dev/fhir/CodeSystem/src/healthcare-service"
        return {"serviceType": [{"coding": [{"system": system, "code": service["id"]}]}]}


class NyraWrites(WritesMachine):
    vendor = "nyra"
    zone = ZoneInfo("Asia/Kolkata")
    can_move = False

    def make_sandbox(self):
        sandbox = NyraSandbox(seed=1, patients=0, limits=FAST)
        return sandbox

    def patient_body(self, given, family, unit):
        return {
            "resourceType": "Patient",
            "name": [{"given": [given], "family": family}],
            "telecom": [{"system": "phone", "value": f"+9198{unit}0000000"}],
        }

    def practitioner(self, patient_id):
        return f"Practitioner/{encode_id('src', next(iter(self.sandbox.doctors))['id'])}"


MACHINE_SETTINGS = settings(max_examples=50, stateful_step_count=30, deadline=None)
TestLeyrWrites = MACHINE_SETTINGS(LeyrWrites).TestCase
TestNyraWrites = MACHINE_SETTINGS(NyraWrites).TestCase
