"""``_typeFilter`` over HTTP against both sandboxes: what each filter keeps is counted in
the sandboxes' own records, never in the facade's answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from bulk import ASYNC, LEYR, NYRA, Deployment, Served, download, finish, kick_off

from mappings import encode_id


@pytest.fixture
def deployment(tmp_path):
    return Deployment(tmp_path)


@pytest.fixture
def served(deployment):
    serving = Served(deployment.app())
    yield serving
    serving.stop()


def leyr_patients(deployment: Deployment) -> list[dict[str, Any]]:
    """Leyr's patients, each with its care unit (a Leyr id is unique within one)."""
    return [{**p, "cu": cu} for cu, table in deployment.leyr.patients.items() for p in table]


def nyra_patients(deployment: Deployment) -> list[dict[str, Any]]:
    return list(deployment.nyra.patients)


def ids(leyr: list[dict[str, Any]], nyra: list[dict[str, Any]]) -> set:
    return {encode_id(LEYR, p["id"], p["cu"]) for p in leyr} | {
        encode_id(NYRA, p["id"]) for p in nyra
    }


def exported(served: Served, auth: dict[str, str], **params: str) -> dict[str, set[str]]:
    manifest = finish(served, auth, kick_off(served, auth, **params))
    assert manifest["error"] == []
    return {t: {r["id"] for r in rs} for t, rs in download(served, auth, manifest).items()}


def test_a_filter_keeps_exactly_its_matches_at_both_vendors(deployment, served):
    auth = deployment.token(served.app, "full")
    got = exported(served, auth, _type="Patient", _typeFilter="Patient?gender=female")
    leyr = [p for p in leyr_patients(deployment) if p["gender"] == "female"]
    nyra = [p for p in nyra_patients(deployment) if p["gender"] == "FEMALE"]
    assert leyr and nyra
    assert got == {"Patient": ids(leyr, nyra)}


def test_parameters_of_one_filter_are_anded_and_filters_of_a_type_ored(deployment, served):
    auth = deployment.token(served.app, "full")
    both = "Patient?gender=female&birthdate=lt1980-01-01"
    got = exported(served, auth, _type="Patient", _typeFilter=both)
    leyr = [
        p
        for p in leyr_patients(deployment)
        if p["gender"] == "female" and p["birth_date"] < "1980-01-01"
    ]
    nyra = [
        p
        for p in nyra_patients(deployment)
        if p["gender"] == "FEMALE" and p["date_of_birth"] < "1980-01-01"
    ]
    assert got.get("Patient", set()) == ids(leyr, nyra)

    # Repeated, and comma-joined: the same two filters, ORed.
    male_or_old = ("Patient?gender=male", "Patient?birthdate=lt1980-01-01")
    leyr = [
        p
        for p in leyr_patients(deployment)
        if p["gender"] == "male" or p["birth_date"] < "1980-01-01"
    ]
    nyra = [
        p
        for p in nyra_patients(deployment)
        if p["gender"] == "MALE" or p["date_of_birth"] < "1980-01-01"
    ]
    expected = {"Patient": ids(leyr, nyra)}
    assert len(expected["Patient"]) < len(leyr_patients(deployment)) + len(
        nyra_patients(deployment)
    )
    r = served.http.get(
        "/$export",
        params=[("_type", "Patient"), *(("_typeFilter", f) for f in male_or_old)],
        headers={**ASYNC, **auth},
    )
    assert r.status_code == 202, r.text
    manifest = finish(served, auth, r.headers["content-location"])
    assert {t: {x["id"] for x in rs} for t, rs in download(served, auth, manifest).items()} == (
        expected
    )
    assert exported(served, auth, _type="Patient", _typeFilter=",".join(male_or_old)) == expected


def test_a_filter_by_source_and_one_type_left_whole(deployment, served):
    auth = deployment.token(served.app, "full")
    got = exported(served, auth, _type="Patient,Appointment", _typeFilter=f"Patient?_source={NYRA}")
    assert got["Patient"] == ids([], nyra_patients(deployment))
    leyr_appointments = {
        encode_id(LEYR, a["id"], cu) for cu, t in deployment.leyr.appointments.items() for a in t
    }
    nyra_appointments = {encode_id(NYRA, a["id"]) for a in deployment.nyra.appointments}
    assert got["Appointment"] == leyr_appointments | nyra_appointments


