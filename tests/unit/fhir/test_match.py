from datetime import UTC

import pytest

from adapter.fhir.match import matches, normalise
from adapter.fhir.search import SearchParam, UnsupportedParameter

PATIENT = {
    "resourceType": "Patient",
    "id": "src.p1",
    "name": [{"text": "Åsa Öberg", "family": "Öberg", "given": ["Åsa", "Maria"]}],
    "identifier": [{"system": "urn:oid:1.2.752.129.2.1.3.1", "value": "191212121212"}],
    "telecom": [
        {"system": "phone", "value": "+46700000000"},
        {"system": "email", "value": "a@x.se"},
    ],
    "gender": "female",
    "birthDate": "1912-12-12",
    "active": True,
}
APPT = {
    "resourceType": "Appointment",
    "id": "src.a1",
    "status": "booked",
    "start": "2024-03-25T14:00:00+01:00",
    "participant": [
        {"actor": {"reference": "Patient/src.p1"}, "status": "accepted"},
        {"actor": {"reference": "Practitioner/src.d1"}, "status": "accepted"},
    ],
    "serviceType": [{"coding": [{"system": "urn:s", "code": "svc-1"}]}],
}


def p(name, *values, modifier=None, prefix=None):
    return SearchParam(name, tuple(values), modifier, prefix)


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (p("name", "asa"), True),  # case and accent folded, prefix
        (p("name", "obe"), True),
        (p("name", "berg"), False),  # not a prefix
        (p("name", "berg", modifier="contains"), True),
        (p("name", "Åsa", modifier="exact"), True),
        (p("name", "åsa", modifier="exact"), False),
        (p("family", "maria"), False),
        (p("given", "mar"), True),
        (p("name", "nobody", "maria"), True),  # values are ORed
        (p("identifier", "urn:oid:1.2.752.129.2.1.3.1|191212121212"), True),
        (p("identifier", "191212121212"), True),
        (p("identifier", "urn:other|191212121212"), False),
        (p("identifier", "|191212121212"), False),
        (p("identifier", "urn:oid:1.2.752.129.2.1.3.1|"), True),
        (p("gender", "female"), True),
        (p("gender", "male"), False),
        (p("phone", "+46700000000"), True),
        (p("email", "+46700000000"), False),
        (p("telecom", "a@x.se"), True),
        (p("active", "true"), True),
        (p("birthdate", "1912", prefix="eq"), True),
        (p("birthdate", "1912-12-13", prefix="lt"), True),
        (p("birthdate", "1912-12-12", prefix="gt"), False),
        (p("_id", "src.p1"), True),
    ],
    ids=str,
)
def test_patient_params(param, expected):
    assert matches(PATIENT, [param], UTC) is expected


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (p("patient", "Patient/src.p1"), True),
        (p("patient", "src.p1"), True),
        (p("patient", "http://x/fhir/Patient/src.p1"), True),
        (p("patient", "src.d1"), False),
        (p("practitioner", "src.d1"), True),
        (p("actor", "Practitioner/src.d1"), True),
        (p("actor", "src.p1"), True),
        (p("status", "booked", "cancelled"), True),
        (p("status", "cancelled"), False),
        (p("date", "2024-03-25", prefix="eq"), True),
        (p("date", "2024-03-25T13:00:00Z", prefix="eq"), True),
        (p("date", "2024-03-25T14:00:00Z", prefix="ge"), False),
        (p("date", "2024-03-26", prefix="lt"), True),
        (p("service-type", "urn:s|svc-1"), True),
    ],
    ids=str,
)
def test_appointment_params(param, expected):
    assert matches(APPT, [param], UTC) is expected


def test_params_are_anded():
    assert not matches(PATIENT, [p("name", "asa"), p("gender", "male")], UTC)


def test_unknown_parameter_and_modifier_are_refused():
    with pytest.raises(UnsupportedParameter):
        matches(PATIENT, [p("shoe-size", "9")], UTC)
    with pytest.raises(UnsupportedParameter):
        matches(PATIENT, [p("gender", "x", modifier="text")], UTC)
    with pytest.raises(UnsupportedParameter):
        matches(APPT, [p("date", "yesterday")], UTC)


def test_normalise_folds_case_and_accents():
    assert normalise("ÅsA Öberg") == "asa oberg"


