"""Golden files: each vendor record beside the FHIR it must map to (or the error it must
raise), under ``tests/data/mappings/{vendor}/{resource}/``.

``NAME.vendor.json`` is the input; ``NAME.fhir.json`` the exact expected FHIR, or
``NAME.error.json`` the expected error class and field path. ``NAME.back.json`` is what
FHIR -> vendor gives where it intentionally differs from the input (a timestamp spelled
without seconds or without offset comes back in full); without it, the way back must give
the input exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.patient import Patient

import mappings
from mappings import LeyrContext, NyraContext, leyr, nyra

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
}
CASES = sorted(DATA.glob("*/*/*.vendor.json"))
# Closed vocabularies an error message may quote; nothing else of the record may appear.
CODES = {"male", "female", "other", "unknown", "MALE", "FEMALE", "OTHER", "ACTIVE", "INACTIVE"}


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
    ctx = CONTEXTS[vendor]
    record = load(case)
    stem = case.name.removesuffix(".vendor.json")
    error_file = case.with_name(f"{stem}.error.json")
    if error_file.exists():
        expected = load(error_file)
        with pytest.raises(getattr(mappings, expected["error"])) as caught:
            to_fhir(record, ctx)
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
    resource = to_fhir(record, ctx)
    assert resource == load(case.with_name(f"{stem}.fhir.json"))
    model.model_validate(resource)
    back_file = case.with_name(f"{stem}.back.json")
    assert from_fhir(resource, ctx) == (load(back_file) if back_file.exists() else record)


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
