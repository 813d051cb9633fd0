import pytest
from fhir.resources.R4B.conceptmap import ConceptMap

import mappings
from mappings import leyr, nyra
from mappings.common.codes import CodeTable

TABLES = [*leyr.TABLES, *nyra.TABLES]


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_every_table_is_a_valid_r4_concept_map(table: CodeTable):
    concept_map = table.concept_map()
    ConceptMap.model_validate(concept_map)
    elements = concept_map["group"][0]["element"]
    assert [e["code"] for e in elements] == list(table.vendor_codes)
    assert table.evidence in concept_map["description"]


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_the_way_back_keeps_the_fhir_meaning(table: CodeTable):
    for code in table.vendor_codes:
        fhir = table.to_fhir(code)
        back = table.from_fhir(fhir)
        assert back is not None
        assert table.to_fhir(back) == fhir


def test_all_concept_maps_are_served_once():
    urls = [c["url"] for c in mappings.concept_maps()]
    assert len(urls) == len(set(urls)) == len(TABLES)


def test_a_table_refuses_a_vendor_code_listed_twice():
    with pytest.raises(ValueError, match="listed twice"):
        CodeTable("T", "t", "e", "urn:a", "urn:b", (("A", "x", "equal"), ("A", "y", "equal")))
