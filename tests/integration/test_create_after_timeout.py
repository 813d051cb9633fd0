"""A Patient create whose answer never comes: the service looks for the record before it
answers, so a client that sends again never makes a second patient.

- the vendor made it, then hung: the record is found and answered as created (201), and
  the same Idempotency-Key replays that answer;
- the vendor never got it: 504, the client is told to send again, and doing so makes one;
- the vendor made it but cannot be asked: 504 telling the client to search first.
"""

from __future__ import annotations

import httpx
import pytest
from harness import FAST

from adapter.app import create_app
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings

pytestmark = pytest.mark.anyio
JSON = {"content-type": "application/fhir+json"}
PNR = "urn:oid:1.2.752.129.2.1.3.1"


def _world():
    leyr = LeyrSandbox(seed=3, patients=6)
    nyra = NyraSandbox(seed=3, patients=6, limits=FAST)
    quick = {"timeout": {"read": 0.3, "connect": 1}, "retry": {"attempts": 1}}
    sources = {
        "leyr-t": {"connector": "leyr", **leyr.defaults(), **quick},
        "nyra-t": {"connector": "nyra", **nyra.defaults(), **quick},
    }
    transports = {"leyr-t": leyr.transport(), "nyra-t": nyra.transport()}
    app = create_app(
        Settings(open_access=True, sources=sources, cursor_key=b"t" * 32), transports=transports
    )
    return leyr, nyra, app


def _patient(source: str, given: str) -> dict:
    patient = {
        "resourceType": "Patient",
        "meta": {"source": source},
        "name": [{"given": [given], "family": "Lindqvist"}],
        "gender": "female",
        "birthDate": "1984-06-02",
        "telecom": [{"system": "phone", "value": "+919812300077"}],
    }
    return patient


def _count(sandbox, given: str) -> int:
    if isinstance(sandbox, NyraSandbox):
        return sum(1 for p in sandbox.patients if p.get("name", "").startswith(given))
    return sum(
        1 for cu in sandbox.patients for p in sandbox.patients[cu] if p.get("first_name") == given
    )


@pytest.mark.parametrize("vendor", ["leyr", "nyra"])
async def test_a_patient_made_before_the_vendor_hung_is_found_not_made_again(vendor):
    leyr, nyra, app = _world()
    sandbox = leyr if vendor == "leyr" else nyra
    sandbox.faults.hang_after_commit = True
    sandbox.faults.hang_seconds = 30
    body = _patient(f"{vendor}-t", "Ebba")
    headers = {**JSON, "Idempotency-Key": f"create-{vendor}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://f/fhir"
    ) as c:
        first = await c.post("/Patient", json=body, headers=headers)
        sandbox.faults.hang_after_commit = False
        again = await c.post("/Patient", json=body, headers=headers)
        read = await c.get(f"/Patient/{first.json()['id']}")
    assert first.status_code == 201, first.text
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first.json()["id"] and read.status_code == 200
    assert _count(sandbox, "Ebba") == 1


@pytest.mark.parametrize("vendor", ["leyr", "nyra"])
async def test_a_create_the_vendor_never_got_is_a_504_and_sending_again_makes_one(vendor):
    leyr, nyra, app = _world()
    sandbox = leyr if vendor == "leyr" else nyra
    sandbox.faults.timeout_rate = 1.0  # every call hangs before the vendor does anything
    sandbox.faults.hang_seconds = 30
    body = _patient(f"{vendor}-t", "Signe")
    headers = {**JSON, "Idempotency-Key": f"lost-{vendor}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://f/fhir"
    ) as c:
        lost = await c.post("/Patient", json=body, headers=headers)
        sandbox.faults.reset()
        made = await c.post("/Patient", json=body, headers=headers)
    assert lost.status_code == 504
    issue = lost.json()["issue"][0]["diagnostics"]
    # looking failed too (the vendor hangs for every call): the client must search first
    assert "search for it before sending" in issue
    assert lost.headers["retry-after"].isdigit()
    assert made.status_code == 201 and _count(sandbox, "Signe") == 1


async def test_a_create_that_surely_did_not_land_says_send_again():
    _, nyra, _ = _world()
    inner = nyra.transport()

    class LoseTheCreates(httpx.AsyncBaseTransport):
        """Creates time out before they reach the vendor; everything else gets through."""

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "POST":
                raise httpx.ReadTimeout("the vendor never answered", request=request)
            return await inner.handle_async_request(request)

    sources = {"nyra-t": {"connector": "nyra", **nyra.defaults()}}
    app = create_app(
        Settings(open_access=True, sources=sources, cursor_key=b"t" * 32),
        transports={"nyra-t": LoseTheCreates()},
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://f/fhir"
    ) as c:
        lost = await c.post("/Patient", json=_patient("nyra-t", "Tove"), headers=JSON)
    assert (lost.status_code, lost.headers["retry-after"]) == (503, "5")
    assert lost.json()["issue"] == [
        {
            "severity": "error",
            "code": "transient",
            "diagnostics": "source nyra-t failed without a clear answer and holds no such "
            "record: send the request again with the same Idempotency-Key",
        }
    ]
    assert _count(nyra, "Tove") == 0
