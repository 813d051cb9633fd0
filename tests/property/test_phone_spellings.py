"""Phone searches: any way of writing a number a source holds finds it, in memory and in
what is pushed down to Nyra, and no way of writing another number does."""

from __future__ import annotations

from datetime import UTC

from hypothesis import given
from hypothesis import strategies as st
from strategies import held_phones, other_numbers, spelled_phones

from adapter.connectors.nyra.search import phone_query
from adapter.fhir.match import matches
from adapter.fhir.phones import compact, search_number
from adapter.fhir.search import SearchParam


def patient(phone: str) -> dict:
    return {
        "resourceType": "Patient",
        "telecom": [
            {"system": "email", "value": "a@example.in"},
            {"system": "phone", "value": phone},
        ],
    }


def finds(resource: dict, name: str, value: str, country: str | None) -> bool:
    return matches(resource, [SearchParam(name, (value,))], UTC, country)


@given(data=st.data(), held=held_phones(), known=st.booleans())
def test_any_spelling_of_a_held_number_finds_it(data, held, known):
    country, calling_code, nsn, value = held
    country = country if known else None
    spelled = data.draw(spelled_phones(calling_code, nsn), label="spelled")
    resource = patient(value)
    assert finds(resource, "phone", spelled, country)
    assert finds(resource, "phone", f"phone|{spelled}", country)
    assert finds(resource, "telecom", spelled, country)
    assert finds(resource, "telecom", f"phone|{spelled}", country)
    assert not finds(resource, "telecom", f"email|{spelled}", country)
    # Nyra's q is a substring of what it holds: pushed down, the search still finds it.
    assert phone_query(spelled, country) in value


@given(data=st.data(), held=held_phones(), known=st.booleans())
def test_no_spelling_of_another_number_finds_it(data, held, known):
    country, calling_code, nsn, value = held
    country = country if known else None
    other = data.draw(other_numbers(nsn), label="other")
    spelled = data.draw(spelled_phones(calling_code, other), label="spelled")
    assert not finds(patient(value), "phone", spelled, country)
    assert not finds(patient(value), "telecom", spelled, country)


@given(data=st.data(), held=held_phones(), known=st.booleans())
def test_a_number_written_any_way_and_kept_compact_is_found_by_any_spelling(data, held, known):
    """What a Nyra create sends (:func:`compact` of the number as the client wrote it) is
    the same number, is found by any spelling in memory and by Nyra's ``q``, and stays
    as it is when compacted again."""
    country, calling_code, nsn, _ = held
    country = country if known else None
    written = data.draw(spelled_phones(calling_code, nsn), label="written")
    kept = compact(search_number(written))
    assert compact(kept) == kept
    assert set(kept) <= set("+0123456789")
    spelled = data.draw(spelled_phones(calling_code, nsn), label="spelled")
    assert finds(patient(kept), "phone", spelled, country)
    assert phone_query(spelled, country) in kept
