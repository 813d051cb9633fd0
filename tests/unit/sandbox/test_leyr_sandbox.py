"""The Leyr simulator keeps the contract: headers, bare arrays, typed ids, upsert, PATCH;
and its own opening hours, where the contract names none."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.sandbox import LeyrSandbox
from adapter.sandbox.data import LeyrData

pytestmark = pytest.mark.anyio
STHLM = ZoneInfo("Europe/Stockholm")
NOW = 1_800_000_000.0  # Friday 2027-01-15, 09:00 in Stockholm
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


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


# -- opening hours (the sandbox's choice: the contract names none) ----------------------


def _at(day: date, hour: int, minute: int = 0) -> str:
    return datetime.combine(day, time(hour, minute), STHLM).isoformat()


def _next(weekday: int) -> date:
    day = datetime.fromtimestamp(NOW, STHLM).date() + timedelta(days=1)
    while day.weekday() != weekday:
        day += timedelta(days=1)
    return day


def assert_outside_hours(r: httpx.Response) -> None:
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "BAD_REQUEST" and body["status"] == 400
    (problem,) = body["errors"]
    assert problem["error_code"] == "NO_TIMESLOTS_AVAILABLE" and problem["path"] == "start"
    assert "opening hours" in problem["details"]


async def test_booking_sunday_at_four_is_refused_as_no_timeslot(http):
    body, _ = await _booking(http)
    r = await http.post(f"{CU}/appointments", json={**body, "start": _at(_next(6), 4)})
    assert_outside_hours(r)
    assert not [
        a for a in (await http.get(f"{CU}/appointments")).json() if a["start"] == _at(_next(6), 4)
    ]


@pytest.mark.parametrize(
    "weekday,hour,minute,ok",
    [
        (0, 9, 0, True),  # opening
        (2, 16, 30, True),  # ends at closing
        (4, 16, 45, False),  # runs past closing
        (3, 8, 45, False),  # before opening
        (1, 17, 0, False),  # at closing
        (5, 10, 0, False),  # Saturday
    ],
)
async def test_a_booking_lies_wholly_within_opening_hours(http, weekday, hour, minute, ok):
    body, service = await _booking(http)
    assert service["duration_minutes"] == 30
    r = await http.post(
        f"{CU}/appointments", json={**body, "start": _at(_next(weekday), hour, minute)}
    )
    if ok:
        assert r.status_code == 201
    else:
        assert_outside_hours(r)


async def test_a_move_out_of_hours_is_refused_and_changes_nothing(http):
    body, _ = await _booking(http)
    made = (await http.post(f"{CU}/appointments", json=body)).json()[0]
    url = f"{CU}/appointments/{made['id']}"
    assert_outside_hours(await http.patch(url, json={"start": _at(_next(6), 4)}))
    late = {"end": (datetime.fromisoformat(made["start"]) + timedelta(hours=8)).isoformat()}
    assert_outside_hours(await http.patch(url, json=late))
    assert (await http.get(url)).json() == made
    inside = _at(_next(1), 13)
    assert (await http.patch(url, json={"start": inside})).json()["start"] == inside


async def test_free_times_lie_within_weekday_hours(http):
    body, service = await _booking(http)
    monday = _next(0)
    params = {
        "resource_id": body["resource_id"],
        "healthcare_service_id": service["id"],
        "start_date": monday.isoformat(),
        "end_date": (monday + timedelta(days=13)).isoformat(),
    }
    slots = (await http.get(f"{CU}/timeslots", params=params)).json()
    starts = [datetime.fromisoformat(s["start"]).astimezone(STHLM) for s in slots]
    ends = [datetime.fromisoformat(s["end"]).astimezone(STHLM) for s in slots]
    assert {s.date() for s in starts} == {
        monday + timedelta(days=n) for n in range(14) if n % 7 < 5
    }
    assert all(
        time(9) <= s.time() and e.time() <= time(17) for s, e in zip(starts, ends, strict=True)
    )


def _tiny(hours: dict | None = None, appointments: list | None = None) -> LeyrSandbox:
    """An EHR of one care unit ``C1`` (with ``hours`` as its ``opening_hours``, if given),
    one patient, one practitioner and a 15-minute service."""
    unit: dict = {"id": "C1", "name": "Unit"}
    if hours is not None:
        unit["opening_hours"] = hours
    data = LeyrData(
        care_units=[unit],
        patients=[{"id": "p-1", "emr_id": "1", "care_unit_id": "C1", "first_name": "A"}],
        appointments=appointments or [],
        resources=[{"id": "doc-1", "name": "Dr. A", "care_unit_id": "C1"}],
        healthcare_services=[
            {"id": "svc-1", "name": "Visit", "duration_minutes": 15, "care_unit_id": "C1"}
        ],
    )
    return LeyrSandbox(data, seed=1, clock=lambda: NOW)


async def _call(sandbox: LeyrSandbox, method: str, path: str, **kwargs) -> httpx.Response:
    """``method`` on ``path`` (below care unit ``C1``, or the care unit list for ``""``)."""
    auth = {"x-leyr-client-id": sandbox.client_id, "x-leyr-client-secret": sandbox.client_secret}
    async with httpx.AsyncClient(
        transport=sandbox.transport(), base_url="http://leyr", headers=auth
    ) as c:
        return await c.request(method, f"/emrs/webdoc/care-units{path and '/C1' + path}", **kwargs)


def _booking_at(start: datetime, minutes: int = 15) -> dict:
    return {
        "patient_id": "p-1",
        "resource_id": "doc-1",
        "healthcare_service_id": "svc-1",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=minutes)).isoformat(),
    }


def _inside(hours: dict, start: datetime, end: datetime) -> bool:
    """The test's own reading of opening hours: the local wall-clock times of ``start`` and
    ``end`` lie on one day, within one of that weekday's ranges."""
    s, e = start.astimezone(STHLM), end.astimezone(STHLM)
    return s.date() == e.date() and any(
        time.fromisoformat(r["start"]) <= s.time() and e.time() <= time.fromisoformat(r["end"])
        for r in hours.get(WEEKDAYS[s.weekday()], [])
    )


