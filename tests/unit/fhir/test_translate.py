"""The code tables as ConceptMaps, without HTTP: search, $translate and the
CapabilityStatement entry (:mod:`adapter.fhir.terminology`)."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.parameters import Parameters
from hypothesis import given
from hypothesis import strategies as st

import mappings
from adapter.fhir.cursor import CursorCodec
from adapter.fhir.outcome import FhirError
from adapter.fhir.terminology import (
    CONCEPT_MAPS,
    SEARCH_PARAMS,
    Coding,
    TranslateRequest,
    concept_map,
    concept_map_capability,
    parse_concept_map_search,
    search_concept_maps,
    translate,
    translate_body,
    translate_query,
)
from mappings import leyr, nyra
from mappings.common.fhir import NAMESPACE

TABLES = [*leyr.TABLES, *nyra.TABLES]
ROWS = [(table, row) for table in TABLES for row in table.rows]
CODEC = CursorCodec(b"k" * 32)


def found(answer: dict) -> list[tuple[str | None, str, str]]:
    """(system, code, equivalence) of each match, after checking the answer is R4."""
    Parameters.model_validate(answer)
    out = []
    for p in answer["parameter"][2:]:
        parts = {part["name"]: part for part in p["part"]}
        coding = parts["concept"]["valueCoding"]
        out.append((coding.get("system"), coding["code"], parts["equivalence"]["valueCode"]))
    return out


def test_every_table_is_served_once_as_it_is_made():
    assert list(CONCEPT_MAPS) == mappings.concept_maps()
    assert len({m["id"] for m in CONCEPT_MAPS}) == len(TABLES)
    assert concept_map("leyrgender")["name"] == "LeyrGender"
    with pytest.raises(FhirError) as caught:
        concept_map("x" * 500)
    assert caught.value.status == 404
    assert len(caught.value.issues[0].diagnostics) < 100  # an id is quoted shortened


@given(
    st.sampled_from(ROWS),
    st.sampled_from(["code", "coding", "url", "instance"]),
)
def test_every_row_translates_forward_and_back(table_row, form):
    table, (vendor, fhir, equivalence) = table_row
    url = f"{NAMESPACE}/ConceptMap/{table.name}"
    fhir_id = None
    if form == "code":
        request = translate_query([("code", vendor), ("system", table.vendor_system)], strict=True)
    elif form == "coding":
        request = translate_query([("coding", f"{table.vendor_system}|{vendor}")], strict=True)
    elif form == "url":
        request = translate_query([("code", vendor), ("url", url)], strict=True)
    else:
        request, fhir_id = translate_query([("code", vendor)], strict=True), table.name.lower()
    forward = translate(request, fhir_id)
    assert forward["parameter"][0] == {"name": "result", "valueBoolean": True}
    assert (table.fhir_system, fhir, equivalence) in found(forward)

    back = translate(
        translate_query(
            [("code", fhir), ("system", table.fhir_system), ("reverse", "true")], strict=True
        )
    )
    vendors = [(system, code) for system, code, _ in found(back)]
    preferred = table.from_fhir(fhir)
    assert (table.vendor_system, preferred) in vendors
    # Of this table's codes, the preferred one comes first.
    ours = [code for system, code in vendors if system == table.vendor_system]
    assert ours[0] == preferred and vendor in ours


@pytest.mark.parametrize(
    "there,back",
    [
        ("wider", "narrower"),
        ("narrower", "wider"),
        ("subsumes", "specializes"),
        ("specializes", "subsumes"),
        ("equal", "equal"),
        ("inexact", "inexact"),
        ("relatedto", "relatedto"),
    ],
)
def test_reverse_reads_the_equivalence_the_other_way(there, back):
    given_map = {
        "resourceType": "ConceptMap",
        "group": [
            {
                "source": "urn:a",
                "target": "urn:b",
                "element": [{"code": "1", "target": [{"code": "2", "equivalence": there}]}],
            }
        ],
    }
    answer = translate(TranslateRequest((Coding("2"),), concept_map=given_map, reverse=True))
    assert found(answer) == [("urn:a", "1", back)]


def test_messages_say_what_was_found_or_why_not():
    def said(*items: tuple[str, str]) -> str:
        answer = translate(translate_query(list(items), strict=False))
        Parameters.model_validate(answer)
        return answer["parameter"][1]["valueString"]

    gender = "https://fhir-adapter.dev/fhir/CodeSystem/nyra-gender"
    assert said(("code", "MALE"), ("system", gender)) == (
        f"1 match for code 'MALE' of '{gender}' in ConceptMap NyraGender: "
        "male of http://hl7.org/fhir/administrative-gender (equal)."
    )
    assert said(("code", "X"), ("system", gender)) == (
        f"No mapping of code 'X' of '{gender}' in ConceptMap NyraGender."
    )
    assert said(("code", "X\x00" * 50), ("system", gender)).count("\\x00") < 40  # shortened
    assert "does not map" in said(
        ("code", "MALE"),
        ("url", "https://fhir-adapter.dev/fhir/ConceptMap/LeyrGender"),
        ("source", "urn:other"),
    )


def test_a_code_without_system_is_refused_only_when_several_maps_could_take_it():
    with pytest.raises(FhirError) as caught:
        translate(translate_query([("code", "booked")], strict=False))
    assert caught.value.status == 400 and caught.value.issues[0].expression == ("system",)
    assert "6 ConceptMaps" in caught.value.issues[0].diagnostics
    # Narrowed to one map by its target system: no doubt left.
    narrowed = translate_query(
        [
            ("code", "CONSULTATION"),
            ("targetsystem", "http://terminology.hl7.org/CodeSystem/v2-0276"),
        ],
        strict=False,
    )
    assert found(translate(narrowed)) == [
        ("http://terminology.hl7.org/CodeSystem/v2-0276", "ROUTINE", "inexact")
    ]


def test_body_inputs_take_their_r4_types():
    request = translate_body(
        b'{"resourceType": "Parameters", "parameter": ['
        b'{"name": "coding", "valueCoding": {"system": "urn:s", "code": "c", "version": "2"}},'
        b'{"name": "reverse", "valueBoolean": false},'
        b'{"name": "targetsystem", "valueCanonical": "urn:t"},'
        b'{"name": "dependency", "part": []}]}',
        strict=False,
    )
    assert request.codings == (Coding("c", "urn:s", "2"),)
    assert request.given_as == "coding" and request.target_system == "urn:t"
    assert request.reverse is False
    with pytest.raises(FhirError) as caught:
        translate_body(
            b'{"resourceType": "Parameters", "parameter": [{"name": "dependency", "part": []}]}',
            strict=True,
        )
    assert caught.value.issues[0].expression == ("dependency",)


def test_search_values_split_at_unescaped_commas():
    query = parse_concept_map_search(
        [("name:exact", "a\\,b,c")], strict=True, default_count=20, max_count=100
    )
    assert query.params[0].values == ("a,b", "c")


def test_search_bounds():
    with pytest.raises(FhirError) as caught:
        parse_concept_map_search(
            [("_id", ",".join(["x"] * 101))], strict=False, default_count=20, max_count=100
        )
    assert caught.value.issues[0].code == "too-costly"
    with pytest.raises(FhirError):
        parse_concept_map_search(
            [("_id", "x")] * 101, strict=False, default_count=20, max_count=100
        )
    capped = parse_concept_map_search(
        [("_count", "5000")], strict=False, default_count=20, max_count=3
    )
    assert capped.count == 3 and capped.self_query == "_count=3"


def test_a_cursor_belongs_to_its_client():
    first = search_concept_maps(
        [("_count", "2")], strict=False, default_count=20, max_count=100, cursors=CODEC, client="a"
    )
    assert first.next_cursor is not None
    mine = search_concept_maps(
        [("_cursor", first.next_cursor)],
        strict=False,
        default_count=20,
        max_count=100,
        cursors=CODEC,
        client="a",
    )
    assert [m["id"] for m in mine.matches] == [m["id"] for m in CONCEPT_MAPS[2:4]]
    with pytest.raises(FhirError) as caught:
        search_concept_maps(
            [("_cursor", first.next_cursor)],
            strict=False,
            default_count=20,
            max_count=100,
            cursors=CODEC,
            client="b",
        )
    assert caught.value.issues[0].expression == ("_cursor",)


def test_the_capability_entry_lists_each_search_parameter_with_its_r4_definition():
    entry = concept_map_capability()
    listed = {p["name"]: p for p in entry["searchParam"]}
    assert set(listed) == set(SEARCH_PARAMS)
    for name, param in listed.items():
        expected = "Resource-id" if name == "_id" else f"ConceptMap-{name}"
        assert param["definition"] == f"http://hl7.org/fhir/SearchParameter/{expected}"
    assert {i["code"] for i in entry["interaction"]} == {"read", "search-type"}
    assert entry["operation"][0]["name"] == "translate"
