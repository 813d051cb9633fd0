"""Practitioners, places, services and schedules over HTTP, booking by Slot, and each Nyra
doctor's own slot length, against both sandboxes."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from worlds import JSON, World, weekday

from mappings import decode_id, encode_id

SLOT_LENGTH = "https://fhir-adapter.dev/fhir/StructureDefinition/slot-length"
HSA = "urn:oid:1.2.752.129.2.1.4.1"


def entries(bundle: dict, mode: str = "match") -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def window(days_ahead: int = 3) -> list[tuple[str, str]]:
    day = weekday(days_ahead)
    return [("start", f"ge{day.isoformat()}"), ("start", f"lt{(day + timedelta(1)).isoformat()}")]


def free_slots(http, practitioner: str, days_ahead: int = 3) -> list[dict]:
    r = http.get("/Slot", params=[("schedule.actor", practitioner), *window(days_ahead)])
    assert r.status_code == 200, r.text
    return entries(r.json())


def minutes(resource: dict) -> int:
    start = datetime.fromisoformat(resource["start"])
    return int((datetime.fromisoformat(resource["end"]) - start).total_seconds() // 60)


def a_patient(http, source: str) -> str:
    bundle = http.get("/Patient", params={"_source": source, "_count": "1"}).json()
    return entries(bundle)[0]["id"]


# -- the directory ----------------------------------------------------------------------


def test_leyr_practitioners_devices_places_and_services(world: World, served):
    bundle = served.get("/Practitioner", params={"_source": "leyr-w", "_count": "100"}).json()
    doctors = [r for r in world.leyr.resources if r.get("type") == "practitioner"]
    found = {p["id"]: p for p in entries(bundle)}
    assert len(found) == len(doctors)
    for doctor in doctors:
        practitioner = found[encode_id("leyr-w", doctor["id"], doctor["care_unit_id"])]
        assert practitioner["name"][0]["text"] == doctor["name"]
        assert {"system": HSA, "value": doctor["hsa_id"]} in practitioner["identifier"]
    # search by HSA-id and by name, read by id
    doctor = doctors[0]
    by_hsa = served.get("/Practitioner", params={"identifier": f"{HSA}|{doctor['hsa_id']}"})
    assert [p["name"][0]["text"] for p in entries(by_hsa.json())] == [doctor["name"]]
    family = doctor["name"].split()[-1]
    assert doctor["name"] in {
        p["name"][0]["text"] for p in entries(served.get("/Practitioner?name=" + family).json())
    }
    # equipment is a Device, never a Practitioner
    rooms = [r for r in world.leyr.resources if r.get("type") == "equipment"]
    devices = entries(served.get("/Device", params={"_source": "leyr-w"}).json())
    assert sorted(d["deviceName"][0]["name"] for d in devices) == sorted(r["name"] for r in rooms)
    # care units are Locations and Organizations, with their names
    for kind in ("Location", "Organization"):
        names = {r.get("name") for r in entries(served.get(f"/{kind}?_source=leyr-w").json())}
        assert names == {u["name"] for u in world.leyr.care_units.values()}
    services = entries(served.get("/HealthcareService", params={"name": "Vaccination"}).json())
    assert services and all(s["name"] == "Vaccination" for s in services)
    assert all(s["type"][0]["coding"][0]["display"] == "Vaccination" for s in services)


def test_devices_of_a_patient_are_none(world: World, served):
    """Every Device the vendors keep is equipment: ``Device?patient=X`` (a standard R4
    parameter whose element no source fills) matches nothing, and says so, instead of
    ignoring the parameter and answering every Device."""
    rooms = [r for r in world.leyr.resources if r.get("type") == "equipment"]
    assert rooms  # there are Devices to be wrongly given
    patient = a_patient(served, "leyr-w")
    for params in ({"patient": patient}, {"patient": f"Patient/{patient}", "_count": "5"}):
        r = served.get("/Device", params=params)
        assert r.status_code == 200, r.text
        bundle = r.json()
        assert bundle["total"] == 0
        assert entries(bundle) == []
        [outcome] = entries(bundle, "outcome")
        assert outcome["issue"] == [
            {
                "severity": "information",
                "code": "not-found",
                "diagnostics": "search parameter patient: no source fills Device.patient, "
                "so no Device matches",
                "expression": ["patient"],
            }
        ]
    r = served.get("/Device", params={"patient": patient, "_summary": "count"})
    assert r.json()["total"] == 0
    strict = served.get(
        "/Device", params={"patient": patient}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 200
    assert strict.json()["total"] == 0


def test_leyr_appointments_name_who_where_and_what(world: World, served):
    bundle = served.get("/Appointment", params={"_source": "leyr-w", "_count": "20"}).json()
    names = {r["name"] for r in world.leyr.resources} | {
        u["name"] for u in world.leyr.care_units.values()
    }
    services = {s["name"] for s in world.leyr.services}
    for appointment in entries(bundle):
        for member in appointment["participant"]:
            actor = member["actor"]
            if not actor["reference"].startswith("Patient/"):
                assert actor["display"] in names
        assert appointment["serviceType"][0]["coding"][0]["display"] in services


def test_nyra_doctors_branches_and_hospital(world: World, served):
    doctors = {
        p["id"]: p
        for p in entries(served.get("/Practitioner", params={"_source": "nyra-w"}).json())
    }
    named = {a["doctor_id"]: a["doctor_name"] for a in world.nyra.appointments}
    assert set(doctors) == {encode_id("nyra-w", d) for d in named}
    for doctor_id, name in named.items():
        assert doctors[encode_id("nyra-w", doctor_id)]["name"][0]["text"] == name
    locations = entries(served.get("/Location", params={"_source": "nyra-w"}).json())
    branches = {a["branch_id"] for a in world.nyra.appointments}
    assert {decode_id(loc["id"]).vendor_id for loc in locations} == branches
    assert all("name" not in loc for loc in locations)  # Nyra names no branch
    organizations = entries(served.get("/Organization", params={"_source": "nyra-w"}).json())
    hospital = [o for o in organizations if "partOf" not in o]
    assert len(hospital) == 1
    branch_orgs = [o for o in organizations if "partOf" in o]
    assert {o["partOf"]["reference"] for o in branch_orgs} == {f"Organization/{hospital[0]['id']}"}
    assert served.get(f"/Location/{encode_id('nyra-w', 'no-such-branch')}").status_code == 404


def test_schedules_by_actor(world: World, served):
    for source, doctor in (
        ("leyr-w", encode_id("leyr-w", "doctor-1", "L0_1")),
        ("nyra-w", encode_id("nyra-w", world.nyra.data.doctors[1]["id"])),
    ):
        bundle = served.get("/Schedule", params={"actor": f"Practitioner/{doctor}"}).json()
        (schedule,) = entries(bundle)
        assert schedule["id"] == doctor and schedule["meta"]["source"] == source
        assert schedule["actor"][0]["reference"] == f"Practitioner/{doctor}"
        assert served.get(f"/Schedule/{doctor}").json() == schedule  # meta as a search gives
    nyra = served.get(f"/Schedule/{encode_id('nyra-w', world.nyra.data.doctors[2]['id'])}").json()
    (length,) = [e for e in nyra["extension"] if e["url"] == SLOT_LENGTH]
    assert length["valueDuration"]["value"] == 30


# -- Nyra: each doctor's slot length ----------------------------------------------------


@pytest.mark.parametrize("index,length", [(1, 20), (2, 30)])
def test_a_nyra_slot_of_any_length_can_be_booked(world: World, served, index, length):
    doctor = world.nyra.data.doctors[index]
    assert doctor["slot_duration_minutes"] == length
    practitioner = f"Practitioner/{encode_id('nyra-w', doctor['id'])}"
    slots = free_slots(served, practitioner)
    assert slots and all(minutes(s) == length for s in slots)
    patient = a_patient(served, "nyra-w")
    slot = slots[3]
    # Booked the plain way, with start and end as the Slot offered them.
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": slot["start"],
        "end": slot["end"],
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
            {"actor": {"reference": practitioner}, "status": "accepted"},
        ],
    }
    r = served.post("/Appointment", json=body, headers=JSON)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["minutesDuration"] == length and made["end"] == slot["end"]
    # Existing appointments of that doctor end a slot after they start.
    bundle = served.get("/Appointment", params={"practitioner": practitioner}).json()
    assert entries(bundle) and all(minutes(a) == length for a in entries(bundle))


# -- booking by Slot --------------------------------------------------------------------


@pytest.mark.parametrize("source", ["leyr-w", "nyra-w"])
def test_booking_by_slot(world: World, served, source):
    patient = a_patient(served, source)
    if source == "leyr-w":
        doctor = next(
            r for r in world.leyr.resources if r["care_unit_id"] == decode_id(patient).scope
        )
        practitioner = f"Practitioner/{encode_id(source, doctor['id'], doctor['care_unit_id'])}"
    else:
        practitioner = f"Practitioner/{encode_id(source, world.nyra.data.doctors[2]['id'])}"
    slot = free_slots(served, practitioner)[2]
    assert served.get(f"/Slot/{slot['id']}").json() == slot  # meta as a search gives
    by_id = served.get("/Slot", params={"_id": f"{slot['id']},{source}.nothing-20300101T0900"})
    assert entries(by_id.json()) == [slot]
    doctor = served.get("/Practitioner", params={"_id": f"{practitioner.split('/')[1]},x.y"})
    assert [p["id"] for p in entries(doctor.json())] == [practitioner.split("/")[1]]
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}],
    }
    # A value that contradicts the Slot is named, and nothing is booked.
    wrong = {
        **body,
        "start": (datetime.fromisoformat(slot["start"]) + timedelta(hours=1)).isoformat(),
    }
    r = served.post("/Appointment", json=wrong, headers=JSON)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == ["Appointment.start"]
    r = served.post("/Appointment", json=body, headers=JSON)
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["start"], made["end"]) == (slot["start"], slot["end"])
    assert practitioner in {m["actor"]["reference"] for m in made["participant"]}
    if "serviceType" in slot:
        assert (
            made["serviceType"][0]["coding"][0]["code"]
            == slot["serviceType"][0]["coding"][0]["code"]
        )
    # The Slot is taken now: no longer offered, not readable. The same booking sent again
    # is answered with the Appointment that holds the Slot (its own); another patient's
    # booking of it is a 409.
    assert slot["id"] not in {s["id"] for s in free_slots(served, practitioner)}
    assert served.get(f"/Slot/{slot['id']}").status_code == 404
    again = served.post("/Appointment", json=body, headers=JSON)
    assert (again.status_code, again.json()["id"]) == (200, made["id"]), again.text
    others = served.get("/Patient", params={"_source": source, "_count": "20"}).json()
    someone = next(  # another patient of the same care unit (hospital)
        e["resource"]["id"]
        for e in others["entry"]
        if e["search"]["mode"] == "match"
        and e["resource"]["id"] != patient
        and decode_id(e["resource"]["id"]).scope == decode_id(patient).scope
    )
    theirs = {
        **body,
        "participant": [{"actor": {"reference": f"Patient/{someone}"}, "status": "accepted"}],
    }
    clash = served.post("/Appointment", json=theirs, headers=JSON)
    assert clash.status_code == 409, clash.text
    assert clash.json()["issue"][0]["expression"] == ["Appointment.slot"]
    assert clash.json()["issue"][0]["code"] == "conflict"


def test_a_slot_of_another_practitioner_is_refused(world: World, served):
    patient = a_patient(served, "nyra-w")
    doctors = [f"Practitioner/{encode_id('nyra-w', d['id'])}" for d in world.nyra.data.doctors[:2]]
    slot = free_slots(served, doctors[0])[0]
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
            {"actor": {"reference": doctors[1]}, "status": "accepted"},
        ],
    }
    r = served.post("/Appointment", json=body, headers=JSON)
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["Appointment.participant"]


def test_a_search_naming_one_sources_ids_asks_only_that_source(world: World, served):
    doctor = f"Practitioner/{encode_id('nyra-w', world.nyra.data.doctors[0]['id'])}"
    r = served.get("/Slot", params=[("schedule.actor", doctor), *window(), ("_count", "1")])
    (slot,) = entries(r.json())  # the first page is the Nyra doctor's, not Leyr's empty turn
    assert slot["meta"]["source"] == "nyra-w"
    assert not [e for e in r.json()["entry"] if e["search"]["mode"] == "outcome"]
    patient = a_patient(served, "leyr-w")
    bundle = served.get("/Appointment", params={"patient": f"Patient/{patient}"}).json()
    assert {a["meta"]["source"] for a in entries(bundle)} <= {"leyr-w"}
