"""Seeded sandbox data: deterministic, realistic per market, every status, any size."""

from __future__ import annotations

import re
from datetime import date, datetime

import orjson
import pytest
from harness import connect

from adapter.connectors.base import iterate
from adapter.fhir.search import SearchRequest
from adapter.sandbox import sandbox_for
from adapter.sandbox.data import (
    LEYR_STATUSES,
    NYRA_STATUSES,
    generate_leyr,
    generate_nyra,
)
from mappings.common.national_ids import SE_PERSONNUMMER, luhn_valid, national_system

ANCHOR = date(2026, 6, 1)


def test_same_seed_same_data_other_seed_other_data():
    assert generate_leyr(3, 40, ANCHOR) == generate_leyr(3, 40, ANCHOR)
    assert generate_nyra(3, 40, ANCHOR) == generate_nyra(3, 40, ANCHOR)
    assert generate_leyr(3, 40, ANCHOR).patients != generate_leyr(4, 40, ANCHOR).patients
    assert generate_nyra(3, 40, ANCHOR).patients != generate_nyra(4, 40, ANCHOR).patients


def test_leyr_personnummer_are_valid_and_agree_with_gender_and_birth_date():
    for p in generate_leyr(1, 500, ANCHOR).patients:
        pnr = p["external_id"]
        assert re.fullmatch(r"\d{12}", pnr)
        assert luhn_valid(pnr[2:]), pnr
        assert national_system(pnr, "se_personal_number") == SE_PERSONNUMMER
        assert pnr[:8] == p["birth_date"].replace("-", "")
        if p["gender"] in ("male", "female"):
            assert (int(pnr[-2]) % 2 == 1) == (p["gender"] == "male")


def test_nyra_phones_are_indian_mobiles():
    for p in generate_nyra(1, 500, ANCHOR).patients:
        assert re.fullmatch(r"(\+91)?[6-9]\d{9}", p["phone"]), p["phone"]


@pytest.mark.parametrize("patients", [1, 3, 200])
def test_every_status_and_both_past_and_future(patients):
    leyr, nyra = generate_leyr(2, patients, ANCHOR), generate_nyra(2, patients, ANCHOR)
    if patients >= 3:  # two appointments a patient: enough for every status
        assert {a["status"] for a in leyr.appointments} == set(LEYR_STATUSES)
        assert {a["status"] for a in nyra.appointments} == set(NYRA_STATUSES)
    leyr_days = {datetime.fromisoformat(a["start"]).date() for a in leyr.appointments}
    nyra_days = {datetime.fromisoformat(a["appointment_time"]).date() for a in nyra.appointments}
    for days in (leyr_days, nyra_days):
        if patients >= 200:
            assert min(days) < ANCHOR < max(days)
    # appointments point at patients that exist, in the same care unit / with that name
    leyr_people = {(p["care_unit_id"], p["id"]) for p in leyr.patients}
    assert all((a["care_unit_id"], a["patient_id"]) in leyr_people for a in leyr.appointments)
    nyra_people = {p["id"]: p["name"] for p in nyra.patients}
    assert all(nyra_people[a["patient_id"]] == a["patient_name"] for a in nyra.appointments)


def test_a_hundred_thousand_patients():
    data = generate_leyr(9, 100_000, ANCHOR)
    assert len(data.patients) == 100_000
    assert len({(p["care_unit_id"], p["id"]) for p in data.patients}) == 100_000


@pytest.mark.anyio
@pytest.mark.parametrize("vendor", ["leyr", "nyra"])
async def test_a_data_file_is_served_as_given(tmp_path, vendor):
    data = generate_leyr(5, 12, ANCHOR) if vendor == "leyr" else generate_nyra(5, 12, ANCHOR)
    body = {k: v for k, v in data.__dict__.items()}
    path = tmp_path / f"{vendor}.json"
    path.write_bytes(orjson.dumps(body))
    sandbox = sandbox_for(vendor, {"data": str(path)}, {})
    c = connect(vendor, sandbox)
    try:
        served = [r async for r in iterate(c, SearchRequest("Patient"))]
    finally:
        await c.aclose()
    assert len(served) == 12
    names = sorted(r["name"][0]["text"] for r in served)
    if vendor == "leyr":
        expected = sorted(f"{p['first_name']} {p['last_name']}" for p in data.patients)
    else:
        expected = sorted(p["name"] for p in data.patients)
    assert names == expected


def test_sandbox_settings_are_checked():
    with pytest.raises(ValueError, match="unknown sandbox key"):
        sandbox_for("nyra", {"sede": 7}, {})
    with pytest.raises(ValueError, match="unknown sandbox fault"):
        sandbox_for("nyra", {"faults": {"latncy": 1}}, {})
    with pytest.raises(ValueError, match="between 0 and 1"):
        sandbox_for("leyr", {"faults": {"error_rate": 2}}, {})
