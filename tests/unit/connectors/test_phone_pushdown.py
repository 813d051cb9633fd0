"""What a phone search asks of a vendor: Nyra's ``q`` is a substring of what it holds, so a
number goes as its last digits, found however Nyra holds it; Leyr is asked for the care
unit's list and filters it here (no I/O: the plans only)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from adapter.connectors.leyr.search import plan_patients
from adapter.connectors.nyra.search import plan
from adapter.fhir.search import SearchParam, SearchRequest

KOLKATA = ZoneInfo("Asia/Kolkata")


def q(name: str, *values: str, country: str | None = "IN") -> str | None:
    request = SearchRequest("Patient", (SearchParam(name, values),))
    found = plan(request, "nyr", KOLKATA, country)
    assert not found.exact  # every record the vendor gives is matched again here
    return found.query.get("q")


@pytest.mark.parametrize(
    "value",
    [
        "+91 98123 45678",
        " 91 98123 45678",  # an unencoded +
        "0091-98123-45678",
        "(098123) 45678",
        "9812345678",
        "phone|+91 98123 45678",
    ],
)
def test_a_phone_goes_to_nyra_as_its_last_digits(value):
    assert q("phone", value) == "2345678"
    assert q("phone", value, country=None) == "2345678"
    assert q("telecom", f"phone|{value.rpartition('|')[2]}") == "2345678"
    for held in ("9812345678", "+919812345678", "09812345678"):
        assert q("phone", value) in held


def test_a_telecom_without_system_asks_only_what_is_in_the_value_too():
    # It may match an email, which is compared as text: q must be in the value itself.
    assert q("telecom", "9812345678") == "2345678"
    assert q("telecom", "+91 98123 45678") == "45678"
    assert q("telecom", "98.12.34.56.78") == "78"
    assert q("telecom", "asha@example.in") == "asha@example.in"
    assert q("telecom", "email|asha@example.in") == "asha@example.in"


def test_other_q_parameters_are_unchanged():
    assert q("email", "asha@example.in") == "asha@example.in"
    assert q("name", "asha") == "asha"
    assert q("phone", "n/a") == "n/a"


def test_ored_phones_are_not_pushed_down():
    assert q("phone", "9812345678", "9812345679") is None


def test_leyr_does_not_push_a_phone_down():
    request = SearchRequest("Patient", (SearchParam("phone", ("+46 70 123 45 67",)),))
    found = plan_patients(request, "ley", ["L0_1", "L0_2"])
    assert (found.query, found.lookups, found.care_units) == ({}, [], ["L0_1", "L0_2"])
