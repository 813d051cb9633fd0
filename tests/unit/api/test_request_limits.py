"""What one FHIR request may cost, and how the facade answers when a vendor cannot serve.

Each request has a time (``[server] request_seconds``) and a number of vendor calls
(``[server] max_vendor_calls``). A request that would surely need more calls is refused
up front with a 400 naming the limit, before any vendor is asked; a vendor that hangs is
cut off so that the answer still comes within the request's time; a source whose rate
budget is spent answers 503 at once rather than wait past the deadline or draw a 429.
Besides, what each vendor's contract asks of the connector (Leyr: ``Content-Type`` on
every call) and what it refuses (Nyra: a birth date after today, a record its mapping
cannot read) reaches the client as a precise OperationOutcome, never as patient data.

The apps run in-process over the sandboxes; the vendor calls are counted (and their
headers kept) by a transport wrapped around each sandbox's. Every answer is checked on
the way (:func:`checked`): anything under ``/fhir`` that is not 2xx is an OperationOutcome,
and every ``Retry-After`` is whole seconds.
"""

from __future__ import annotations

import asyncio
import re
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir_check import validate
from harness import FAST

from adapter.app import create_app
from adapter.sandbox import LeyrSandbox, NyraSandbox, RateLimits
from adapter.settings import Settings
from mappings import encode_id

pytestmark = pytest.mark.anyio

LEYR, NYRA = "leyr-a", "nyra-b"
CONFIG = {
    LEYR: {"connector": "leyr", "timezone": "Europe/Stockholm", "emr": "webdoc"},
    NYRA: {"connector": "nyra", "timezone": "Asia/Kolkata"},
}
CAP = 20  # max_vendor_calls
JSON = {"content-type": "application/fhir+json"}
_DIGITS = re.compile(r"[0-9]+")


