"""Writes exactly once under every vendor fault, over HTTP against both sandboxes.

The vendor carries a write out and then its answer is lost: a 500 or a 502 in its place,
a success cut short, or the connection dropped (the sandboxes' ``after_commit`` fault).
For Patient create, conditional create, booking by Slot and by body, move and cancel, a
client that sends with an ``Idempotency-Key`` and retries with the same key as told ends
with exactly one record at the vendor and a final 2xx holding its id. Where the look-up
after a lost answer cannot be made either, the client is told to search first (504) and
its retry with the same key looks before it sends anything.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fhir_check import check_response
from worlds import World, booking, leyr_patient, nyra_patient, weekday

from mappings import decode_id

JSON = {"content-type": "application/fhir+json"}
FAULTS = ["500", "502", "malformed", "drop"]
SOURCES = ["leyr-w", "nyra-w"]


class Client:
    """A FHIR client of the facade, in process, that sends writes with a key."""

    def __init__(self, world: World) -> None:
        self.world = world

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.world.app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://f/fhir",
                event_hooks={"response": [_acheck]},
            ) as c:
                return await c.request(method, path, **kwargs)

        return asyncio.run(go())

    def write(self, method: str, path: str, body: dict, key: str, **headers: str) -> httpx.Response:
        return self.call(
            method, path, json=body, headers={**JSON, "idempotency-key": key, **headers}
        )


async def _acheck(response: httpx.Response) -> None:
    await response.aread()
    check_response(response)


def faulty(world: World, source: str, fault: str) -> None:
    box = world.leyr if source.startswith("leyr") else world.nyra
    box.faults.after_commit = fault


def healed(world: World) -> None:
    world.leyr.faults.after_commit = ""
    world.nyra.faults.after_commit = ""


def patients_named(world: World, source: str, family: str) -> list[dict]:
    if source.startswith("leyr"):
        return [
            p for unit in world.leyr.patients.values() for p in unit if p["last_name"] == family
        ]
    return [p for p in world.nyra.patients if family in p["name"]]


def appointments_of(world: World, source: str, patient_id: str) -> list[dict]:
    vendor_id = decode_id(patient_id).vendor_id
    if source.startswith("leyr"):
        return [
            a
            for unit in world.leyr.appointments.values()
            for a in unit
            if a["patient_id"] == vendor_id and a["status"] == "booked"
        ]
    return [
        a
        for a in world.nyra.appointments
        if a["patient_id"] == vendor_id and a["status"] == "BOOKED"
    ]


def new_patient(source: str, family: str) -> dict:
    body = leyr_patient() if source.startswith("leyr") else nyra_patient()
    body["name"] = [{"family": family, "given": ["Once"]}]
    if source.startswith("leyr"):
        body.pop("identifier")  # no identity: found again by its fields
    return body


def a_patient(client: Client, source: str) -> str:
    page = client.call("GET", "/Patient", params={"_source": source, "_count": "1"}).json()
    return page["entry"][0]["resource"]["id"]


@pytest.fixture
def world():
    return World()


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("source", SOURCES)
def test_a_patient_create_whose_answer_is_lost_is_made_once(world, source, fault):
    client = Client(world)
    family = f"Once{fault}"
    key = uuid.uuid4().hex
    faulty(world, source, fault)
    first = client.write("POST", "/Patient", new_patient(source, family), key)
    healed(world)
    assert first.status_code == 201, first.text  # looked up: found, answered as made
    again = client.write("POST", "/Patient", new_patient(source, family), key)
    assert (again.status_code, again.json()["id"]) == (201, first.json()["id"])
    assert again.headers["idempotent-replayed"] == "true"
    assert len(patients_named(world, source, family)) == 1


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("source", SOURCES)
def test_a_conditional_create_whose_answer_is_lost_is_made_once(world, source, fault):
    client = Client(world)
    family = f"Cond{fault}"
    condition = {"if-none-exist": f"family={family}"}
    faulty(world, source, fault)
    first = client.write("POST", "/Patient", new_patient(source, family), "k1", **condition)
    healed(world)
    assert first.status_code == 201, first.text
    # Another key, the same condition: the record is found, not made again.
    again = client.write("POST", "/Patient", new_patient(source, family), "k2", **condition)
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    assert len(patients_named(world, source, family)) == 1


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("source", SOURCES)
def test_a_booking_by_body_whose_answer_is_lost_is_made_once(world, source, fault):
    client = Client(world)
    patient = a_patient(client, source)
    before = len(appointments_of(world, source, patient))
    body = booking(world, client, source, patient, hour=11)
    faulty(world, source, fault)
    first = client.write("POST", "/Appointment", body, "b1")
    healed(world)
    assert first.status_code == 201, first.text
    again = client.write("POST", "/Appointment", body, "b1")
    assert (again.status_code, again.json()["id"]) == (201, first.json()["id"])
    assert len(appointments_of(world, source, patient)) == before + 1


def _free_slot(client: Client, world: World, source: str, patient: str) -> dict:
    template = booking(world, client, source, patient, 9)
    doctor = template["participant"][1]["actor"]["reference"]
    day = weekday(6)
    window = [
        ("schedule.actor", doctor),
        ("start", f"ge{day.isoformat()}"),
        ("start", f"lt{(day + timedelta(days=1)).isoformat()}"),
        ("status", "free"),
    ]
    if source.startswith("leyr"):
        window.append(("service-type", template["serviceType"][0]["coding"][0]["code"]))
    found = client.call("GET", "/Slot", params=window).json()
    return next(e["resource"] for e in found["entry"] if e["search"]["mode"] == "match")


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("source", SOURCES)
def test_a_booking_by_slot_whose_answer_is_lost_is_made_once(world, source, fault):
    client = Client(world)
    patient = a_patient(client, source)
    before = len(appointments_of(world, source, patient))
    slot = _free_slot(client, world, source, patient)
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}],
    }
    faulty(world, source, fault)
    first = client.write("POST", "/Appointment", body, "s1")
    healed(world)
    assert first.status_code == 201, first.text
    # The Slot is now taken by this very booking: the same booking sent again (another
    # key: not a replay) is answered with it, not a 409.
    again = client.write("POST", "/Appointment", body, "s2")
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    assert len(appointments_of(world, source, patient)) == before + 1


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("source", SOURCES)
def test_a_cancel_whose_answer_is_lost_answers_the_cancelled_appointment(world, source, fault):
    client = Client(world)
    patient = a_patient(client, source)
    if source.startswith("leyr") and decode_id(patient).scope != "L0_1":
        pytest.fail("the first Leyr patient is in L0_1, where a cancel needs no confirmation")
    made = client.write("POST", "/Appointment", booking(world, client, source, patient, 13), "c0")
    assert made.status_code == 201, made.text
    cancel = {**made.json(), "status": "cancelled"}
    faulty(world, source, fault)
    first = client.write("PUT", f"/Appointment/{made.json()['id']}", cancel, "c1")
    healed(world)
    assert (first.status_code, first.json()["status"]) == (200, "cancelled"), first.text
    again = client.write("PUT", f"/Appointment/{made.json()['id']}", cancel, "c2")
    assert (again.status_code, again.json()["status"]) == (200, "cancelled")
    assert appointments_of(world, source, patient) == [
        a for a in appointments_of(world, source, patient) if a["id"] != made.json()["id"]
    ]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_move_whose_answer_is_lost_answers_the_moved_appointment(world, fault):
    client = Client(world)
    patient = a_patient(client, "leyr-w")
    made = client.write("POST", "/Appointment", booking(world, client, "leyr-w", patient, 10), "m0")
    assert made.status_code == 201, made.text
    booked = len(appointments_of(world, "leyr-w", patient))
    moved = dict(made.json())
    for element in ("start", "end"):
        moved[element] = (datetime.fromisoformat(moved[element]) + timedelta(hours=1)).isoformat()
    faulty(world, "leyr-w", fault)
    first = client.write("PUT", f"/Appointment/{moved['id']}", moved, "m1")
    healed(world)
    assert first.status_code == 200, first.text
    assert datetime.fromisoformat(first.json()["start"]) == datetime.fromisoformat(moved["start"])
    # Sent again, naming the version before the move: the move is made, so it is answered
    # as the moved appointment, not a 412.
    again = client.write(
        "PUT", f"/Appointment/{moved['id']}", moved, "m2", **{"if-match": made.headers["etag"]}
    )
    assert (again.status_code, again.json()["start"]) == (200, first.json()["start"])
    assert len(appointments_of(world, "leyr-w", patient)) == booked


@pytest.mark.parametrize("source", SOURCES)
def test_when_looking_fails_too_the_retry_with_the_key_looks_before_sending(
    world, source, monkeypatch
):
    """The answer is lost and the look-up fails: 504, search first. The retry with the
    same key looks first, finds the record, and sends nothing: one record, 201."""
    client = Client(world)
    family = "Looked"
    connector = world.app.state.facade.connectors[source]
    real = connector._find_patient
    calls = {"n": 0}

    async def failing_once(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the vendor's listing is down too")
        return await real(*args)

    monkeypatch.setattr(connector, "_find_patient", failing_once)
    faulty(world, source, "500")
    first = client.write("POST", "/Patient", new_patient(source, family), "L")
    healed(world)
    assert first.status_code == 504
    assert "search for it before sending the write again" in first.json()["issue"][0]["diagnostics"]
    again = client.write("POST", "/Patient", new_patient(source, family), "L")
    assert again.status_code == 201, again.text
    assert calls["n"] == 2  # looked first
    assert len(patients_named(world, source, family)) == 1


@pytest.mark.parametrize("source", SOURCES)
def test_lost_answers_to_writes_do_not_open_the_circuit(world, source):
    """A vendor that answers 5xx after it made each write is not a vendor that fails:
    the look-ups that follow find every record, and the source stays up."""
    client = Client(world)
    faulty(world, source, "502")
    for i in range(8):  # more than the circuit's failures in a row (5)
        r = client.write("POST", "/Patient", new_patient(source, f"Circuit{i}"), f"c{i}")
        assert r.status_code == 201, r.text
    healed(world)
    assert world.app.state.facade.readiness()[source] == "up"
    assert all(len(patients_named(world, source, f"Circuit{i}")) == 1 for i in range(8))
