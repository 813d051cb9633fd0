"""Real-world FHIR no one here wrote, through FHIR -> vendor -> FHIR."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.patient import Patient

from mappings import InvalidResource, LeyrContext, NyraContext, leyr, nyra

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "fhir-samples"
PATIENTS = sorted(
    [*SAMPLES.glob("hl7-r4-spec/patient/*.json"), *SAMPLES.glob("synthea-r4/patient/*.json")]
)
APPOINTMENTS = sorted(SAMPLES.glob("hl7-r4-spec/appointment/*.json"))
LEYR = LeyrContext("leyr-demo", "Europe/Stockholm")
NYRA = NyraContext("nyra-demo", "Asia/Kolkata")

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"no FHIR samples at {SAMPLES}")


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _as_ours(resource: dict, ctx, *, leyr_scoped: bool) -> dict:
    """The sample as if it were addressed to ``ctx``'s source: its own ids and references
    point elsewhere, so they are replaced by ours."""
    resource = copy.deepcopy(resource)
    for key in ("id", "managingOrganization", "generalPractitioner", "link", "contained"):
        resource.pop(key, None)
    if leyr_scoped:
        resource["managingOrganization"] = {"reference": ctx.ref("Organization", "CU1")}
    return resource


@pytest.mark.parametrize("path", PATIENTS, ids=lambda p: p.name)
@pytest.mark.parametrize(("ctx", "module"), [(LEYR, leyr), (NYRA, nyra)], ids=["leyr", "nyra"])
def test_spec_patients_reach_a_fixed_point_or_a_named_refusal(path, ctx, module):
    sample = _as_ours(_load(path), ctx, leyr_scoped=module is leyr)
    try:
        record = module.from_fhir_patient(sample, ctx)
    except InvalidResource as exc:
        assert exc.expression.startswith("Patient.")
        return
    record["id"] = "sample-1"
    once = module.to_fhir_patient(record, ctx)
    Patient.model_validate(once)
    assert module.to_fhir_patient(module.from_fhir_patient(once, ctx), ctx) == once
    # What the vendor can hold survives: the name, the birth date and the gender.
    if "birthDate" in sample:
        assert once["birthDate"] == sample["birthDate"]
    if "gender" in sample:
        assert once["gender"] == sample["gender"]
    if sample.get("name") and module is nyra and sample["name"][0].get("text"):
        assert once["name"][0]["text"] == sample["name"][0]["text"]


def test_partial_birth_dates_are_refused_by_name():
    sample = {"resourceType": "Patient", "birthDate": "1974"}
    with pytest.raises(InvalidResource) as caught:
        nyra.from_fhir_patient(sample, NYRA)
    assert caught.value.expression == "Patient.birthDate"


@pytest.mark.parametrize("path", APPOINTMENTS, ids=lambda p: p.name)
def test_spec_appointments_are_refused_for_foreign_references(path):
    """The spec's appointments reference patients of another server: never mapped silently."""
    sample = _load(path)
    sample.pop("id", None)
    with pytest.raises(InvalidResource) as caught:
        nyra.from_fhir_appointment(sample, NYRA)
    assert caught.value.expression.startswith("Appointment.")


def test_spec_appointment_rehomed_maps_its_times_and_comment():
    sample = _load(SAMPLES / "hl7-r4-spec/appointment/appointment-example.json")
    sample.pop("id")
    sample["participant"] = [
        {"actor": {"reference": NYRA.ref("Patient", "p1")}, "status": "accepted"},
        {"actor": {"reference": NYRA.ref("Practitioner", "d1")}, "status": "accepted"},
    ]
    record = nyra.from_fhir_appointment(sample, NYRA)
    assert record["patient_id"] == "p1"
    assert record["doctor_id"] == "d1"
    assert record["status"] == "BOOKED"
    assert record["notes"] == sample["comment"]
    # 2013-12-10T09:00:00Z is 14:30 in Kolkata.
    assert record["appointment_time"] == "2013-12-10T14:30:00+05:30"
    record["id"] = "a1"
    Appointment.model_validate(nyra.to_fhir_appointment(record, NYRA))
