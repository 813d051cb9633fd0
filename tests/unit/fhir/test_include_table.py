"""The include table, what the declarations make available, how ``_include`` and
``_revinclude`` are parsed, and how a cursor carries them."""

from __future__ import annotations

import pytest

from adapter.fhir.cursor import CursorCodec
from adapter.fhir.declared import Capabilities, Declared, ResourceCapability
from adapter.fhir.includes import (
    INCLUDES,
    advertised_includes,
    include_forms,
    included,
    referenced,
    relative,
    reverse_include,
    revinclude_forms,
)
from adapter.fhir.outcome import FhirError
from adapter.fhir.params import parse_search
from adapter.fhir.search import Position, SearchParam, SearchRequest, SearchState

EVERYTHING = frozenset({"Patient", "Practitioner", "Device", "Location", "Schedule"})

APPOINTMENT = {
    "resourceType": "Appointment",
    "id": "s.a1",
    "participant": [
        {"actor": {"reference": "Patient/s.p1"}},
        {"actor": {"reference": "Practitioner/s.d1"}},
        {"actor": {"reference": "Location/s.l1"}},
        {"actor": {"display": "no reference"}},
    ],
}
OTHER = {
    "resourceType": "Appointment",
    "id": "s.a2",
    "participant": [
        {"actor": {"reference": "Patient/s.p1"}},  # the same patient again
        {"actor": {"reference": "Device/s.e1"}},
        {"actor": {"reference": "https://elsewhere/fhir/Patient/x"}},
    ],
}


# -- the table ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "name", "targets"),
    [
        ("Appointment:patient", "Appointment:patient", ("Patient",)),
        ("Appointment:practitioner", "Appointment:practitioner", ("Practitioner",)),
        ("Appointment:location", "Appointment:location", ("Location",)),
        (
            "Appointment:actor",
            "Appointment:actor",
            ("Patient", "Practitioner", "Device", "Location"),
        ),
        ("Appointment:actor:Practitioner", "Appointment:actor", ("Practitioner",)),
        ("Slot:schedule", "Slot:schedule", ("Schedule",)),
        ("Schedule:actor", "Schedule:actor", ("Practitioner", "Device")),
        ("Schedule:actor:Device", "Schedule:actor", ("Device",)),
    ],
)
def test_known_includes_and_their_targets(value, name, targets):
    found = included(value)
    assert found is not None
    assert (found[0].name, found[1]) == (name, targets)


@pytest.mark.parametrize(
    "value",
    [
        "Appointment:slot",
        "Appointment:actor:Organization",  # not a type actor references here
        "Appointment:practitioner:Device",
        "Patient:organization",
        "Appointment",
        "*",
        "",
    ],
)
def test_unknown_includes(value):
    assert included(value) is None


def test_revincludes_follow_back_only_patient_and_practitioner():
    assert reverse_include("Appointment:patient", "Patient") is INCLUDES["Appointment:patient"]
    assert reverse_include("Appointment:patient:Patient", "Patient") is not None
    assert (
        reverse_include("Appointment:practitioner", "Practitioner")
        is INCLUDES["Appointment:practitioner"]
    )
    assert reverse_include("Appointment:patient", "Practitioner") is None
    assert reverse_include("Appointment:actor", "Patient") is None
    assert reverse_include("Slot:schedule", "Schedule") is None


def test_include_forms_need_a_readable_target():
    forms = include_forms("Appointment", frozenset({"Patient"}))
    assert forms == {
        "Appointment:patient",
        "Appointment:patient:Patient",
        "Appointment:actor",
        "Appointment:actor:Patient",
    }
    assert advertised_includes(forms) == [
        "Appointment:actor",
        "Appointment:actor:Patient",
        "Appointment:patient",
    ]
    assert include_forms("Slot", frozenset({"Patient"})) == set()
    assert include_forms("Slot", EVERYTHING) == {"Slot:schedule", "Slot:schedule:Schedule"}
    assert include_forms("Patient", EVERYTHING) == set()