class Recording(httpx.AsyncBaseTransport):
    """A sandbox's transport that keeps every request reaching the vendor."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def paths(self, method: str = "GET") -> list[str]:
        return [r.url.path for r in self.requests if r.method == method]


async def checked(response: httpx.Response) -> None:
    """What holds of every answer: ``Retry-After`` is whole seconds (ASCII digits, at
    least 1); under ``/fhir`` each JSON body is valid R4, and one that is not 2xx is an
    OperationOutcome."""
    await response.aread()
    for value in response.headers.get_list("retry-after"):
        assert _DIGITS.fullmatch(value) and int(value) >= 1, f"Retry-After {value!r}"
    if not response.request.url.path.startswith("/fhir"):
        return
    body = response.json()
    validate(body)
    if not response.is_success:
        assert body["resourceType"] == "OperationOutcome"
        OperationOutcome.model_validate(body)


class Service:
    """The facade over ``sandboxes`` (source name -> sandbox), each source with
    ``extra`` configuration of its own; ``calls`` records what reached each vendor."""

    def __init__(
        self,
        sandboxes: dict[str, LeyrSandbox | NyraSandbox],
        *,
        request_seconds: float = 5.0,
        extra: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.sandboxes = sandboxes
        sources = {
            name: {
                **CONFIG[name],
                **sandbox.defaults(),
                "retry": {"attempts": 1},
                **(extra or {}).get(name, {}),
            }
            for name, sandbox in sandboxes.items()
        }
        self.calls = {name: Recording(sb.transport()) for name, sb in sandboxes.items()}
        settings = Settings(
            open_access=True,
            sources=sources,
            cursor_key=b"c" * 32,
            request_seconds=request_seconds,
            max_vendor_calls=CAP,
        )
        self.app = create_app(settings, transports=self.calls)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://fhir.test",
            event_hooks={"response": [checked]},
        )

    def vendor_calls(self) -> int:
        return sum(len(r.requests) for r in self.calls.values())


def both(patients: int = 60) -> dict[str, LeyrSandbox | NyraSandbox]:
    return {
        LEYR: LeyrSandbox(seed=5, patients=patients),
        NYRA: NyraSandbox(seed=5, patients=patients, limits=FAST),
    }


def issue_of(response: httpx.Response) -> dict:
    (issue,) = response.json()["issue"]
    return issue


def nyra_id(sandbox: NyraSandbox, index: int = 0) -> str:
    return encode_id(NYRA, list(sandbox.patients)[index]["id"])


# -- the call cap ------------------------------------------------------------------------


async def test_more_ids_than_the_call_cap_is_400_naming_it_and_no_vendor_is_asked():
    service = Service(both())
    ids = [nyra_id(service.sandboxes[NYRA], i) for i in range(CAP + 5)]
    async with service.client() as http:
        r = await http.get("/fhir/Patient", params={"_id": ",".join(ids)})
        assert r.status_code == 400
        issue = issue_of(r)
        assert issue["code"] == "too-costly" and issue["expression"] == ["_id"]
        assert "max_vendor_calls" in issue["diagnostics"] and str(CAP) in issue["diagnostics"]
        assert service.vendor_calls() == 0
        # as many ids as the cap is served: one read each
        r = await http.get("/fhir/Patient", params={"_id": ",".join(ids[:CAP])})
        assert r.status_code == 200
        assert sorted(e["resource"]["id"] for e in r.json()["entry"]) == sorted(ids[:CAP])
        assert service.vendor_calls() <= CAP


def referenced_patients(bundle: dict[str, Any]) -> set[str]:
    return {
        p["actor"]["reference"]
        for e in bundle["entry"]
        if e["search"]["mode"] == "match"
        for p in e["resource"]["participant"]
        if p["actor"]["reference"].startswith("Patient/")
    }


@pytest.mark.parametrize("source", [LEYR, NYRA])
async def test_an_include_of_more_patients_than_the_call_cap_is_served_from_listings(source):
    """Listing a care unit's (Leyr) or the hospital's (Nyra, pages of 100) patients takes
    fewer calls than a read each: a page referencing more patients than the cap is
    served whole, with no read of one patient."""
    service = Service(both())
    page = {"_source": source, "_count": "100"}
    async with service.client() as http:
        plain = (await http.get("/fhir/Appointment", params=page)).json()
        patients = referenced_patients(plain)
        assert len(patients) > CAP  # the page references more patients than may be read

        calls = service.calls[source]
        calls.requests.clear()
        r = await http.get("/fhir/Appointment", params={**page, "_include": "Appointment:patient"})
        assert r.status_code == 200
        included = {
            f"Patient/{e['resource']['id']}"
            for e in r.json()["entry"]
            if e["search"]["mode"] == "include"
        }
        assert included == patients
        listed = [p for p in calls.paths() if p.endswith("/patients")]
        assert 1 <= len(listed) <= 2 and not [p for p in calls.paths() if "/patients/" in p]


async def test_an_include_needing_more_calls_than_the_cap_is_400_naming_it():
    """A hospital so large that listing it takes more calls than reading each patient,
    and more patients on the page than the cap: refused before any patient is read."""
    sandboxes = {NYRA: NyraSandbox(seed=5, patients=(CAP + 1) * 100, limits=FAST)}
    service = Service(sandboxes)
    page = {"_count": "100"}
    async with service.client() as http:
        plain = (await http.get("/fhir/Appointment", params=page)).json()
        assert len(referenced_patients(plain)) > CAP

        calls = service.calls[NYRA]
        calls.requests.clear()
        r = await http.get("/fhir/Appointment", params={**page, "_include": "Appointment:patient"})
        assert r.status_code == 400
        issue = issue_of(r)
        assert issue["code"] == "too-costly" and issue["expression"] == ["_include"]
        assert "max_vendor_calls" in issue["diagnostics"] and str(CAP) in issue["diagnostics"]
        assert not [p for p in calls.paths() if "/patients/" in p]  # refused before reading

        # a page whose patients fit in the cap is served with them
        small = {**page, "_count": "5", "_include": "Appointment:patient"}
        r = await http.get("/fhir/Appointment", params=small)
        assert r.status_code == 200
        modes = {e["search"]["mode"] for e in r.json()["entry"]}
        assert modes == {"match", "include"}


# -- the request's time ------------------------------------------------------------------

REQUEST_SECONDS = 1.0
# The hanging source's own read timeout: far past the request's time, so that only the
# request's deadline can end a call to it.
LONG_READ = {"timeout": {"read": 3600.0, "connect": 5.0}}
SAFETY_NET = 60.0  # seconds: a cut-off that never comes fails the test, not hang it


class Hangs:
    """A sandbox's ``sleep`` whose hangs never end on their own: only a cancelled call
    ends one. ``cut`` counts the hangs so ended."""

    def __init__(self) -> None:
        self.cut = 0

    async def __call__(self, seconds: float) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cut += 1
            raise


@pytest.mark.parametrize("hanging", [LEYR, NYRA])
async def test_a_hanging_vendor_is_cut_off_within_the_requests_time(hanging):
    service = Service(
        both(patients=12), request_seconds=REQUEST_SECONDS, extra={hanging: LONG_READ}
    )
    healthy = NYRA if hanging == LEYR else LEYR
    async with service.client() as http:
        # a page of 20 over two sources: the healthy one's share is its first 10
        alone = (
            await http.get("/fhir/Patient", params={"_source": healthy, "_count": "10"})
        ).json()
        record = next(
            e["resource"]["id"]
            for e in (await http.get("/fhir/Patient", params={"_source": hanging})).json()["entry"]
        )
        box = service.sandboxes[hanging]
        hangs = box.app.sleep = Hangs()
        box.faults.timeout_rate = 1.0

        async def cut_off(url: str, **params: str) -> httpx.Response:
            """The answer, which only the request's deadline can bring: the vendor never
            answers, and the source would wait an hour for it."""
            calls, cut = len(service.calls[hanging].requests), hangs.cut
            async with asyncio.timeout(SAFETY_NET):
                r = await http.get(url, params=params)
            made = len(service.calls[hanging].requests) - calls
            assert made >= 1 and hangs.cut - cut == made  # every call to it, cut off
            return r

        read = await cut_off(f"/fhir/Patient/{record}")
        only = await cut_off("/fhir/Patient", _source=hanging)
        for r in (read, only):
            assert r.status_code == 504 and int(r.headers["retry-after"]) >= 1
            assert issue_of(r)["code"] == "timeout" and hanging in issue_of(r)["diagnostics"]

        search = await cut_off("/fhir/Patient", _count="20")
        assert search.status_code == 200
        entries = search.json()["entry"]
        matches = [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"]
        outcomes = [e["resource"] for e in entries if e["search"]["mode"] == "outcome"]
        assert matches == [e["resource"]["id"] for e in alone["entry"]]
        (outcome,) = outcomes
        assert outcome["issue"][0]["code"] == "timeout"
        assert hanging in outcome["issue"][0]["diagnostics"]


async def test_a_write_to_a_hanging_vendor_is_cut_off_within_the_requests_time():
    service = Service(
        {LEYR: LeyrSandbox(seed=5, patients=4)},
        request_seconds=REQUEST_SECONDS,
        extra={LEYR: LONG_READ},
    )
    box = service.sandboxes[LEYR]
    hangs = box.app.sleep = Hangs()
    box.faults.timeout_rate = 1.0
    patient = {
        "resourceType": "Patient",
        "meta": {"source": LEYR},
        "identifier": [{"system": "urn:oid:1.2.752.129.2.1.3.1", "value": "191212121212"}],
        "name": [{"family": "Tolvansson", "given": ["Tolvan"]}],
        "gender": "male",
        "birthDate": "1912-12-12",
    }
    async with service.client() as http, asyncio.timeout(SAFETY_NET):
        r = await http.post("/fhir/Patient", json=patient, headers=JSON)
    assert r.status_code == 504 and issue_of(r)["code"] == "timeout"
    made = len(service.calls[LEYR].requests)
    assert made >= 1 and hangs.cut == made  # the write, and any look after it, cut off
    assert not [p for unit in box.patients.values() for p in unit if p["last_name"] == "Tolvansson"]


class Waits:
    """A key pool's ``sleep`` for a test in which no wait for budget may begin: each
    one asked for is recorded, and fails the request instead of waiting."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        raise RuntimeError(f"a wait of {seconds:g} s for budget was begun")


