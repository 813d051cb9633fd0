"""The Leyr simulator keeps the contract: headers, bare arrays, typed ids, upsert, PATCH."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from adapter.sandbox import LeyrSandbox

pytestmark = pytest.mark.anyio
STHLM = ZoneInfo("Europe/Stockholm")
NOW = 1_800_000_000.0  # 2027-01-15


@pytest.fixture
def sandbox():
    return LeyrSandbox(seed=5, patients=60, clock=lambda: NOW)


@pytest.fixture
async def http(sandbox):
    auth = {
        "x-leyr-client-id": sandbox.client_id,
        "x-leyr-client-secret": sandbox.client_secret,
    }
    transport = sandbox.transport()
    async with httpx.AsyncClient(transport=transport, base_url="http://leyr", headers=auth) as c:
        yield c


CU = "/emrs/webdoc/care-units/L0_1"
CU2 = "/emrs/webdoc/care-units/L0_2"


def codes(response: httpx.Response) -> list[str]:
    return [e["error_code"] for e in response.json()["errors"]]


async def test_wrong_client_is_401_unauthorized(http):
    r = await http.get(f"{CU}/patients", headers={"x-leyr-client-secret": "nope"})
    assert r.status_code == 401
    body = r.json()
    assert body["code"] == "UNAUTHORIZED" and body["status"] == 401
    assert body["errors"][0]["details"] == "Application with the provided client ID was not found."
    assert set(body) == {"code", "type", "title", "status", "detail", "instance", "errors"}


async def test_lists_are_bare_arrays(http, sandbox):
    units = (await http.get("/emrs/webdoc/care-units")).json()
    assert [u["id"] for u in units] == ["L0_1", "L0_2"]
    patients = (await http.get(f"{CU}/patients")).json()
    assert isinstance(patients, list) and len(patients) == 30
    assert all(p["care_unit_id"] == "L0_1" for p in patients)


async def test_unknown_care_unit_is_400_invalid_care_unit_id(http):
    r = await http.get("/emrs/webdoc/care-units/NOPE/patients")
    assert r.status_code == 400 and codes(r) == ["INVALID_CARE_UNIT_ID"]


async def test_name_filters(http):
    first = (await http.get(f"{CU}/patients")).json()[0]
    found = (await http.get(f"{CU}/patients", params={"last_name": first["last_name"]})).json()
    assert first in found and all(p["last_name"] == first["last_name"] for p in found)


async def test_typed_ids(http, sandbox):
    someone = (await http.get(f"{CU}/patients")).json()[3]
    for typed in (
        someone["emr_id"],
        f"emr_id:{someone['emr_id']}",
        someone["id"],
        f"se_personal_number:{someone['external_id']}",
    ):
        assert (await http.get(f"{CU}/patients/{typed}")).json() == someone
    r = await http.get(f"{CU}/patients/nhs_number:9434765919")
    assert r.status_code == 400 and codes(r) == ["PATIENT_ID_LOOKUP_TYPE_NOT_SUPPORTED"]
    r = await http.get(f"{CU}/patients/hsa_id:SE2321000131-E000000012345")
    assert r.status_code == 400 and codes(r) == ["INVALID_PATIENT_ID_TYPE"]
    r = await http.get(f"{CU}/patients/emr_id:0")
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"


async def test_create_is_an_upsert_by_identity(http, sandbox):
    body = {
        "first_name": "Tolvan",
        "last_name": "Tolvansson",
        "external_id": "191212121212",
        "phones": ["+46001234567"],
        "gender": "male",
        "birth_date": "1912-12-12",
    }
    first = await http.post(f"{CU}/patients", json=body)
    assert first.status_code == 201
    created = first.json()
    assert created["care_unit_id"] == "L0_1" and created["first_name"] == "Tolvan"
    again = await http.post(f"{CU}/patients", json={**body, "first_name": "Tolvan2"})
    assert again.status_code == 200 and again.json() == created
    assert (await http.get(f"{CU}/patients/{created['id']}")).json() == created


async def test_create_patient_validation_names_every_problem(http):
    r = await http.post(f"{CU}/patients", json={"gender": "robot", "birth_date": "12/12/1912"})
    assert r.status_code == 400
    assert sorted(codes(r)) == [
        "BAD_INPUT",
        "BAD_INPUT",
        "MISSING_REQUIRED_FIELD",
        "MISSING_REQUIRED_FIELD",
    ]
    assert {e["path"] for e in r.json()["errors"]} == {
        "first_name",
        "last_name",
        "gender",
        "birth_date",
    }


def _monday_after(now: float) -> datetime:
    day = datetime.fromtimestamp(now, STHLM).date() + timedelta(days=1)
    while day.weekday() != 0:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 10, 0, tzinfo=STHLM)


async def _booking(http, cu=CU):
    patient = (await http.get(f"{cu}/patients")).json()[0]
    resource = (await http.get(f"{cu}/resources")).json()[0]
    service = (await http.get(f"{cu}/healthcare-services")).json()[0]
    return {
        "patient_id": patient["id"],
        "resource_id": resource["id"],
        "healthcare_service_id": service["id"],
        "start": _monday_after(NOW).isoformat(),
        "comment": "First consultation",
    }, service


async def test_booking_returns_a_list_and_takes_the_slot(http):
    body, service = await _booking(http)
    r = await http.post(f"{CU}/appointments", json=body)
    assert r.status_code == 201
    made = r.json()
    assert isinstance(made, list) and len(made) == 1
    appointment = made[0]
    assert appointment["status"] == "booked"
    length = datetime.fromisoformat(appointment["end"]) - datetime.fromisoformat(
        appointment["start"]
    )
    assert length == timedelta(minutes=service["duration_minutes"])
    clash = await http.post(f"{CU}/appointments", json=body)
    assert clash.status_code == 400 and codes(clash) == ["NO_TIMESLOTS_AVAILABLE"]
    got = (await http.get(f"{CU}/appointments/{appointment['id']}")).json()
    assert got == appointment


async def test_timeslots_leave_out_what_is_booked(http):
    body, service = await _booking(http)
    day = body["start"][:10]
    params = {
        "resource_id": body["resource_id"],
        "healthcare_service_id": service["id"],
        "start_date": day,
        "end_date": day,
    }
    before = (await http.get(f"{CU}/timeslots", params=params)).json()
    assert body["start"] in {s["start"] for s in before}
    await http.post(f"{CU}/appointments", json=body)
    after = (await http.get(f"{CU}/timeslots", params=params)).json()
    assert body["start"] not in {s["start"] for s in after}
    assert len(after) == len(before) - 1


@pytest.mark.parametrize(
    "change,code",
    [
        ({"patient_id": "nobody"}, "INVALID_PATIENT_ID"),
        ({"resource_id": "nobody"}, "INVALID_RESOURCE_ID"),
        ({"healthcare_service_id": "nothing"}, "INVALID_HEALTHCARE_SERVICE_ID"),
        ({"comment": "x" * 501}, "INVALID_COMMENT_LENGTH"),
        ({"start": None}, "MISSING_REQUIRED_FIELD"),
        ({"start": "2020-01-06T10:00:00+01:00"}, "NO_TIMESLOTS_AVAILABLE"),
    ],
)
async def test_bad_bookings(http, change, code):
    body, _ = await _booking(http)
    r = await http.post(f"{CU}/appointments", json={**body, **change})
    assert r.status_code == 400 and codes(r) == [code]


async def test_move_and_cancel(http):
    body, _ = await _booking(http)
    made = (await http.post(f"{CU}/appointments", json=body)).json()[0]
    later = (datetime.fromisoformat(made["start"]) + timedelta(hours=2)).isoformat()
    moved = (await http.patch(f"{CU}/appointments/{made['id']}", json={"start": later})).json()
    assert moved["start"] == later and moved["id"] == made["id"]
    assert datetime.fromisoformat(moved["end"]) - datetime.fromisoformat(moved["start"]) == (
        datetime.fromisoformat(made["end"]) - datetime.fromisoformat(made["start"])
    )
    r = await http.patch(f"{CU}/appointments/{made['id']}", json={"patient_id": "x"})
    assert r.status_code == 400 and codes(r) == ["NOT_SUPPORTED"]
    cancelled = (
        await http.patch(f"{CU}/appointments/{made['id']}", json={"status": "cancelled"})
    ).json()
    assert cancelled["status"] == "cancelled" and cancelled["id"] == made["id"]


async def test_a_cancel_that_needs_confirmation_gets_a_new_id(http, sandbox):
    body, _ = await _booking(http, CU2)
    made = (await http.post(f"{CU2}/appointments", json=body)).json()[0]
    pending = (
        await http.patch(f"{CU2}/appointments/{made['id']}", json={"status": "cancelled"})
    ).json()
    assert pending["status"] == "awaiting_confirmation" and pending["id"] != made["id"]
    assert (await http.get(f"{CU2}/appointments/{made['id']}")).status_code == 404
    wrong = await http.patch(
        f"{CU2}/appointments/{pending['id']}", json={"confirmation": {"code": "000000x"}}
    )
    assert wrong.status_code == 400
    code = sandbox.confirmation_code(pending["id"])
    done = await http.patch(
        f"{CU2}/appointments/{pending['id']}", json={"confirmation": {"code": code}}
    )
    assert done.json()["status"] == "cancelled"


async def test_appointment_filters(http, sandbox):
    every = (await http.get(f"{CU}/appointments")).json()
    a = every[0]
    by_patient = (
        await http.get(f"{CU}/appointments", params={"patient_id": a["patient_id"]})
    ).json()
    assert a in by_patient and all(x["patient_id"] == a["patient_id"] for x in by_patient)
    day = a["start"][:10]
    window = (
        await http.get(f"{CU}/appointments", params={"start_date": day, "end_date": day})
    ).json()
    assert a in window and all(x["start"][:10] == day for x in window)
