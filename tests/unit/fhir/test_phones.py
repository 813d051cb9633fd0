"""Phone numbers compared as numbers (adapter/fhir/phones.py), and the phone and telecom
search parameters that use them (adapter/fhir/match.py)."""

from __future__ import annotations

from datetime import UTC

import pytest

from adapter.fhir.match import matches
from adapter.fhir.phones import COUNTRIES, same_number, search_number, significant_digits
from adapter.fhir.search import SearchParam


@pytest.mark.parametrize(
    ("held", "wanted", "country", "same"),
    [
        # The source's country known: every value is read as an international number.
        ("9812345678", "+91 98123 45678", "IN", True),
        ("9812345678", "098123-45678", "IN", True),
        ("9812345678", "0091 (98123) 45678", "IN", True),
        ("9812345678", "98.123.456.78", "IN", True),
        ("+919812345678", "9812345678", "IN", True),
        ("+919812345678", "919812345678", "IN", True),
        ("9812345678", "+1 981 234 5678", "IN", False),  # another country's number
        ("9812345678", "9812345679", "IN", False),
        ("+46701234567", "070-123 45 67", "SE", True),
        ("+46701234567", "0046 70 123 45 67", "SE", True),
        ("+46701234567", "+46 (0)70 123 45 67", "SE", True),
        ("+46701234567", "+46 70 123 45 68", "SE", False),
        ("+46701234567", "0701234567", "IN", False),  # an Indian number, in India
        # Not known: national values match international ones by their significant number.
        ("9812345678", "+91 98123 45678", None, True),
        ("+919812345678", "9812345678", None, True),
        ("+919812345678", "098123 45678", None, True),
        ("+919812345678", "91 98123 45678", None, True),  # the calling code's digits
        ("+919812345678", "0091 98123 45678", None, True),  # 00: the international prefix
        ("9812345678", "(0) 98123-45678", None, True),  # two national: digits, trunk aside
        ("9812345678", "+1 981 234 5678", None, True),  # which country is not known
        ("+919812345678", "+1 981 234 5678", None, False),
        ("+919812345678", "98123 45679", None, False),
        ("9812345678", "98123456", None, False),
        # No number: digits, or (none at all) the whole text.
        ("ext. 12", "12", "IN", True),
        ("+999 12", "99912", None, True),
        ("unknown", "unknown", None, True),
        ("unknown", "none", None, False),
        ("unknown", "12", None, False),
    ],
)
def test_same_number(held, wanted, country, same):
    assert same_number(held, wanted, country) is same
    assert same_number(wanted, held, country) is same


def test_a_leading_space_before_a_digit_is_a_plus():
    assert search_number(" 919812345678") == "+919812345678"
    assert search_number(" 91 98123 45678") == "+91 98123 45678"
    assert search_number("9812345678") == "9812345678"
    assert search_number(" (91) 98123") == " (91) 98123"
    assert search_number("  91") == "  91"


def test_significant_digits_are_the_national_number():
    assert significant_digits("+91 98123 45678") == "9812345678"
    assert significant_digits(" 91 98123 45678") == "9812345678"
    assert significant_digits("098123-45678") == "9812345678"
    assert significant_digits("098123-45678", "IN") == "9812345678"
    assert significant_digits("0046 70-123 45 67") == "701234567"
    assert significant_digits("n/a") == ""


def test_the_countries_are_iso_codes():
    assert {"IN", "SE", "NO", "GB", "US"} <= COUNTRIES
    assert all(len(c) == 2 and c.isupper() for c in COUNTRIES)


PATIENT = {
    "resourceType": "Patient",
    "telecom": [
        {"system": "phone", "value": "9812345678"},
        {"system": "email", "value": "asha@example.in"},
        {"system": "fax", "value": "+91 40 1234 5678"},
    ],
}


def p(name: str, *values: str) -> SearchParam:
    return SearchParam(name, values)


@pytest.mark.parametrize(
    ("param", "country", "found"),
    [
        (p("phone", "+91 98123 45678"), "IN", True),
        (p("phone", " 91 98123 45678"), "IN", True),  # an unencoded +
        (p("phone", " 919812345678"), None, True),
        (p("phone", "phone|+919812345678"), "IN", True),
        (p("phone", "phone| 919812345678"), "IN", True),
        (p("phone", "phone|"), "IN", True),
        (p("phone", "|9812345678"), "IN", False),  # only points without a system
        (p("phone", "sms|9812345678"), "IN", False),
        (p("phone", "+1 981 234 5678"), "IN", False),
        (p("phone", "+1 981 234 5678"), None, True),
        (p("phone", "000", "098123 45678"), "IN", True),  # ORed
        (p("telecom", "098123 45678"), "IN", True),
        (p("telecom", "phone|098123 45678"), "IN", True),
        (p("telecom", "email|098123 45678"), "IN", False),
        (p("telecom", "asha@example.in"), "IN", True),  # emails stay exact
        (p("telecom", "ASHA@example.in"), "IN", False),
        (p("telecom", "email|asha@example.in"), "IN", True),
        (p("telecom", "+91 40 1234 5678"), "IN", True),  # a fax: as text
        (p("telecom", "04012345678"), "IN", False),
        (p("email", "9812345678"), "IN", False),
    ],
    ids=str,
)
def test_phone_and_telecom_parameters(param, country, found):
    assert matches(PATIENT, [param], UTC, country) is found