def test_revinclude_forms_need_a_source_searching_by_the_parameter():
    def searchable(resource_type: str, param: str) -> bool:
        return (resource_type, param) == ("Appointment", "patient")

    assert revinclude_forms("Patient", searchable) == {
        "Appointment:patient",
        "Appointment:patient:Patient",
    }
    assert revinclude_forms("Practitioner", searchable) == set()
    assert revinclude_forms("Appointment", searchable) == set()


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/s.p1", ("Patient", "s.p1")),
        ("Patient/s.p1/_history/2", ("Patient", "s.p1")),
        ("https://elsewhere/fhir/Patient/x", None),
        ("urn:uuid:1234", None),
        ("#contained", None),
        ("Patient/", None),
        ("Patient", None),
    ],
)
def test_only_relative_references_are_read(reference, expected):
    assert relative(reference) == expected


def test_referenced_resources_are_each_read_once_in_order_and_not_the_pages_own():
    values = ["Appointment:actor"]
    refs = referenced([APPOINTMENT, OTHER], values, EVERYTHING)
    assert list(refs) == ["Patient/s.p1", "Practitioner/s.d1", "Location/s.l1", "Device/s.e1"]
    assert refs["Device/s.e1"] == ("Device", "s.e1")
    # typed: only that type; unreadable types and what the page holds are left out
    assert list(referenced([APPOINTMENT, OTHER], ["Appointment:actor:Patient"], EVERYTHING)) == [
        "Patient/s.p1"
    ]
    assert list(referenced([APPOINTMENT], values, frozenset({"Patient"}))) == ["Patient/s.p1"]
    assert list(referenced([APPOINTMENT], values, EVERYTHING, skip={"Patient/s.p1"})) == [
        "Practitioner/s.d1",
        "Location/s.l1",
    ]
    # an include of another type, or an unknown one, reads nothing
    assert referenced([APPOINTMENT], ["Slot:schedule", "Appointment:slot"], EVERYTHING) == {}


def test_schedule_and_slot_references():
    slot = {"resourceType": "Slot", "id": "s.x", "schedule": {"reference": "Schedule/s.d1"}}
    schedule = {
        "resourceType": "Schedule",
        "id": "s.d1",
        "actor": [{"reference": "Practitioner/s.d1"}, {"reference": "Device/s.e1"}],
    }
    assert list(referenced([slot], ["Slot:schedule"], EVERYTHING)) == ["Schedule/s.d1"]
    assert list(referenced([schedule], ["Schedule:actor:Device"], EVERYTHING)) == ["Device/s.e1"]


# -- what the declarations make available ---------------------------------------------------


def _declared(*, nyra_appointments: frozenset[str] = frozenset({"patient"})) -> Declared:
    return Declared(
        {
            "a": Capabilities(
                {
                    "Patient": ResourceCapability(frozenset({"_id"})),
                    "Appointment": ResourceCapability(frozenset({"patient", "practitioner"})),
                    "Practitioner": ResourceCapability(frozenset({"_id"})),
                }
            ),
            "b": Capabilities(
                {
                    "Patient": ResourceCapability(frozenset({"_id"})),
                    "Appointment": ResourceCapability(nyra_appointments),
                    # search only: no source reads Schedules
                    "Schedule": ResourceCapability(frozenset({"_id"}), frozenset({"search-type"})),
                    "Slot": ResourceCapability(frozenset({"_id"})),
                }
            ),
        },
        read_only=frozenset({"b"}),
    )


def test_declared_includes_follow_what_the_sources_read_and_search():
    declared = _declared()
    assert declared.readable == {"Patient", "Appointment", "Practitioner", "Slot"}
    assert declared.advertised_includes("Appointment") == [
        "Appointment:actor",
        "Appointment:actor:Patient",
        "Appointment:actor:Practitioner",
        "Appointment:patient",
        "Appointment:practitioner",
    ]
    assert "Appointment:practitioner:Practitioner" in declared.includes("Appointment")
    assert declared.includes("Slot") == set()  # no source reads Schedules
    assert declared.advertised_revincludes("Patient") == ["Appointment:patient"]
    assert declared.advertised_revincludes("Practitioner") == ["Appointment:practitioner"]
    assert declared.includes("Unknown") == set() == declared.revincludes("Unknown")