async def test_a_nyra_source_whose_budget_is_spent_answers_503_at_once_without_a_429():
    # Nyra's real-time limits; the source keeps to 3 calls a minute.
    nyra = NyraSandbox(seed=5, patients=6, limits=RateLimits())
    service = Service(
        {NYRA: nyra}, request_seconds=5.0, extra={NYRA: {"rate_limit": {"per_minute": 3}}}
    )
    # The source's key pool, told to record the waits for budget it would make.
    waits = service.app.state.facade.connectors[NYRA].client.pool._sleep = Waits()
    record = nyra_id(nyra)
    async with service.client() as http:
        for _ in range(3):
            assert (await http.get(f"/fhir/Patient/{record}")).status_code == 200
        r = await http.get(f"/fhir/Patient/{record}")
        assert r.status_code == 503
        assert 1 <= int(r.headers["retry-after"]) <= 61  # until the minute's window frees
        # Refused for the budget, not cut off by the deadline after waiting for it.
        assert issue_of(r)["code"] == "throttled" and NYRA in issue_of(r)["diagnostics"]
        assert waits.asked == []  # no wait for budget was begun: answered at once
        ready = await http.get("/readyz")
        assert ready.json()["sources"][NYRA] == "budget exhausted"
    assert service.vendor_calls() == 3
    assert nyra.limited_total() == 0