async def test_a_data_file_unit_carries_its_own_hours():
    saturday = {"saturday": [{"start": "10:00", "end": "12:00"}]}
    sandbox = _tiny(saturday)
    on = datetime.combine(_next(5), time(10), STHLM)
    assert (await _call(sandbox, "POST", "/appointments", json=_booking_at(on))).status_code == 201
    monday = datetime.combine(_next(0), time(10), STHLM)
    assert_outside_hours(await _call(sandbox, "POST", "/appointments", json=_booking_at(monday)))
    units = (await _call(sandbox, "GET", "")).json()
    assert units == [{"id": "C1", "name": "Unit"}]


async def test_appointments_already_held_are_not_checked_against_the_hours():
    sunday = datetime.combine(_next(6), time(4), STHLM)
    held = {"id": "a-1", "status": "booked", "care_unit_id": "C1", **_booking_at(sunday)}
    sandbox = _tiny(appointments=[held])
    r = await _call(sandbox, "PATCH", "/appointments/a-1", json={"comment": "Bring the letter"})
    assert r.status_code == 200 and r.json()["start"] == sunday.isoformat()
    r = await _call(sandbox, "PATCH", "/appointments/a-1", json={"status": "cancelled"})
    assert r.json()["status"] == "cancelled"


@pytest.mark.parametrize(
    "hours",
    [
        {"mon": [{"start": "09:00", "end": "17:00"}]},
        {"monday": [{"start": "17:00", "end": "09:00"}]},
        {"monday": [{"start": "9 o'clock", "end": "17:00"}]},
        {"monday": {"start": "09:00", "end": "17:00"}},
        [{"start": "09:00", "end": "17:00"}],
    ],
)
def test_malformed_opening_hours_stop_the_sandbox(hours):
    with pytest.raises(ValueError, match="opening_hours"):
        _tiny(hours)


@st.composite
def opening_hours(draw) -> dict:
    """Up to two ranges a day, on a quarter-hour grid between 05:00 and 23:00 (far from the
    night's daylight-saving changes, so wall-clock and instant readings agree)."""
    week = {}
    for day in WEEKDAYS:
        marks = sorted(draw(st.lists(st.integers(20, 92), unique=True, max_size=4)))
        ranges = [
            {"start": f"{a // 4:02d}:{a % 4 * 15:02d}", "end": f"{b // 4:02d}:{b % 4 * 15:02d}"}
            for a, b in zip(marks[::2], marks[1::2], strict=False)  # an odd last mark: dropped
        ]
        if ranges or draw(st.booleans()):
            week[day] = ranges
    return week


@st.composite
def instants(draw) -> datetime:
    """A future instant within about a year (daylight-saving changes included), near the
    quarter-hour grid, spelled in some UTC offset."""
    day = _next(0) + timedelta(days=draw(st.integers(0, 400)))
    wall = datetime.combine(day, time(0), STHLM) + timedelta(
        minutes=draw(st.integers(0, 95)) * 15 + draw(st.sampled_from((0, 0, 0, 1, -1, 7)))
    )
    offset = timezone(timedelta(minutes=draw(st.sampled_from((0, 60, 120, -300, 330)))))
    return wall.astimezone(offset)


@given(opening_hours(), instants(), st.sampled_from((15, 30, 60)), instants())
async def test_a_time_is_booked_or_moved_exactly_when_within_opening_hours(
    hours, start, minutes, moved_to
):
    sandbox = _tiny(hours)
    r = await _call(sandbox, "POST", "/appointments", json=_booking_at(start, minutes))
    if not _inside(hours, start, start + timedelta(minutes=minutes)):
        assert_outside_hours(r)
        return
    assert r.status_code == 201
    made = r.json()[0]
    r = await _call(
        sandbox, "PATCH", f"/appointments/{made['id']}", json={"start": moved_to.isoformat()}
    )
    if _inside(hours, moved_to, moved_to + timedelta(minutes=minutes)):
        assert r.status_code == 200 and r.json()["start"] == moved_to.isoformat()
    else:
        assert_outside_hours(r)


@given(opening_hours(), st.integers(0, 400), st.integers(0, 6))
async def test_every_free_time_lies_within_opening_hours_and_can_be_booked(hours, skip, span):
    sandbox = _tiny(hours)
    first = _next(0) + timedelta(days=skip)
    params = {
        "healthcare_service_id": "svc-1",
        "start_date": first.isoformat(),
        "end_date": (first + timedelta(days=span)).isoformat(),
    }
    slots = (await _call(sandbox, "GET", "/timeslots", params=params)).json()
    times = [(datetime.fromisoformat(s["start"]), datetime.fromisoformat(s["end"])) for s in slots]
    assert all(_inside(hours, s, e) for s, e in times)
    # Every quarter hour of every opening, and nothing else.
    expected = sum(
        (
            datetime.combine(date.min, time.fromisoformat(r["end"]))
            - datetime.combine(date.min, time.fromisoformat(r["start"]))
        )
        // timedelta(minutes=15)
        for n in range(span + 1)
        for r in hours.get(WEEKDAYS[(first + timedelta(days=n)).weekday()], [])
    )
    assert len(times) == expected
    if times:
        start, _ = times[len(times) // 2]
        r = await _call(sandbox, "POST", "/appointments", json=_booking_at(start))
        assert r.status_code == 201
