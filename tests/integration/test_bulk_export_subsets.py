"""``_elements`` and ``patient`` of a bulk export over HTTP, against both sandboxes: what is
kept is counted in the sandboxes' own records."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from bulk import ASYNC, LEYR, NYRA, Deployment, Served, download, finish, kick_off, references

from mappings import encode_id

SUBSETTED = "SUBSETTED"


@pytest.fixture
def deployment(tmp_path):
    return Deployment(tmp_path)


@pytest.fixture
def served(deployment):
    serving = Served(deployment.app())
    yield serving
    serving.stop()


def patients_of(deployment: Deployment) -> set[str]:
    leyr = {encode_id(LEYR, p["id"], cu) for cu, t in deployment.leyr.patients.items() for p in t}
    return leyr | {encode_id(NYRA, p["id"]) for p in deployment.nyra.patients}


def test_elements_keep_what_is_named_and_what_fhir_requires(deployment, served):
    auth = deployment.token(served.app, "full")
    manifest = finish(
        served,
        auth,
        kick_off(served, auth, _type="Patient,Appointment", _elements="Patient.gender,status"),
    )
    got = download(served, auth, manifest)  # each line valid R4
    assert {r["id"] for r in got["Patient"]} == patients_of(deployment)
    genders = {"female", "male", "other", "unknown"}
    for patient in got["Patient"]:
        assert set(patient) == {"resourceType", "id", "meta", "gender"}
        assert patient["gender"] in genders
        assert SUBSETTED in [t["code"] for t in patient["meta"]["tag"]]
    for appointment in got["Appointment"]:
        # Appointment.status is named; participant (1..*) is what R4 requires
        assert set(appointment) == {"resourceType", "id", "meta", "status", "participant"}
        assert SUBSETTED in [t["code"] for t in appointment["meta"]["tag"]]


def test_a_type_no_element_names_is_written_whole(deployment, served):
    auth = deployment.token(served.app, "full")
    manifest = finish(
        served, auth, kick_off(served, auth, _type="Patient,Practitioner", _elements="gender")
    )
    got = download(served, auth, manifest)
    assert all(set(p) == {"resourceType", "id", "meta", "gender"} for p in got["Patient"])
    # Practitioner has a gender too: the bare name holds for every type that has it
    assert all("name" not in p for p in got["Practitioner"])
    manifest = finish(
        served, auth, kick_off(served, auth, _type="Patient,Location", _elements="Patient.gender")
    )
    got = download(served, auth, manifest)
    assert all("name" in loc for loc in got["Location"] if loc["id"].startswith(f"{LEYR}."))
    assert all(
        SUBSETTED not in [t.get("code") for t in loc["meta"].get("tag", [])]
        for loc in got["Location"]
    )


def test_elements_that_cannot_be_honoured_are_a_400(deployment, served):
    auth = deployment.token(served.app, "full")
    cases = {
        "Patient.colour": "_elements Patient.colour: Patient has no element colour",
        "Practitioner.name": "_elements Practitioner.name: Practitioner is not exported",
        "colour": "_elements colour: no exported type has an element colour",
    }
    for value, said in cases.items():
        r = served.http.get(
            "/$export", params={"_type": "Patient", "_elements": value}, headers={**ASYNC, **auth}
        )
        assert r.status_code == 400, value
        assert r.json()["issue"] == [
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": said,
                "expression": ["_elements"],
            }
        ]


def post(served: Served, auth: dict[str, str], path: str, parameters: list[dict[str, Any]]):
    body = {"resourceType": "Parameters", "parameter": parameters}
    return served.http.post(
        path,
        content=orjson.dumps(body),
        headers={**ASYNC, **auth, "content-type": "application/fhir+json"},
    )


def test_a_group_export_narrowed_to_named_patients(deployment, served):
    auth = deployment.token(served.app, "full")
    units = deployment.leyr.patients
    cu = next(iter(units))
    chosen = list(units[cu])[:2]
    named = [encode_id(LEYR, p["id"], cu) for p in chosen]
    r = post(
        served,
        auth,
        f"/Group/{LEYR}/$export",
        [
            {"name": "_type", "valueString": "Patient,Appointment,Practitioner"},
            *({"name": "patient", "valueReference": {"reference": f"Patient/{i}"}} for i in named),
        ],
    )
    assert r.status_code == 202, r.text
    got = download(served, auth, finish(served, auth, r.headers["content-location"]))
    assert {p["id"] for p in got["Patient"]} == set(named)
    vendor_ids = {p["id"] for p in chosen}
    expected = {
        encode_id(LEYR, a["id"], cu)
        for a in deployment.leyr.appointments[cu]
        if a["patient_id"] in vendor_ids
    }
    assert expected
    assert {a["id"] for a in got["Appointment"]} == expected
    compartment = {"Patient": got["Patient"], "Appointment": got["Appointment"]}
    referenced = {i for kind, i in references(compartment) if kind == "Practitioner"}
    assert {p["id"] for p in got["Practitioner"]} == referenced


def test_patients_are_checked_against_the_group_and_the_clients_sources(deployment, served):
    auth = deployment.token(served.app, "full")
    nyra_patient = encode_id(NYRA, next(iter(deployment.nyra.patients))["id"])
    cu = next(iter(deployment.leyr.patients))
    leyr_patient = encode_id(LEYR, next(iter(deployment.leyr.patients[cu]))["id"], cu)

    def refused(token, path, reference, said):
        r = post(
            served, token, path, [{"name": "patient", "valueReference": {"reference": reference}}]
        )
        assert r.status_code == 400, (path, reference, r.text)
        [issue] = r.json()["issue"]
        assert issue["expression"] == ["patient"]
        assert issue["diagnostics"] == said

    refused(auth, f"/Group/{LEYR}/$export", f"Patient/{nyra_patient}",
            f"patient Patient/{nyra_patient}: not a member of Group/{LEYR}")  # fmt: skip
    refused(auth, "/Patient/$export", f"Patient/{LEYR}.nobody",
            f"patient Patient/{LEYR}.nobody: no such Patient")  # fmt: skip
    refused(auth, "/Patient/$export", f"Practitioner/{leyr_patient}",
            f"patient Practitioner/{leyr_patient}: not a reference to a Patient")  # fmt: skip
    refused(auth, "/$export", f"Patient/{leyr_patient}",
            "patient narrows a Patient or Group export only")  # fmt: skip
    # A client held to Nyra cannot name a Leyr patient: to it, there is none.
    nyra_only = deployment.token(served.app, "nyra-only")
    refused(nyra_only, "/Patient/$export", f"Patient/{leyr_patient}",
            f"patient Patient/{leyr_patient}: no such Patient")  # fmt: skip
