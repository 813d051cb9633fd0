"""The embedded demo keeps Nyra's real limits (12 calls a second and 60 a minute per key,
three keys) and still feels instant: paging every Appointment with its patients included
stays within one minute's budget of the keys, because a page's patients are listed (a
Leyr care unit in one call, the Nyra hospital in pages of 100) rather than read one by
one. When a page does wait for a vendor's budget it says so in an informational outcome
entry, and a wait longer than ``max_wait`` is a prompt 503 with a whole-seconds
``Retry-After``. What is checked is counted (vendor calls, waits begun), never timed.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fhir_check import validate

from adapter.app import create_app
from adapter.sandbox import NyraSandbox, sandbox_for
from adapter.settings import DEMO_SECRET_ENV, Settings, load_settings

pytestmark = pytest.mark.anyio

SECRET = "demo-secret-for-the-paging-test"


def next_link(bundle: dict[str, Any]) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)


class Recording(httpx.AsyncBaseTransport):
    """A sandbox's transport that keeps every request reaching the vendor."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)


# The calls a page may make for its patients: one list per Leyr care unit (two), the Nyra
# hospital's 200 patients in two pages of 100, and one read of a patient not yet listed.
PATIENT_CALLS_A_PAGE = 5


async def test_paging_every_appointment_with_its_patients_in_the_embedded_demo_is_quick():
    settings = load_settings(env={DEMO_SECRET_ENV: SECRET})
    # The embedded sandboxes, built as the demo builds them, with their calls recorded.
    sandboxes = {
        name: sandbox_for(source["connector"], source["sandbox"], source)
        for name, source in settings.sources.items()
    }
    calls = {name: Recording(box.transport()) for name, box in sandboxes.items()}
    app = create_app(settings, transports=calls)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
    ) as http:
        granted = await http.post(
            "/auth/token", auth=("demo", SECRET), data={"grant_type": "client_credentials"}
        )
        headers = {"Authorization": f"Bearer {granted.json()['access_token']}"}
        url: str | None = "/fhir/Appointment?_include=Appointment:patient"
        matches, pages, total = 0, 0, None
        while url is not None:
            before = {name: len(c.paths) for name, c in calls.items()}
            r = await http.get(url, headers=headers)
            assert r.status_code == 200, r.text
            bundle = r.json()
            total = bundle["total"]
            pages += 1
            entries = bundle.get("entry", [])
            page = [e["resource"] for e in entries if e["search"]["mode"] == "match"]
            included = {
                f"Patient/{e['resource']['id']}"
                for e in entries
                if e["search"]["mode"] == "include"
            }
            wanted = {
                p["actor"]["reference"]
                for a in page
                for p in a["participant"]
                if p["actor"]["reference"].startswith("Patient/")
            }
            assert wanted <= included  # every patient of the page is there
            # ...listed, not read one by one
            patient_calls = [
                path
                for name, c in calls.items()
                for path in c.paths[before[name] :]
                if "/patients" in path
            ]
            assert len(patient_calls) <= PATIENT_CALLS_A_PAGE < len(included), patient_calls
            outcomes = [e["resource"] for e in entries if e["search"]["mode"] == "outcome"]
            for outcome in outcomes:  # at most a word that the page waited: no failure
                assert {i["severity"] for i in outcome["issue"]} == {"information"}
            matches += len(page)
            url = next_link(bundle)
            if pages == 1:
                validate(bundle)
    assert matches == total and total > 500
    # What makes it quick: the whole run fits in one minute's budget of Nyra's keys, so
    # no page waits for a minute window to pass, and the vendor refused nothing.
    nyra = sandboxes["nyra-sandbox"]
    assert len(calls["nyra-sandbox"].paths) <= 60 * len(nyra.api_keys())
    assert nyra.limited_total() == 0


def throttled_service(**rate_limit: float) -> Any:
    sandbox = NyraSandbox(seed=3, patients=30)
    source = {
        "connector": "nyra",
        "timezone": "Asia/Kolkata",
        **sandbox.defaults(),
        "retry": {"attempts": 1},
        "rate_limit": rate_limit,
    }
    settings = Settings(open_access=True, sources={"nyra-t": source}, cursor_key=b"k" * 32)
    return create_app(settings, transports={"nyra-t": sandbox.transport()})


async def test_a_page_that_waited_for_the_budget_says_so():
    app = throttled_service(per_second=1, per_minute=1000, max_wait=5)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fhir.test"
    ) as http:
        first = (await http.get("/fhir/Patient", params={"_count": "2"})).json()
        assert not [e for e in first["entry"] if e["search"]["mode"] == "outcome"]
        second = (await http.get(next_link(first) or "")).json()  # waits for the next second
        (outcome,) = [e["resource"] for e in second["entry"] if e["search"]["mode"] == "outcome"]
        (issue,) = outcome["issue"]
        assert issue["severity"] == "information" and issue["code"] == "throttled"
        assert "nyra-t" in issue["diagnostics"] and "rate limit" in issue["diagnostics"]
        assert len([e for e in second["entry"] if e["search"]["mode"] == "match"]) == 2
        validate(second)


class Waits:
    """A key pool's ``sleep`` for a test in which no wait for budget may begin: each
    one asked for is recorded, and fails the request instead of waiting."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        raise RuntimeError(f"a wait of {seconds:g} s for budget was begun")


async def test_a_wait_longer_than_max_wait_is_a_prompt_503_with_whole_seconds():
    app = throttled_service(per_second=10, per_minute=2, max_wait=1)
    # The source's key pool, told to record the waits for budget it would make.
    waits = app.state.facade.connectors["nyra-t"].client.pool._sleep = Waits()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fhir.test"
    ) as http:
        for _ in range(2):  # the minute's budget
            assert (await http.get("/fhir/Patient", params={"_count": "1"})).status_code == 200
        r = await http.get("/fhir/Patient", params={"_count": "1"})
    assert waits.asked == []  # the minute's wait, past max_wait, was not begun
    assert r.status_code == 503
    assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 30
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "throttled"


def test_the_embedded_nyra_source_has_several_keys():
    nyra = load_settings(env={DEMO_SECRET_ENV: SECRET}).sources["nyra-sandbox"]
    assert nyra["sandbox"]["keys"] >= 3
