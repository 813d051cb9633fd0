import pytest

from mappings.common.fhir import identifier_system
from mappings.common.national_ids import (
    HSA_ID,
    NHS_NUMBER,
    NO_D_NUMBER,
    NO_FODSELSNUMMER,
    SE_PERSONNUMMER,
    SE_SAMORDNINGSNUMMER,
    national_system,
)
from mappings.leyr.ids import external_identifier, typed_value


@pytest.mark.parametrize(
    ("value", "id_type", "system"),
    [
        ("191212121212", None, SE_PERSONNUMMER),  # Skatteverket's test person Tolvan
        ("19121212-1212", None, SE_PERSONNUMMER),
        ("197110021834", None, SE_PERSONNUMMER),  # Leyr's TakeCare sandbox patient
        ("191212721219", None, SE_SAMORDNINGSNUMMER),  # day 72 = 12 + 60
        ("191212721218", None, None),  # the same with a wrong check digit
        ("191212121213", None, None),  # bad Luhn digit: never claimed
        ("121212-1212", "se_personal_number", SE_PERSONNUMMER),
        ("1212121212", None, None),  # 10 digits: ambiguous without a typed prefix
        ("01010112345", None, None),  # 11 digits, wrong mod-11 digits
        ("15076500565", None, NO_FODSELSNUMMER),
        ("55076500565", None, None),  # D-number form of a wrong check
        ("943 476 5919", "nhs_number", NHS_NUMBER),
        ("9434765919", "nhs_number", NHS_NUMBER),
        ("9434765918", "nhs_number", None),
        ("SE2321000131-E000000012345", "hsa_id", HSA_ID),
        ("4711", "emr_id", None),
    ],
)
def test_national_system(value, id_type, system):
    assert national_system(value, id_type) == system


def test_d_number_gets_its_own_system():
    # 15076500565 with 40 added to the day, check digits recomputed.
    base = "550765005"
    k1 = 11 - sum(int(c) * w for c, w in zip(base, (3, 7, 6, 1, 8, 9, 4, 5, 2), strict=True)) % 11
    k1 = 0 if k1 == 11 else k1
    ten = base + str(k1)
    k2 = 11 - sum(int(c) * w for c, w in zip(ten, (5, 4, 3, 2, 7, 6, 5, 4, 3, 2), strict=True)) % 11
    k2 = 0 if k2 == 11 else k2
    assert national_system(f"{ten}{k2}") == NO_D_NUMBER


def test_bad_personnummer_is_kept_under_the_source_local_system():
    ident = external_identifier("191212121213", "leyr-x")
    assert ident["system"] == identifier_system("leyr-x", "external-id")
    assert ident["value"] == "191212121213"


def test_typed_prefix_is_kept_for_the_way_back():
    ident = external_identifier("se_personal_number:191212121212", "leyr-x")
    assert ident["system"] == SE_PERSONNUMMER
    assert ident["value"] == "191212121212"
    assert typed_value(ident) == "se_personal_number:191212121212"