# A code element's token has the implicit system of the element's value set (R4 search,
# "token"): system|code, system| and code find it; |code (no system) does not.
GENDER = "http://hl7.org/fhir/administrative-gender"
APPOINTMENT_STATUS = "http://hl7.org/fhir/appointmentstatus"
SLOT_STATUS = "http://hl7.org/fhir/slotstatus"
SLOT = {"resourceType": "Slot", "id": "src.s1", "status": "free", "start": "2024-03-25T14:00:00Z"}


@pytest.mark.parametrize(
    ("resource_type", "param", "expected"),
    [
        ("Patient", p("gender", f"{GENDER}|female"), True),
        ("Patient", p("gender", f"{GENDER}|"), True),
        ("Patient", p("gender", f"{GENDER}|male"), False),
        ("Patient", p("gender", "|female"), False),
        ("Patient", p("gender", "urn:other|female"), False),
        ("Patient", p("gender", "urn:other|"), False),
        ("Appointment", p("status", f"{APPOINTMENT_STATUS}|booked"), True),
        ("Appointment", p("status", f"{APPOINTMENT_STATUS}|"), True),
        ("Appointment", p("status", "|booked"), False),
        ("Appointment", p("status", f"{APPOINTMENT_STATUS}|cancelled", "|booked"), False),
        ("Slot", p("status", f"{SLOT_STATUS}|free"), True),
        ("Slot", p("status", f"{SLOT_STATUS}|"), True),
        ("Slot", p("status", "|free"), False),
        ("Slot", p("status", f"{APPOINTMENT_STATUS}|free"), False),
    ],
    ids=str,
)
def test_a_code_carries_its_implicit_system(resource_type, param, expected):
    resource = {"Patient": PATIENT, "Appointment": APPT, "Slot": SLOT}[resource_type]
    assert matches(resource, [param], UTC) is expected


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (p("service-type", "svc-1"), True),
        (p("service-type", "urn:s|"), True),
        (p("service-type", "|svc-1"), False),  # the coding has a system
        (p("service-type", "|svc-2"), True),  # ... and this one has none
        (p("service-type", "urn:s|svc-2"), False),
        (p("service-type", "|"), True),  # any code without a system
    ],
    ids=str,
)
def test_codings_by_system_and_code(param, expected):
    resource = {
        **APPT,
        "serviceType": [{"coding": [{"system": "urn:s", "code": "svc-1"}, {"code": "svc-2"}]}],
    }
    assert matches(resource, [param], UTC) is expected


def dates(name, *written):
    """A date parameter whose ORed values each carry a prefix (``lt2024-03-01``)."""
    return SearchParam(name, tuple(w[2:] for w in written), prefixes=tuple(w[:2] for w in written))


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (dates("date", "lt2024-03-01", "ge2024-03-25"), True),
        (dates("date", "lt2024-03-01", "gt2024-03-25"), False),  # not after that day
        (dates("date", "eq2024-03-25", "ne2024-03-25"), True),
        (dates("date", "sa2024-03-25", "eb2024-03-25"), False),
        (dates("date", "le2024", "gt2024-04"), True),
    ],
    ids=str,
)
def test_ored_dates_with_prefixes_of_their_own(param, expected):
    assert matches(APPT, [param], UTC) is expected


DOCTOR = {
    "resourceType": "Practitioner",
    "id": "src.d1",
    "name": [{"text": "Dr. Lena Nilsson-Berg", "family": "Nilsson-Berg", "given": ["Lena"]}],
}


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (p("name", "dr lena"), True),  # "Dr." without its full stop
        (p("name", "Dr.Lena"), True),
        (p("name", "dr   lena  nils"), True),  # repeated whitespace is one space
        (p("name", " dr, lena "), True),
        (p("name", "nilsson berg"), True),  # the hyphen parts the name
        (p("family", "nilssonberg"), False),  # ... it is not nothing
        (p("name", "lena nilsson", modifier="contains"), True),
        (p("name", "a  nils", modifier="contains"), True),
        (p("name", "dr lena", modifier="exact"), False),  # :exact is as written
        (p("name", "Dr. Lena Nilsson-Berg", modifier="exact"), True),
        (p("name", "drlena"), False),
    ],
    ids=str,
)
def test_strings_without_punctuation_and_repeated_whitespace(param, expected):
    assert matches(DOCTOR, [param], UTC) is expected