def test_a_filter_that_cannot_be_applied_is_a_400_naming_it(deployment, served):
    auth = deployment.token(served.app, "full")
    lenient = {**ASYNC, "Prefer": "respond-async, handling=lenient"}
    cases = {
        "Appointment?status=booked": "Appointment is not among the types exported",
        "Patient?colour=blue": "search parameter colour is not supported",
        "Patient?_sort=birthdate": "_sort selects no records",
        "Patient": "must be a search on one type",
        "Patient?_source=elsewhere": "_source names no source: elsewhere",
    }
    for text, said in cases.items():
        for headers in (ASYNC, lenient):  # never accepted and ignored
            r = served.http.get(
                "/$export",
                params={"_type": "Patient", "_typeFilter": text},
                headers={**headers, **auth},
            )
            assert r.status_code == 400, text
            outcome = r.json()
            assert outcome["resourceType"] == "OperationOutcome"
            [issue] = outcome["issue"]
            assert issue["expression"] == ["_typeFilter"]
            assert issue["diagnostics"].startswith(f"_typeFilter {text!r}: "), issue
            assert said in issue["diagnostics"], issue


def test_a_post_kick_off_takes_filters_in_its_parameters(deployment, served):
    auth = deployment.token(served.app, "full")
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Patient"},
            {"name": "_typeFilter", "valueString": "Patient?gender=male"},
        ],
    }
    r = served.http.post(
        "/$export",
        content=orjson.dumps(body),
        headers={**ASYNC, **auth, "content-type": "application/fhir+json"},
    )
    assert r.status_code == 202, r.text
    manifest = finish(served, auth, r.headers["content-location"])
    got = {t: {x["id"] for x in rs} for t, rs in download(served, auth, manifest).items()}
    leyr = [p for p in leyr_patients(deployment) if p["gender"] == "male"]
    nyra = [p for p in nyra_patients(deployment) if p["gender"] == "MALE"]
    assert got == {"Patient": ids(leyr, nyra)}


def leyr_appointments(deployment: Deployment) -> list[dict[str, Any]]:
    return [{**a, "cu": cu} for cu, table in deployment.leyr.appointments.items() for a in table]


def test_appointments_by_status_and_by_date(deployment, served):
    """Leyr's ``booked`` and Nyra's ``BOOKED`` and ``CONFIRMED`` are FHIR ``booked`` (their
    code tables); a date without a zone is a day in the source's own zone."""
    auth = deployment.token(served.app, "full")
    got = exported(served, auth, _type="Appointment", _typeFilter="Appointment?status=booked")
    leyr = [a for a in leyr_appointments(deployment) if a["status"] == "booked"]
    nyra = [a for a in deployment.nyra.appointments if a["status"] in ("BOOKED", "CONFIRMED")]
    assert leyr and nyra
    assert got == {"Appointment": ids(leyr, nyra)}

    day = "2026-04-01"
    got = exported(served, auth, _type="Appointment", _typeFilter=f"Appointment?date=ge{day}")
    leyr_from = datetime.fromisoformat(day).replace(tzinfo=ZoneInfo("Europe/Stockholm"))
    nyra_from = datetime.fromisoformat(day).replace(tzinfo=ZoneInfo("Asia/Kolkata"))
    leyr = [
        a for a in leyr_appointments(deployment) if datetime.fromisoformat(a["start"]) >= leyr_from
    ]
    nyra = [
        a
        for a in deployment.nyra.appointments
        if datetime.fromisoformat(a["appointment_time"]) >= nyra_from
    ]
    assert 0 < len(leyr) < len(leyr_appointments(deployment))
    assert 0 < len(nyra) < len(deployment.nyra.appointments)
    assert got == {"Appointment": ids(leyr, nyra)}
