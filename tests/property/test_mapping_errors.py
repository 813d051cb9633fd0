"""Bad vendor input raises a typed error naming the field, and never echoes patient data."""

from __future__ import annotations

import re

import strategies as gen
from hypothesis import given
from hypothesis import strategies as st

from mappings import InvalidVendorRecord, LeyrContext, NyraContext, leyr, nyra

LEYR = LeyrContext("leyr-demo", "Europe/Stockholm")
NYRA = NyraContext("nyra-demo", "Asia/Kolkata")
CASES = {
    "leyr-patient": (gen.leyr_patients(), leyr.to_fhir_patient, LEYR),
    "leyr-appointment": (gen.leyr_appointments(), leyr.to_fhir_appointment, LEYR),
    "nyra-patient": (gen.nyra_patients(), nyra.to_fhir_patient, NYRA),
    "nyra-appointment": (gen.nyra_appointments("Asia/Kolkata"), nyra.to_fhir_appointment, NYRA),
}
KNOWN = {
    "leyr-patient": gen.LEYR_PATIENT_FIELDS,
    "leyr-appointment": gen.LEYR_APPOINTMENT_FIELDS,
    "nyra-patient": gen.NYRA_PATIENT_FIELDS,
    "nyra-appointment": gen.NYRA_APPOINTMENT_FIELDS,
}
# Values that are wrong for every known field: no field takes a dict-in-a-list or a float.
WRONG = st.sampled_from([3.5, [{"x": 1}], True])


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    return []


@given(st.sampled_from(sorted(CASES)), st.data(), WRONG)
def test_a_wrongly_typed_field_is_named_and_no_value_leaks(case, data, wrong):
    records, to_fhir, ctx = CASES[case]
    record = data.draw(records)
    field = data.draw(st.sampled_from(sorted(KNOWN[case])))
    record[field] = wrong
    try:
        to_fhir(record, ctx)
    except InvalidVendorRecord as exc:
        assert exc.path.split(".")[0].split("[")[0] == field
        message = str(exc)
        for text in _strings(record):
            # A value of four characters or more, standing on its own: "stri" is no leak
            # in "expected a string".
            if len(text) >= 4:
                assert not re.search(rf"(?<!\w){re.escape(text)}(?!\w)", message), text
    else:
        raise AssertionError(f"{case}: {field} = {wrong!r} was accepted")


@given(st.sampled_from(sorted(CASES)), st.data())
def test_a_missing_id_is_named(case, data):
    records, to_fhir, ctx = CASES[case]
    record = data.draw(records)
    del record["id"]
    try:
        to_fhir(record, ctx)
    except InvalidVendorRecord as exc:
        assert exc.path == "id"
    else:
        raise AssertionError("a record without id was accepted")


CODED = {
    "leyr-patient": ["gender"],
    "leyr-appointment": ["status"],
    "nyra-patient": ["gender", "status"],
    "nyra-appointment": ["status"],
}


@given(st.sampled_from(sorted(CASES)), st.data())
def test_unknown_codes_are_errors_not_guesses(case, data):
    records, to_fhir, ctx = CASES[case]
    record = data.draw(records)
    field = data.draw(st.sampled_from(CODED[case]))
    record[field] = "SOMETHING_NEW"
    try:
        to_fhir(record, ctx)
    except InvalidVendorRecord as exc:
        assert exc.path == field
        assert "SOMETHING_NEW" in str(exc)  # a closed-vocabulary code may be shown
    else:
        raise AssertionError("an unknown code was accepted")
