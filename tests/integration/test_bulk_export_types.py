"""Every listable type in a bulk export, against both sandboxes: a system export holds each
of the sandboxes' directory records once; a Patient or Group export holds the patient
compartment and, of the directory types ``_type`` names, exactly what it references."""

from __future__ import annotations

from typing import Any

import pytest
from bulk import ASYNC, LEYR, NYRA, Deployment, Served, download, finish, kick_off, references

from mappings import encode_id

DIRECTORY = ("Practitioner", "Location", "Organization", "HealthcareService", "Schedule", "Device")


@pytest.fixture
def deployment(tmp_path):
    return Deployment(tmp_path)


@pytest.fixture
def served(deployment):
    serving = Served(deployment.app())
    yield serving
    serving.stop()


def sandbox_directory(deployment: Deployment) -> dict[str, set[str]]:
    """The FHIR ids of the sandboxes' directory records, by the type each is mapped to:
    Leyr's resources (practitioners and equipment, each with a Schedule), care units
    (Location and Organization) and services; Nyra's doctors (each with a Schedule), their
    branches (Location and Organization) and the hospital (Organization)."""
    leyr, nyra = deployment.leyr, deployment.nyra
    resources = leyr.resources

    def scoped(record: dict[str, Any]) -> str:
        return encode_id(LEYR, record["id"], record["care_unit_id"])

    branches = {encode_id(NYRA, d["branch_id"]) for d in nyra.doctors}
    doctors = {encode_id(NYRA, d["id"]) for d in nyra.doctors}
    units = {encode_id(LEYR, cu) for cu in leyr.care_units}
    return {
        "Practitioner": {scoped(r) for r in resources if r["type"] == "practitioner"} | doctors,
        "Device": {scoped(r) for r in resources if r["type"] == "equipment"},
        "Schedule": {scoped(r) for r in resources} | doctors,
        "Location": units | branches,
        "Organization": units | branches | {encode_id(NYRA, "hospital")},
        "HealthcareService": {scoped(s) for s in leyr.services},
    }


def test_a_system_export_holds_every_listable_type(deployment, served):
    auth = deployment.token(served.app, "full")
    manifest = finish(served, auth, kick_off(served, auth))
    assert manifest["error"] == []
    resources = download(served, auth, manifest)  # each line valid R4
    assert set(resources) == {"Patient", "Appointment", *DIRECTORY}
    expected = sandbox_directory(deployment)
    for resource_type in DIRECTORY:
        ids = [r["id"] for r in resources[resource_type]]
        assert len(ids) == len(set(ids)), resource_type
        assert set(ids) == expected[resource_type], resource_type
    # Every reference inside the export is a line of it, or read through the facade.
    held = {(t, r["id"]) for t, rs in resources.items() for r in rs}
    outside = references(resources) - held
    for kind, fhir_id in sorted(outside):
        r = served.http.get(f"/{kind}/{fhir_id}", headers=auth)
        assert r.status_code == 200, (kind, fhir_id, r.text)
    assert {k for k, _ in references(resources)} >= {"Patient", "Practitioner", "Location"}


def test_a_group_export_holds_what_its_compartment_references(deployment, served):
    auth = deployment.token(served.app, "full")
    whole = download(served, auth, finish(served, auth, kick_off(served, auth)))
    for source in (LEYR, NYRA):
        # Without directory types in _type: the compartment alone.
        manifest = finish(served, auth, kick_off(served, auth, f"/Group/{source}/$export"))
        assert {item["type"] for item in manifest["output"]} == {"Patient", "Appointment"}

        types = "Patient,Appointment,Practitioner,Location,Device,Schedule"
        manifest = finish(
            served, auth, kick_off(served, auth, f"/Group/{source}/$export", _type=types)
        )
        assert manifest["error"] == []
        got = download(served, auth, manifest)
        compartment = {t: got[t] for t in ("Patient", "Appointment")}
        assert {r["id"] for r in got["Patient"]} == {
            r["id"] for r in whole["Patient"] if r["id"].startswith(f"{source}.")
        }
        referenced = references(compartment)
        for resource_type in ("Practitioner", "Location", "Device", "Schedule"):
            want = {
                r["id"]
                for r in whole.get(resource_type, [])
                if (resource_type, r["id"]) in referenced
            }
            assert {r["id"] for r in got.get(resource_type, [])} == want, resource_type
        assert got["Practitioner"]  # appointments name their practitioners
        assert "Schedule" not in got  # no appointment or patient references a Schedule


def test_a_patient_export_needs_a_compartment_type_beside_directory_types(deployment, served):
    auth = deployment.token(served.app, "full")
    for path in ("/Patient/$export", f"/Group/{LEYR}/$export"):
        r = served.http.get(path, params={"_type": "Practitioner"}, headers={**ASYNC, **auth})
        assert r.status_code == 400
        [issue] = r.json()["issue"]
        assert issue["expression"] == ["_type"]
        assert issue["diagnostics"].endswith("_type must name Patient or Appointment too")


def test_the_capability_statement_says_which_types_are_exported(served):
    rest = served.http.get("/metadata").json()["rest"][0]
    [system] = [o for o in rest["operation"] if o["name"] == "export"]
    assert system["documentation"] == (
        "Exports Patient, Appointment, Practitioner, Location, Organization, "
        "HealthcareService, Schedule, Device."
    )
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    [operation] = [o for o in patient["operation"] if o["name"] == "export"]
    assert operation["documentation"] == (
        "Exports Patient, Appointment; with _type naming Practitioner, Location, "
        "Organization, HealthcareService, Schedule, Device, also those the exported "
        "resources reference."
    )
