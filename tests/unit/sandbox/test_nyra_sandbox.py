"""The Nyra simulator keeps the contract: locks, permissions, envelopes, paging, limits."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from adapter.sandbox import ALL_PERMISSIONS, NyraSandbox, RateLimits

pytestmark = pytest.mark.anyio
UNAUTHORIZED = {"success": False, "error": "Unauthorized", "message": "Invalid API credentials"}
KOLKATA = ZoneInfo("Asia/Kolkata")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def headers(grant) -> dict[str, str]:
    return {
        "x-api-key": grant.key,
        "x-api-secret": grant.secret,
        "authorization": f"Bearer {grant.token}",
    }


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sandbox(clock):
    return NyraSandbox(seed=3, patients=250, clock=clock)


@pytest.fixture
async def http(sandbox):
    async with httpx.AsyncClient(transport=sandbox.transport(), base_url="http://nyra") as c:
        yield c


@pytest.fixture
def auth(sandbox):
    return headers(sandbox.api_keys()[0])


@pytest.mark.parametrize("drop", ["x-api-key", "x-api-secret", "authorization"])
async def test_each_of_the_three_locks_is_needed(http, auth, drop):
    r = await http.get("/patients", headers={k: v for k, v in auth.items() if k != drop})
    assert r.status_code == 401
    assert r.json() == UNAUTHORIZED


async def test_a_wrong_token_or_a_ws_ticket_is_not_a_rest_token(http, auth):
    ticket = (await http.post("/ws-ticket", headers=auth)).json()["data"]["token"]
    for token in ("0" * 64, ticket):
        r = await http.get("/patients", headers={**auth, "authorization": f"Bearer {token}"})
        assert r.status_code == 401 and r.json() == UNAUTHORIZED


async def test_an_expired_hospital_token_is_401(http, sandbox, clock, auth):
    assert (await http.get("/patients", headers=auth)).status_code == 200
    clock.now += 24 * 3600 + 1
    r = await http.get("/patients", headers=auth)
    assert r.status_code == 401 and r.json() == UNAUTHORIZED


async def test_a_missing_permission_is_403_naming_it(http, sandbox):
    grant = sandbox.issue_key(ALL_PERMISSIONS - {"appointments:read"})
    assert (await http.get("/patients", headers=headers(grant))).status_code == 200
    r = await http.get("/appointments", headers=headers(grant))
    assert r.status_code == 403
    assert r.json() == {
        "success": False,
        "error": "Forbidden",
        "message": "Missing required permission: appointments:read",
    }


async def test_list_envelope_and_paging(http, auth):
    r = await http.get("/patients", params={"page": "3", "limit": "40"}, headers=auth)
    body = r.json()
    assert body["success"] is True
    data = body["data"]
    assert (data["total"], data["page"], data["limit"], data["total_pages"]) == (250, 3, 40, 7)
    assert len(data["results"]) == 40
    last = (await http.get("/patients", params={"page": "7", "limit": "40"}, headers=auth)).json()
    assert len(last["data"]["results"]) == 10


async def test_limit_is_capped_at_100_and_default_20(http, auth):
    big = (await http.get("/patients", params={"limit": "500"}, headers=auth)).json()["data"]
    assert big["limit"] == 100 and len(big["results"]) == 100
    default = (await http.get("/patients", headers=auth)).json()["data"]
    assert default["limit"] == 20 and default["page"] == 1


@pytest.mark.parametrize("params", [{"page": "0"}, {"page": "x"}, {"limit": "-1"}])
async def test_bad_paging_is_400(http, auth, params):
    r = await http.get("/patients", params=params, headers=auth)
    assert r.status_code == 400
    assert r.json()["success"] is False and r.json()["error"] == "Bad Request"


async def test_q_matches_name_phone_and_email(http, auth, sandbox):
    someone = next(iter(sandbox.patients))
    for needle in (someone["name"].split()[0].upper(), someone["phone"][-6:]):
        r = await http.get("/patients", params={"q": needle, "limit": "100"}, headers=auth)
        results = r.json()["data"]["results"]
        assert someone["id"] in {p["id"] for p in results}
        for p in results:
            hay = " ".join(str(p.get(k, "")) for k in ("name", "phone", "email")).casefold()
            assert needle.casefold() in hay


async def test_a_branch_locked_key_sees_only_its_branch(http, sandbox):
    branches = sorted({p["branch_id"] for p in sandbox.patients})
    assert len(branches) == 2
    grant = sandbox.issue_key(branch_id=branches[0])
    r = await http.get(
        "/patients", params={"limit": "100", "branch_id": branches[1]}, headers=headers(grant)
    )
    results = r.json()["data"]["results"]
    assert results and {p["branch_id"] for p in results} == {branches[0]}
    foreign = next(p for p in sandbox.patients if p["branch_id"] == branches[1])
    assert (await http.get(f"/patients/{foreign['id']}", headers=headers(grant))).status_code == 404


async def test_rate_limit_headers_on_every_answer(http, auth, clock):
    r = await http.get("/patients", headers=auth)
    assert r.headers["x-ratelimit-limit"] == "60"
    assert r.headers["x-ratelimit-remaining"] == "59"
    assert int(r.headers["x-ratelimit-reset"]) == (int(clock.now) // 60 + 1) * 60
    bad = await http.get("/patients", headers={**auth, "x-api-secret": "no"})
    assert "x-ratelimit-remaining" in bad.headers
    missing = await http.get("/nowhere", headers=auth)
    assert missing.status_code == 404 and "x-ratelimit-limit" in missing.headers


async def test_twelve_per_second_then_429_with_retry_after(http, auth, clock, sandbox):
    clock.now = 1_800_000_000.25
    statuses = [(await http.get("/patients", headers=auth)).status_code for _ in range(13)]
    assert statuses == [200] * 12 + [429]
    r = await http.get("/patients", headers=auth)
    assert r.status_code == 429
    assert r.json() == {
        "success": False,
        "error": "Too Many Requests",
        "message": "Rate limit exceeded",
    }
    assert r.headers["retry-after"] == "1"  # 0.75 s, in whole seconds as HTTP has it
    clock.now += 1.0
    assert (await http.get("/patients", headers=auth)).status_code == 200
    assert sandbox.api_keys()[0].limited == 2


async def test_sixty_per_minute_then_429_until_the_window_resets(http, auth, clock):
    clock.now = 1_800_000_000.0  # a minute boundary
    answers = []
    for i in range(61):
        clock.now = 1_800_000_000.0 + i * 0.5  # 2 per second: only the minute limit binds
        answers.append(await http.get("/patients", headers=auth))
    assert [a.status_code for a in answers] == [200] * 60 + [429]
    assert answers[59].headers["x-ratelimit-remaining"] == "0"
    assert answers[60].headers["retry-after"] == "30"
    clock.now = 1_800_000_060.0
    assert (await http.get("/patients", headers=auth)).status_code == 200


async def test_limits_are_per_key(http, sandbox, clock):
    second = sandbox.issue_key()
    first = sandbox.api_keys()[0]
    for _ in range(12):
        assert (await http.get("/patients", headers=headers(first))).status_code == 200
    assert (await http.get("/patients", headers=headers(first))).status_code == 429
    assert (await http.get("/patients", headers=headers(second))).status_code == 200


async def test_windows_scale_down(clock):
    sandbox = NyraSandbox(
        patients=5, clock=clock, limits=RateLimits(second_window=0.01, minute_window=0.05)
    )
    auth = headers(sandbox.api_keys()[0])
    clock.now = 1000.0
    async with httpx.AsyncClient(transport=sandbox.transport(), base_url="http://n") as http:
        codes = [(await http.get("/patients", headers=auth)).status_code for _ in range(13)]
        assert codes[-1] == 429
        clock.now += 0.01
        r = await http.get("/patients", headers=auth)
        assert r.status_code == 200
        assert float(r.headers["x-ratelimit-reset"]) == pytest.approx(1000.05)
    assert sandbox.defaults()["rate_limit"]["minute_window"] == 0.05


async def test_read_one_and_404(http, auth, sandbox):
    someone = list(sandbox.patients)[17]
    r = await http.get(f"/patients/{someone['id']}", headers=auth)
    assert r.json() == {"success": True, "data": someone}
    r = await http.get("/patients/no-such-id", headers=auth)
    assert r.status_code == 404
    assert r.json() == {"success": False, "error": "Not Found", "message": "Patient not found"}


async def test_appointment_filters(http, auth, sandbox):
    booked = [a for a in sandbox.appointments if a["status"] == "BOOKED"]
    a = booked[0]
    local = datetime.fromisoformat(a["appointment_time"]).astimezone(KOLKATA).date()
    params = {
        "status": "BOOKED",
        "doctor_id": a["doctor_id"],
        "patient_id": a["patient_id"],
        "date_from": local.isoformat(),
        "date_to": local.isoformat(),
        "limit": "100",
    }
    results = (await http.get("/appointments", params=params, headers=auth)).json()["data"]
    assert a["id"] in {x["id"] for x in results["results"]}
    for x in results["results"]:
        assert x["status"] == "BOOKED" and x["doctor_id"] == a["doctor_id"]
        assert x["appointment_time"].startswith(local.isoformat())
    r = await http.get("/appointments", params={"date_from": "tomorrow"}, headers=auth)
    assert r.status_code == 400


async def test_create_patient_and_book_in_one_call(http, auth, sandbox, clock):
    doctor = next(iter(sandbox.doctors))
    day = datetime.fromtimestamp(clock.now, KOLKATA).date() + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    body = {
        "name": "Test Person",
        "phone": "+919812345678",
        "gender": "FEMALE",
        "date_of_birth": "1990-05-17",
        "doctor_id": doctor["id"],
        "appointment_time": f"{day.isoformat()}T10:30:00",
    }
    r = await http.post("/patients", json=body, headers=auth)
    assert r.status_code == 201
    data = r.json()["data"]
    assert r.json()["success"] is True and set(data) == {"patient_id", "appointment_id"}
    patient = (await http.get(f"/patients/{data['patient_id']}", headers=auth)).json()["data"]
    assert patient["name"] == "Test Person" and patient["status"] == "ACTIVE"
    appt = (await http.get(f"/appointments/{data['appointment_id']}", headers=auth)).json()["data"]
    assert appt["appointment_time"] == f"{day.isoformat()}T10:30:00+05:30"
    assert appt["status"] == "BOOKED" and appt["patient_name"] == "Test Person"
    # the same time again is taken; nothing half-made: no new patient either
    before = len(sandbox.patients)
    again = await http.post("/patients", json={**body, "name": "Other"}, headers=auth)
    assert again.status_code == 409
    assert again.json() == {"success": False, "error": "Conflict", "message": "Slot not available"}
    assert len(sandbox.patients) == before


async def test_book_then_cancel(http, auth, sandbox, clock):
    doctor = next(iter(sandbox.doctors))
    patient = next(iter(sandbox.patients))
    day = datetime.fromtimestamp(clock.now, KOLKATA).date() + timedelta(days=2)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    slots = await http.get(
        f"/doctors/{doctor['id']}/slots", params={"date": day.isoformat()}, headers=auth
    )
    free = slots.json()["data"]["slots"]
    assert free and free[0] == {"time": "09:00:00", "end_time": "09:15:00"}
    body = {
        "patient_id": patient["id"],
        "doctor_id": doctor["id"],
        "appointment_date": day.isoformat(),
        "appointment_time": free[0]["time"],
        "type": "CHECKUP",
    }
    r = await http.post("/appointments", json=body, headers=auth)
    assert r.status_code == 201
    appointment_id = r.json()["data"]["appointment_id"]
    slots = await http.get(
        f"/doctors/{doctor['id']}/slots", params={"date": day.isoformat()}, headers=auth
    )
    assert slots.json()["data"]["slots"][0]["time"] == "09:15:00"
    r = await http.patch(
        f"/appointments/{appointment_id}/status", json={"status": "CANCELLED"}, headers=auth
    )
    assert r.json()["data"]["status"] == "CANCELLED"
    bad = await http.patch(
        f"/appointments/{appointment_id}/status", json={"status": "GONE"}, headers=auth
    )
    assert bad.status_code == 400


@pytest.mark.parametrize(
    "change,problem",
    [
        ({"appointment_time": "10:30"}, 400),
        ({"appointment_date": "2020-01-06"}, 400),  # the past
        ({"type": "SURGERY"}, 400),
        ({"doctor_id": "nobody"}, 400),
        ({"patient_id": "nobody"}, 404),
        ({"appointment_time": "03:00:00"}, 409),  # outside the doctor's hours
    ],
)
async def test_bad_bookings_are_refused(http, auth, sandbox, clock, change, problem):
    doctor = next(iter(sandbox.doctors))
    patient = next(iter(sandbox.patients))
    day = datetime.fromtimestamp(clock.now, KOLKATA).date() + timedelta(days=3)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    body = {
        "patient_id": patient["id"],
        "doctor_id": doctor["id"],
        "appointment_date": day.isoformat(),
        "appointment_time": "11:00:00",
        **change,
    }
    before = len(sandbox.appointments)
    r = await http.post("/appointments", json=body, headers=auth)
    assert r.status_code == problem
    assert r.json()["success"] is False
    assert len(sandbox.appointments) == before
