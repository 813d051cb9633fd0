"""SMART system scopes: parsing (v1 and v2), narrowing to what is held, checking."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.auth.scopes import allows, format_scopes, narrow, parse_scopes


def test_v2_and_v1_forms():
    assert parse_scopes("system/Patient.rs system/Appointment.cruds") == {
        "Patient": {"r", "s"},
        "Appointment": set("cruds"),
    }
    assert parse_scopes(["system/Patient.read", "system/*.write"]) == {
        "Patient": {"r", "s"},
        "*": {"c", "u", "d"},
    }
    assert parse_scopes("system/*.*") == {"*": set("cruds")}


@pytest.mark.parametrize(
    "bad", ["user/Patient.rs", "system/Patient.sr", "system/patient.rs", "system/Patient.", "x"]
)
def test_malformed_scopes_are_named(bad):
    with pytest.raises(ValueError, match="not a SMART system scope"):
        parse_scopes(bad)


def test_narrowing():
    held = {"Patient": {"r", "s"}, "Appointment": set("cruds")}
    assert narrow({"*": set("cruds")}, held) == held
    assert narrow({"Patient": set("cruds")}, held) == {"Patient": {"r", "s"}}
    assert narrow({"Slot": {"s"}}, held) == {}
    assert narrow({"Slot": {"s"}}, {"*": {"s"}}) == {"Slot": {"s"}}


def test_allows():
    grant = {"Patient": {"r"}, "*": {"s"}}
    assert allows(grant, "Patient", "read") and allows(grant, "Appointment", "search")
    assert not allows(grant, "Patient", "create") and not allows(grant, "Appointment", "read")


grants = st.dictionaries(
    st.sampled_from(["Patient", "Appointment", "Slot", "*"]),
    st.sets(st.sampled_from("cruds"), min_size=1),
    max_size=4,
)


@given(grants, grants)
def test_narrowing_never_gives_more_than_held(asked, held):
    for resource, perms in narrow(asked, held).items():
        for letter in perms:
            interaction = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}[
                letter
            ]
            assert allows(held, resource, interaction) or resource == "*"


@given(grants)
def test_format_then_parse_is_the_identity(grant):
    assert parse_scopes(format_scopes(grant)) == grant