def test_a_declared_include_is_taken_but_not_needed():
    legacy = Declared(
        {
            "a": Capabilities(
                {
                    "Patient": ResourceCapability(frozenset({"_id"})),
                    "Appointment": ResourceCapability(
                        frozenset({"_id"}), includes=frozenset({"Appointment:patient"})
                    ),
                }
            )
        }
    )
    assert "Appointment:patient" in legacy.includes("Appointment")
    assert legacy.revincludes("Patient") == set()  # no source searches Appointment by patient


# -- parsing ------------------------------------------------------------------------------


def parse(items, resource_type="Appointment", *, strict=False, declared=None):
    declared = declared or _declared()
    return parse_search(
        resource_type,
        items,
        supported=declared.supported_params(resource_type),
        includes=declared.includes(resource_type),
        revincludes=declared.revincludes(resource_type),
        sources=declared.sources,
        strict=strict,
        default_count=20,
        max_count=100,
    )


def test_includes_are_parsed_once_each_and_echoed():
    parsed = parse(
        [
            ("_include", "Appointment:patient"),
            ("_include", "Appointment:actor:Practitioner"),
            ("_include", "Appointment:patient"),
        ]
    )
    assert parsed.includes == ("Appointment:patient", "Appointment:actor:Practitioner")
    assert parsed.used == [
        ("_include", "Appointment:patient"),
        ("_include", "Appointment:actor:Practitioner"),
    ]


def test_revincludes_are_parsed_and_echoed():
    parsed = parse([("_revinclude", "Appointment:patient")], "Patient")
    assert parsed.revincludes == ("Appointment:patient",)
    assert parsed.used == [("_revinclude", "Appointment:patient")]


@pytest.mark.parametrize(
    ("resource_type", "key", "value"),
    [
        ("Appointment", "_include:iterate", "Appointment:patient"),
        ("Appointment", "_include", "Appointment:location"),  # no source reads Locations
        ("Appointment", "_include", "Patient:organization"),
        ("Appointment", "_revinclude", "Appointment:patient"),  # not on an Appointment search
        ("Patient", "_include", "Appointment:patient"),
        ("Patient", "_revinclude:iterate", "Appointment:patient"),
        ("Patient", "_revinclude", "Appointment:actor"),
    ],
)
def test_includes_not_taken_are_ignored_or_under_strict_a_400(resource_type, key, value):
    lenient = parse([(key, value)], resource_type)
    assert lenient.includes == () == lenient.revincludes and lenient.used == []
    with pytest.raises(FhirError) as caught:
        parse([(key, value)], resource_type, strict=True)
    (issue,) = caught.value.issues
    assert caught.value.status == 400 and issue.code == "not-supported"
    assert issue.expression == (key,)
    if key.endswith(":iterate"):
        assert "iterate" in issue.diagnostics


def test_strict_names_the_includes_a_search_takes():
    with pytest.raises(FhirError) as caught:
        parse([("_revinclude", "Appointment:actor")], "Patient", strict=True)
    assert "Appointment:patient" in caught.value.issues[0].diagnostics
    with pytest.raises(FhirError) as caught:
        parse([("_include", "Patient:link")], "Patient", strict=True)
    assert caught.value.issues[0].diagnostics.endswith("takes none")


# -- the cursor ---------------------------------------------------------------------------


def test_a_cursor_carries_includes_and_revincludes():
    codec = CursorCodec(b"k" * 32)
    state = SearchState(
        SearchRequest("Patient", (SearchParam("_id", ("a",)),), count=5),
        order=("a", "b"),
        shares=(3, 2),
        lanes=2,
        includes=(),
        revincludes=("Appointment:patient",),
        client="c",
        position=Position({"a": "x"}, frozenset({"b"}), None, first=False),
    )
    back = codec.decode_state(codec.encode_state(state))
    assert back.revincludes == ("Appointment:patient",) and back.includes == ()
    moved = back.moved_to(Position())
    assert moved.revincludes == state.revincludes and moved.previous == back.position


def test_a_cursor_made_before_revincludes_still_decodes():
    codec = CursorCodec(b"k" * 32)
    state = SearchState(SearchRequest("Appointment"), ("a",), (20,), 1, ("Appointment:patient",))
    data = codec.decode(codec.encode_state(state))
    del data["rev"]
    back = codec.decode_state(codec.encode(data))
    assert back.includes == ("Appointment:patient",) and back.revincludes == ()
