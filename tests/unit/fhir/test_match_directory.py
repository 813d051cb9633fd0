"""Search parameters of the directory types (Practitioner, Device, Location, Organization,
HealthcareService, Schedule) and of Slots, evaluated in memory."""

from datetime import UTC

import pytest

from adapter.fhir.match import KINDS, matches
from adapter.fhir.search import SearchParam

PRACTITIONER = {
    "resourceType": "Practitioner",
    "id": "src.d1",
    "name": [{"text": "Dr Ärla Lind", "family": "Lind", "given": ["Ärla"], "prefix": ["Dr"]}],
    "identifier": [{"system": "urn:oid:1.2.752.129.2.1.4.1", "value": "SE123"}],
}
DEVICE = {
    "resourceType": "Device",
    "id": "src.e1",
    "deviceName": [{"name": "Röntgen 2", "type": "user-friendly-name"}],
    "owner": {"reference": "Organization/src.cu1"},
    "location": {"reference": "Location/src.cu1"},
}
LOCATION = {
    "resourceType": "Location",
    "id": "src.cu1",
    "name": "Vårdcentralen Söder",
    "alias": ["VC Söder"],
    "managingOrganization": {"reference": "Organization/src.cu1"},
}
ORGANIZATION = {
    "resourceType": "Organization",
    "id": "src.b1",
    "name": "City Hospital North",
    "partOf": {"reference": "Organization/src.h"},
}
SERVICE = {
    "resourceType": "HealthcareService",
    "id": "src.s1",
    "name": "Nybesök allmänmedicin",
    "providedBy": {"reference": "Organization/src.cu1"},
    "location": [{"reference": "Location/src.cu1"}],
    "type": [{"coding": [{"system": "urn:svc", "code": "visit-30"}]}],
}
SCHEDULE = {
    "resourceType": "Schedule",
    "id": "src.d1",
    "actor": [{"reference": "Practitioner/src.d1", "display": "Dr Ärla Lind"}],
}
SLOT = {
    "resourceType": "Slot",
    "id": "src.slot1",
    "schedule": {"reference": "Schedule/src.d1"},
    "status": "free",
    "start": "2026-03-02T09:00:00+01:00",
}


def p(name, *values, modifier=None):
    return SearchParam(name, tuple(values), modifier)


CASES = [
    (PRACTITIONER, p("_id", "src.d1"), True),
    (PRACTITIONER, p("_id", "src.d2"), False),
    (PRACTITIONER, p("name", "arla"), True),
    (PRACTITIONER, p("name", "dr"), True),  # the prefix is part of the name
    (PRACTITIONER, p("name", "ind", modifier="contains"), True),
    (PRACTITIONER, p("family", "lind"), True),
    (PRACTITIONER, p("family", "arla"), False),
    (PRACTITIONER, p("given", "ärla", modifier="exact"), False),
    (PRACTITIONER, p("given", "Ärla", modifier="exact"), True),
    (PRACTITIONER, p("identifier", "urn:oid:1.2.752.129.2.1.4.1|SE123"), True),
    (PRACTITIONER, p("identifier", "urn:other|SE123"), False),
    (DEVICE, p("device-name", "rontgen"), True),
    (DEVICE, p("device-name", "2", modifier="contains"), True),
    (DEVICE, p("device-name", "ultraljud"), False),
    (DEVICE, p("organization", "Organization/src.cu1"), True),
    (DEVICE, p("organization", "src.cu1"), True),
    (DEVICE, p("organization", "Location/src.cu1"), False),
    (DEVICE, p("location", "src.cu1"), True),
    (DEVICE, p("location", "Organization/src.cu1"), False),
    (LOCATION, p("name", "vardcentralen"), True),
    (LOCATION, p("name", "vc"), True),  # an alias
    (LOCATION, p("name", "soder"), False),  # not a prefix
    (LOCATION, p("organization", "src.cu1"), True),
    (LOCATION, p("organization", "src.other"), False),
    (ORGANIZATION, p("name", "city"), True),
    (ORGANIZATION, p("name", "north"), False),
    (ORGANIZATION, p("partof", "Organization/src.h"), True),
    (ORGANIZATION, p("partof", "src.b1"), False),
    (SERVICE, p("name", "nybesok"), True),
    (SERVICE, p("organization", "src.cu1"), True),
    (SERVICE, p("location", "Location/src.cu1"), True),
    (SERVICE, p("location", "src.cu2"), False),
    (SERVICE, p("service-type", "urn:svc|visit-30"), True),
    (SERVICE, p("service-type", "visit-30"), True),
    (SERVICE, p("service-type", "urn:other|visit-30"), False),
    (SCHEDULE, p("_id", "src.d1"), True),
    (SCHEDULE, p("actor", "Practitioner/src.d1"), True),
    (SCHEDULE, p("actor", "src.d1"), True),  # any type's id
    (SCHEDULE, p("actor", "Device/src.d1"), False),
    (SLOT, p("_id", "src.slot1"), True),
    (SLOT, p("schedule", "Schedule/src.d1"), True),
    (SLOT, p("schedule", "src.d1"), True),
    (SLOT, p("schedule", "Practitioner/src.d1"), False),
    (SLOT, p("schedule.actor", "Practitioner/src.d1"), True),
]


@pytest.mark.parametrize(
    ("resource", "param", "expected"), CASES, ids=[f"{r['resourceType']}-{q}" for r, q, _ in CASES]
)
def test_directory_params(resource, param, expected):
    assert matches(resource, [param], UTC) is expected


def test_each_directory_type_searches_what_its_connectors_declare():
    expected = {
        "Practitioner": {"_id", "name", "family", "given", "identifier"},
        "Device": {"_id", "device-name", "organization", "location"},
        "Location": {"_id", "name", "organization"},
        "Organization": {"_id", "name", "partof"},
        "HealthcareService": {"_id", "name", "organization", "location", "service-type"},
        "Schedule": {"_id", "actor"},
    }
    for resource_type, names in expected.items():
        assert set(KINDS[resource_type]) == names
    assert {"_id", "schedule"} <= set(KINDS["Slot"])


def test_missing_and_malformed_elements_match_nothing():
    bare = {"resourceType": "HealthcareService", "id": "x", "location": [{"display": "no ref"}]}
    for param in (p("name", "a"), p("location", "x"), p("organization", "x")):
        assert matches(bare, [param], UTC) is False
    assert (
        matches(
            {"resourceType": "Device", "id": "x", "deviceName": ["?"]}, [p("device-name", "?")], UTC
        )
        is False
    )
