"""How FHIR searches become vendor queries (no I/O: the plans only)."""

from zoneinfo import ZoneInfo

import pytest

from adapter.connectors.leyr.search import plan_appointments, plan_patients
from adapter.connectors.nyra.search import plan as nyra_plan
from adapter.fhir.search import SearchParam, SearchRequest, UnsupportedParameter
from mappings import encode_id
from mappings.common.fhir import identifier_system

STHLM = ZoneInfo("Europe/Stockholm")
KOLKATA = ZoneInfo("Asia/Kolkata")
CUS = ["L0_1", "L0_2"]


def req(kind, *params, count=20):
    return SearchRequest(kind, tuple(params), count)


def p(name, *values, modifier=None, prefix=None):
    return SearchParam(name, tuple(values), modifier, prefix)


def test_leyr_identifier_becomes_a_typed_lookup():
    plan = plan_patients(
        req("Patient", p("identifier", "urn:oid:1.2.752.129.2.1.3.1|191212121212")), "ley", CUS
    )
    assert plan.lookups == ["se_personal_number:191212121212"]
    emr = identifier_system("ley", "emr-id")
    assert plan_patients(req("Patient", p("identifier", f"{emr}|4711")), "ley", CUS).lookups == [
        "emr_id:4711"
    ]
    # an identifier with no system cannot be looked up: list and filter
    assert plan_patients(req("Patient", p("identifier", "4711")), "ley", CUS).lookups == []


def test_leyr_exact_names_go_native_others_are_filtered_here():
    plan = plan_patients(req("Patient", p("given", "Tolvan", modifier="exact")), "ley", CUS)
    assert plan.query == {"first_name": "Tolvan"}
    assert plan_patients(req("Patient", p("given", "Tol")), "ley", CUS).query == {}


def test_leyr_patient_reference_narrows_to_its_care_unit():
    ref = "Patient/" + encode_id("ley", "p-1", "L0_2")
    plan = plan_appointments(req("Appointment", p("patient", ref)), "ley", CUS, STHLM)
    assert plan.care_units == ["L0_2"]
    assert plan.query == {"patient_id": "p-1"}


def test_leyr_foreign_reference_matches_nothing():
    ref = "Patient/" + encode_id("other", "p-1", "L0_2")
    assert plan_appointments(req("Appointment", p("patient", ref)), "ley", CUS, STHLM).empty


def test_leyr_date_window_is_a_day_wider_in_local_dates():
    plan = plan_appointments(
        req(
            "Appointment",
            p("date", "2024-03-25", prefix="ge"),
            p("date", "2024-03-27", prefix="lt"),
        ),
        "ley",
        CUS,
        STHLM,
    )
    assert plan.query == {"start_date": "2024-03-24", "end_date": "2024-03-27"}


def test_nyra_name_uses_q_and_total_is_not_exact():
    plan = nyra_plan(req("Patient", p("name", "ravi")), "nyr", KOLKATA)
    assert plan.query == {"q": "ravi"}
    assert not plan.exact


def test_nyra_native_exact_filters_keep_the_vendor_total():
    ref = "Patient/" + encode_id("nyr", "p1")
    plan = nyra_plan(
        req("Appointment", p("patient", ref), p("status", "cancelled")), "nyr", KOLKATA
    )
    assert plan.query == {"patient_id": "p1", "status": "CANCELLED"}
    assert plan.exact


def test_nyra_booked_is_two_vendor_codes_so_it_is_filtered_here():
    plan = nyra_plan(req("Appointment", p("status", "booked")), "nyr", KOLKATA)
    assert "status" not in plan.query
    assert not plan.exact


def test_nyra_active_maps_to_patient_status():
    assert nyra_plan(req("Patient", p("active", "false")), "nyr", KOLKATA).query == {
        "status": "INACTIVE"
    }


def test_a_bad_date_is_refused():
    with pytest.raises(UnsupportedParameter):
        nyra_plan(req("Appointment", p("date", "soon", prefix="eq")), "nyr", KOLKATA)


STATUS = "http://hl7.org/fhir/appointmentstatus"


@pytest.mark.parametrize(
    ("values", "query", "empty"),
    [
        ((f"{STATUS}|cancelled",), {"status": "CANCELLED"}, False),
        (("cancelled",), {"status": "CANCELLED"}, False),
        (("|cancelled",), {}, True),  # a status always has its system: nothing matches
        (("urn:other|cancelled",), {}, True),
        ((f"{STATUS}|",), {}, False),  # any status: nothing to ask
        (("|cancelled", f"{STATUS}|noshow"), {"status": "NO_SHOW"}, False),
    ],
)
def test_nyra_status_with_and_without_its_system(values, query, empty):
    plan = nyra_plan(req("Appointment", p("status", *values)), "nyr", KOLKATA)
    assert (plan.query, plan.empty) == (query, empty)


def test_nyra_two_different_statuses_anded_find_nothing():
    plan = nyra_plan(
        req("Appointment", p("status", "cancelled"), p("status", "noshow")), "nyr", KOLKATA
    )
    assert plan.empty
    plan = nyra_plan(req("Patient", p("active", "true"), p("active", "false")), "nyr", KOLKATA)
    assert plan.empty


@pytest.mark.parametrize(
    ("value", "q"),
    [
        ("Anna  Nilsson", "Nilsson"),  # one word of the name: Nyra holds one space
        ("dr. lena", "lena"),
        ("Ravi,Kumar", "Kumar"),
        ("Ｒａｖｉ", "Ravi"),  # compatibility forms composed
    ],
)
def test_nyra_asks_for_the_longest_word_of_a_name(value, q):
    assert nyra_plan(req("Patient", p("name", value)), "nyr", KOLKATA).query == {"q": q}


def test_nyra_asks_for_an_exact_name_as_written():
    plan = nyra_plan(req("Patient", p("name", "Ravi  Kumar", modifier="exact")), "nyr", KOLKATA)
    assert plan.query == {"q": "Ravi  Kumar"}
