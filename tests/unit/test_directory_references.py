"""Leyr appointments that book equipment: a Device participant is the booked resource."""

from __future__ import annotations

import pytest

from mappings import InvalidResource, LeyrContext, LeyrDirectory, leyr

CTX = LeyrContext("leyr-demo", "Europe/Stockholm")
RECORD = {"id": "a-1", "status": "booked", "care_unit_id": "L0_1", "resource_id": "room-1"}


def appointment(*actors: str) -> dict:
    members = [{"actor": {"reference": ref}, "status": "accepted"} for ref in actors]
    return {"resourceType": "Appointment", "status": "booked", "participant": members}


def test_a_device_participant_is_the_resource():
    resource = appointment(CTX.ref("Device", "room-1", "L0_1"), CTX.ref("Location", "L0_1"))
    record = leyr.from_fhir_appointment(resource, CTX)
    assert record == {"care_unit_id": "L0_1", "status": "booked", "resource_id": "room-1"}


def test_a_practitioner_wins_over_a_device():
    resource = appointment(
        CTX.ref("Device", "room-1", "L0_1"),
        CTX.ref("Practitioner", "doctor-1", "L0_1"),
        CTX.ref("Location", "L0_1"),
    )
    assert leyr.from_fhir_appointment(resource, CTX)["resource_id"] == "doctor-1"


def test_a_device_of_another_care_unit_is_refused():
    resource = appointment(CTX.ref("Device", "room-1", "L0_2"), CTX.ref("Location", "L0_1"))
    with pytest.raises(InvalidResource) as caught:
        leyr.from_fhir_appointment(resource, CTX)
    assert caught.value.expression == "Appointment.participant[0].actor"


def test_equipment_is_a_device_only_where_the_directory_says_so():
    named = LeyrContext(
        CTX.source,
        CTX.timezone,
        LeyrDirectory.from_records(
            [{"id": "L0_1", "name": "Vårdcentralen Söder"}],
            [{"id": "room-1", "name": "Rum 1", "type": "equipment", "care_unit_id": "L0_2"}],
            [],
        ),
    )
    # The directory knows room-1 of L0_2, not of L0_1: this one stays a Practitioner.
    members = leyr.to_fhir_appointment(RECORD, named)["participant"]
    assert [m["actor"]["reference"].partition("/")[0] for m in members] == [
        "Practitioner",
        "Location",
    ]
    assert "display" not in members[0]["actor"]
    assert members[1]["actor"]["display"] == "Vårdcentralen Söder"
    other = {**RECORD, "care_unit_id": "L0_2"}
    device = leyr.to_fhir_appointment(other, named)["participant"][0]["actor"]
    assert device == {"reference": named.ref("Device", "room-1", "L0_2"), "display": "Rum 1"}
    assert leyr.from_fhir_appointment(leyr.to_fhir_appointment(other, named), named) == other


def test_contexts_built_as_before_still_work_and_compare_without_their_directory():
    plain = LeyrContext("leyr-demo", "Europe/Stockholm")
    assert plain.directory == LeyrDirectory()
    named = LeyrContext("leyr-demo", "Europe/Stockholm", LeyrDirectory({"L0_1": "Söder"}))
    assert plain == named and hash(plain) == hash(named)
    assert leyr.to_fhir_appointment(RECORD, plain) == leyr.to_fhir_appointment(
        RECORD, LeyrContext("leyr-demo", "Europe/Stockholm")
    )
