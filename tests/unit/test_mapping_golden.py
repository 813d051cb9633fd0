"""Golden files: each vendor record beside the FHIR it must map to (or the error it must
raise), under ``tests/data/mappings/{vendor}/{resource}/``.

``NAME.vendor.json`` is the input; ``NAME.fhir.json`` the exact expected FHIR, or
``NAME.error.json`` the expected error class and field path. ``NAME.back.json`` is what
FHIR -> vendor gives where it intentionally differs from the input (a timestamp spelled
without seconds or without offset comes back in full); without it, the way back must give
the input exactly. The directory resources (Practitioner, Device, Schedule, Location,
Organization, HealthcareService) are mapped one way only: no way back is checked.

Two optional files change how a case is mapped: ``NAME.context.json`` holds a Leyr
directory (``{"care_units": [..], "resources": [..], "services": [..]}``, the vendor's own
records, read with ``LeyrDirectory.from_records``) the context carries; ``NAME.args.json``
holds further keyword arguments of the mapping (Nyra's ``doctor_name`` of a Schedule).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.healthcareservice import HealthcareService
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.schedule import Schedule

import mappings
from mappings import LeyrContext, LeyrDirectory, NyraContext, leyr, nyra

DATA = Path(__file__).resolve().parents[1] / "data" / "mappings"
CONTEXTS = {
    "leyr": LeyrContext("leyr-webdoc", "Europe/Stockholm"),
    "nyra": NyraContext(
        "nyra-city", "Asia/Kolkata", slot_minutes=15, slot_minutes_by_doctor={"doc-slow": 30}
    ),
}
FUNCTIONS = {
    ("leyr", "patient"): (leyr.to_fhir_patient, leyr.from_fhir_patient, Patient),
    ("leyr", "appointment"): (leyr.to_fhir_appointment, leyr.from_fhir_appointment, Appointment),
    ("nyra", "patient"): (nyra.to_fhir_patient, nyra.from_fhir_patient, Patient),
    ("nyra", "appointment"): (nyra.to_fhir_appointment, nyra.from_fhir_appointment, Appointment),
    # The directory: one way only.
    ("leyr", "practitioner"): (leyr.to_fhir_practitioner, None, Practitioner),
    ("leyr", "device"): (leyr.to_fhir_device, None, Device),
    ("leyr", "schedule"): (leyr.to_fhir_schedule, None, Schedule),
    ("leyr", "location"): (leyr.to_fhir_location, None, Location),
    ("leyr", "organization"): (leyr.to_fhir_organization, None, Organization),
    ("leyr", "healthcareservice"): (leyr.to_fhir_healthcare_service, None, HealthcareService),
    ("nyra", "practitioner"): (nyra.to_fhir_practitioner, None, Practitioner),
    ("nyra", "schedule"): (nyra.to_fhir_schedule, None, Schedule),
    ("nyra", "location"): (nyra.to_fhir_location, None, Location),
    ("nyra", "organization"): (nyra.to_fhir_organization, None, Organization),
}
DIRECTORY_KINDS = {
    "leyr": {"practitioner", "device", "schedule", "location", "organization", "healthcareservice"},
    "nyra": {"practitioner", "schedule", "location", "organization"},
}
CASES = sorted(DATA.glob("*/*/*.vendor.json"))
# Closed vocabularies an error message may quote; nothing else of the record may appear.
# (`hospital` is the one id the Nyra mappings reserve, for the hospital's Organization.)
CODES = {"male", "female", "other", "unknown", "MALE", "FEMALE", "OTHER", "ACTIVE", "INACTIVE"}
CODES |= {nyra.HOSPITAL}


def load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    return []


@pytest.mark.parametrize("case", CASES, ids=lambda p: str(p.relative_to(DATA)))
def test_golden(case: Path):
    vendor, kind = case.parent.parent.name, case.parent.name
    to_fhir, from_fhir, model = FUNCTIONS[(vendor, kind)]
    record = load(case)
    stem = case.name.removesuffix(".vendor.json")
    ctx = context(vendor, case.with_name(f"{stem}.context.json"))
    args_file = case.with_name(f"{stem}.args.json")
    kwargs = load(args_file) if args_file.exists() else {}
    error_file = case.with_name(f"{stem}.error.json")
    if error_file.exists():
        expected = load(error_file)
        with pytest.raises(getattr(mappings, expected["error"])) as caught:
            to_fhir(record, ctx, **kwargs)
        assert caught.value.path == expected["path"]
        message = str(caught.value)
        # An unknown code of a coded field is named; it is vocabulary, not patient data.
        allowed = CODES | {expected["path"], kind}
        if expected["path"] in ("status", "gender"):
            allowed.add(record[expected["path"]])
        for text in strings(record):
            if len(text) >= 3 and text not in allowed:
                assert text not in message, "an error message quotes the vendor record"
        return
    resource = to_fhir(record, ctx, **kwargs)
    assert resource == load(case.with_name(f"{stem}.fhir.json"))
    model.model_validate(resource)
    if (vendor, kind) in (("leyr", "practitioner"), ("leyr", "device")):
        assert leyr.to_fhir_resource(record, ctx) == resource
    if from_fhir is None:
        return
    back_file = case.with_name(f"{stem}.back.json")
    assert from_fhir(resource, ctx) == (load(back_file) if back_file.exists() else record)


def context(vendor: str, context_file: Path):
    """The vendor's golden context, with the case's Leyr directory when it has one."""
    ctx = CONTEXTS[vendor]
    if not context_file.exists():
        return ctx
    assert vendor == "leyr", "only Leyr contexts carry a directory"
    records = load(context_file)
    directory = LeyrDirectory.from_records(
        records.get("care_units", []), records.get("resources", []), records.get("services", [])
    )
    assert directory != LeyrDirectory(), "a context file that names nothing tests nothing"
    return replace(ctx, directory=directory)


def test_every_vendor_has_its_documents_examples_and_ten_edge_cases():
    for vendor, examples in {
        "leyr": ["patient/tolvan-tolvansson", "appointment/a-77"],
        "nyra": ["patient/ravi-kumar", "appointment/ravi-kumar-appointment"],
    }.items():
        cases = {
            str(p.relative_to(DATA / vendor)).removesuffix(".vendor.json")
            for p in CASES
            if p.relative_to(DATA).parts[0] == vendor
        }
        assert set(examples) <= cases
        assert len(cases - set(examples)) >= 10


def test_every_directory_resource_has_cases_and_an_error_case():
    for vendor, kinds in DIRECTORY_KINDS.items():
        for kind in kinds:
            stems = {
                p.name.removesuffix(".vendor.json")
                for p in CASES
                if p.parent == DATA / vendor / kind
            }
            assert len(stems) >= 3, f"{vendor}/{kind}"
            assert any((DATA / vendor / kind / f"{s}.error.json").exists() for s in stems)


def test_directory_names_reach_leyr_appointments_and_patients():
    """Some appointment and patient cases are mapped with a directory that names things
    (and with one that makes the booked resource a Device)."""
    named = {
        p.parent.name: p
        for p in DATA.glob("leyr/*/*.context.json")
        if p.parent.name in ("appointment", "patient")
    }
    assert set(named) == {"appointment", "patient"}
    devices = [
        load(p.with_name(p.name.replace(".context.json", ".fhir.json")))
        for p in DATA.glob("leyr/appointment/*.context.json")
    ]
    assert any(
        m["actor"]["reference"].startswith("Device/") for a in devices for m in a["participant"]
    )