# -- what each vendor's contract asks ----------------------------------------------------


async def test_every_leyr_call_carries_json_content_type_and_an_unknown_id_is_404():
    leyr = LeyrSandbox(seed=5, patients=8)
    service = Service({LEYR: leyr})
    unit = leyr.defaults()["care_units"][0]
    async with service.client() as http:
        bundle = (await http.get("/fhir/Patient", params={"_count": "3"})).json()
        assert (await http.get(f"/fhir/Patient/{bundle['entry'][0]['resource']['id']}")).is_success
        assert (await http.get("/fhir/Appointment", params={"_count": "3"})).is_success
        created = await http.post(
            "/fhir/Patient",
            headers=JSON,
            json={
                "resourceType": "Patient",
                "meta": {"source": LEYR},
                "identifier": [{"system": "urn:oid:1.2.752.129.2.1.3.1", "value": "191212121212"}],
                "name": [{"family": "Tolvansson", "given": ["Tolvan"]}],
                "gender": "male",
                "birthDate": "1912-12-12",
            },
        )
        assert created.status_code == 201, created.text

        asked = service.vendor_calls()
        unknown = await http.get(f"/fhir/Patient/{encode_id(LEYR, '999999', unit)}")
        assert unknown.status_code == 404
        assert issue_of(unknown)["code"] == "not-found"
        assert service.vendor_calls() > asked  # the vendor said so, not the id's shape

    sent = service.calls[LEYR].requests
    assert {r.method for r in sent} == {"GET", "POST"}
    for request in sent:
        media = request.headers.get("content-type", "").split(";")[0].strip()
        assert media == "application/json", f"{request.method} {request.url.path}"


async def test_a_nyra_patient_born_after_today_is_422_and_never_reaches_the_vendor():
    nyra = NyraSandbox(seed=5, patients=6, limits=FAST)
    service = Service({NYRA: nyra})
    held = len(nyra.patients)
    patient = {
        "resourceType": "Patient",
        "meta": {"source": NYRA},
        "name": [{"given": ["Asha"], "family": "Verma"}],
        "telecom": [{"system": "phone", "value": "+919812345678"}],
        "gender": "female",
        # after today wherever today is, the hospital's zone included
        "birthDate": (date.today() + timedelta(days=2)).isoformat(),
    }
    async with service.client() as http:
        r = await http.post("/fhir/Patient", json=patient, headers=JSON)
    assert r.status_code == 422
    issue = issue_of(r)
    assert issue["expression"] == ["Patient.birthDate"] and NYRA in issue["diagnostics"]
    assert len(nyra.patients) == held
    assert service.calls[NYRA].paths("POST") == []


async def test_a_record_its_mapping_refuses_is_502_without_patient_data():
    nyra = NyraSandbox(seed=5, patients=6, limits=FAST)
    bad = list(nyra.patients)[2]
    bad["gender"] = "SOMETHING_ELSE"  # a code outside Nyra's vocabulary
    service = Service({NYRA: nyra})
    async with service.client() as http:
        r = await http.get(f"/fhir/Patient/{encode_id(NYRA, bad['id'])}")
    assert r.status_code == 502
    issue = issue_of(r)
    assert issue["code"] == "processing" and NYRA in issue["diagnostics"]
    assert "cannot be mapped" in issue["diagnostics"]
    for field in ("name", "phone", "email"):
        if bad.get(field):
            assert bad[field] not in r.text
