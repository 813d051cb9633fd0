"""Each vendor fault, as a client of the facade sees it.

For every fault switch of the sandboxes (:class:`adapter.sandbox.Faults`), on each vendor
where it applies, two sources are configured: the faulty one and a healthy one of the
other vendor. The tests pin down what a client then sees, over HTTP and in-process:

- a search across both sources: 200 with the healthy source's records and one
  ``search.mode = outcome`` entry naming the faulty source (or no entry, for a fault that
  does not touch reads);
- a read of a record of the faulty source: its status (502, 503 or 504; 503 and 504 carry
  ``Retry-After``);
- once the fault is switched off, the same search and read are served as before it.

A source that keeps failing opens its circuit: it answers 503 at once, without calling the
vendor, and ``/readyz`` says so, until ``open_seconds`` pass and one probe closes it again.
A Nyra hospital token that is refused pauses the key (30 s the first time): the source
then says its credentials were refused, in the search's outcome, the read's 502 and
``/readyz``. A create whose answer hangs after the vendor committed it is answered with
the record, or with a 504 that truly says whether to send again or to search first; a
client doing as told leaves one record at the vendor.

Every answer is checked on the way (:func:`checked`): anything under ``/fhir`` that is not
2xx is an OperationOutcome, and every ``Retry-After`` is whole seconds. Timeouts are made
short through the faulty source's own read timeout, so the matrix runs in seconds; the
only wait is for a circuit's documented ``open_seconds``.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir_check import validate
from harness import FAST

from adapter.app import create_app
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings

pytestmark = pytest.mark.anyio

LEYR, NYRA = "leyr-a", "nyra-b"
CONFIG = {
    LEYR: {"connector": "leyr", "timezone": "Europe/Stockholm", "emr": "webdoc"},
    NYRA: {"connector": "nyra", "timezone": "Asia/Kolkata"},
}
READ_TIMEOUT = 0.4  # seconds: the faulty source's read timeout
SEARCH = {"_count": "20"}  # 10 from each source
JSON = {"content-type": "application/fhir+json"}
_DIGITS = re.compile(r"[0-9]+")


class Counting(httpx.AsyncBaseTransport):
    """A sandbox's transport that keeps every request reaching the vendor."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


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


class World:
    """Both sandboxes behind one facade; ``faulty`` is the source whose vendor misbehaves
    (its read timeout short, its circuit as given), the other stays healthy."""

    def __init__(self, faulty: str, *, circuit: dict[str, Any] | None = None) -> None:
        self.sandboxes: dict[str, LeyrSandbox | NyraSandbox] = {
            LEYR: LeyrSandbox(seed=11, patients=12),
            NYRA: NyraSandbox(seed=11, patients=12, limits=FAST),
        }
        self.faulty = faulty
        self.healthy = NYRA if faulty == LEYR else LEYR
        sources = {}
        for name, sandbox in self.sandboxes.items():
            config = {**CONFIG[name], **sandbox.defaults(), "retry": {"attempts": 1}}
            if name == faulty:
                config["timeout"] = {"read": READ_TIMEOUT}
                if circuit is not None:
                    config["circuit"] = circuit
            sources[name] = config
        self.calls = {name: Counting(sb.transport()) for name, sb in self.sandboxes.items()}
        settings = Settings(
            open_access=True,
            sources=sources,
            cursor_key=b"c" * 32,
            request_seconds=3.0,
            max_vendor_calls=20,
        )
        self.app = create_app(settings, transports=self.calls)

    @property
    def faults(self):
        return self.sandboxes[self.faulty].faults

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://fhir.test",
            event_hooks={"response": [checked]},
        )

    def vendor_calls(self) -> int:
        return len(self.calls[self.faulty].requests)


def served(response: httpx.Response) -> tuple[list[str], list[dict]]:
    """The ids of a searchset's matches, and its outcome entries."""
    entries = response.json().get("entry", [])
    matches = [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"]
    outcomes = [e["resource"] for e in entries if e["search"]["mode"] == "outcome"]
    return matches, outcomes


def of(source: str, ids: list[str]) -> list[str]:
    return [i for i in ids if i.startswith(f"{source}.")]


def diagnostics(response: httpx.Response) -> str:
    return " ".join(i.get("diagnostics", "") for i in response.json()["issue"])


async def baseline(http: httpx.AsyncClient, world: World) -> tuple[list[str], str]:
    """The search's matches while every vendor is well, and a record of the faulty source."""
    r = await http.get("/fhir/Patient", params=SEARCH)
    assert r.status_code == 200
    matches, outcomes = served(r)
    assert not outcomes and of(world.faulty, matches) and of(world.healthy, matches)
    return matches, of(world.faulty, matches)[0]


# -- the matrix --------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What a client sees while a fault is on: the status of a read of the faulty source's
    record (200: served as usual), and the issue code and words of the search's outcome
    entry for that source (``code`` None: the search has no outcome entry)."""

    status: int
    code: str | None = None
    says: str = ""


HANG = 3.0  # seconds a hanging vendor would take; cut off by READ_TIMEOUT
FAULTS: dict[str, tuple[dict[str, Any], Seen]] = {
    "latency-within-timeout": ({"latency": 0.05}, Seen(200)),
    "latency-past-timeout": ({"latency": HANG}, Seen(504, "timeout", "did not answer in time")),
    "error-500": ({"error_rate": 1.0, "error_status": 500}, Seen(502, "transient", "unavailable")),
    "error-502": ({"error_rate": 1.0, "error_status": 502}, Seen(502, "transient", "unavailable")),
    "error-503": ({"error_rate": 1.0, "error_status": 503}, Seen(503, "transient", "unavailable")),
    # A vendor's own 504 is an answer, not a timeout of ours: a bad gateway.
    "error-504": ({"error_rate": 1.0, "error_status": 504}, Seen(502, "transient", "unavailable")),
    "timeout": (
        {"timeout_rate": 1.0, "hang_seconds": HANG},
        Seen(504, "timeout", "did not answer in time"),
    ),
    # Only writes hang after committing: reads and searches are untouched.
    "hang-after-commit": ({"hang_after_commit": True, "hang_seconds": HANG}, Seen(200)),
    "malformed": ({"malformed_rate": 1.0}, Seen(502, "processing", "unreadable answer")),
}


@pytest.mark.parametrize("faulty", [LEYR, NYRA])
@pytest.mark.parametrize("fault", FAULTS)
async def test_a_fault_is_the_faulty_sources_outcome_and_ends_when_switched_off(faulty, fault):
    switches, seen = FAULTS[fault]
    world = World(faulty)
    async with world.client() as http:
        before, record = await baseline(http, world)
        for name, value in switches.items():
            setattr(world.faults, name, value)

        search = await http.get("/fhir/Patient", params=SEARCH)
        assert search.status_code == 200
        matches, outcomes = served(search)
        # the healthy source's share is served as it was
        assert of(world.healthy, matches) == of(world.healthy, before)
        if seen.code is None:
            assert matches == before and not outcomes
        else:
            assert not of(world.faulty, matches)
            assert "total" not in search.json()  # a count with a source missing is none
            (outcome,) = outcomes
            (issue,) = outcome["issue"]
            assert issue["severity"] == "error" and issue["code"] == seen.code
            assert faulty in issue["diagnostics"] and seen.says in issue["diagnostics"]
            assert world.healthy not in issue["diagnostics"]

        read = await http.get(f"/fhir/Patient/{record}")
        assert read.status_code == seen.status
        if seen.status != 200:
            assert faulty in diagnostics(read) and seen.says in diagnostics(read)
        if seen.status in (503, 504):
            assert "retry-after" in read.headers

        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["sources"][world.healthy] == "up"

        world.faults.reset()
        again = await http.get("/fhir/Patient", params=SEARCH)
        assert again.status_code == 200
        assert served(again) == (before, [])
        assert (await http.get(f"/fhir/Patient/{record}")).status_code == 200
        assert (await http.get("/readyz")).json()["sources"][faulty] == "up"


# -- a write whose answer hangs after the vendor committed it ----------------------------

PNR = "urn:oid:1.2.752.129.2.1.3.1"
NEW_PATIENT = {
    LEYR: {
        "resourceType": "Patient",
        "meta": {"source": LEYR},
        "identifier": [{"system": PNR, "value": "191212121212"}],
        "name": [{"family": "Tolvansson", "given": ["Tolvan"]}],
        "telecom": [{"system": "phone", "value": "+46701234567"}],
        "gender": "male",
        "birthDate": "1912-12-12",
    },
    NYRA: {
        "resourceType": "Patient",
        "meta": {"source": NYRA},
        "name": [{"given": ["Asha"], "family": "Verma"}],
        "telecom": [{"system": "phone", "value": "+919812345678"}],
        "gender": "female",
        "birthDate": "1991-02-03",
    },
}


def patients_held(sandbox: LeyrSandbox | NyraSandbox) -> int:
    if isinstance(sandbox, NyraSandbox):
        return len(sandbox.patients)
    return sum(len(unit) for unit in sandbox.patients.values())


# How a client finds the new patient again: by what it sent.
FIND_NEW = {
    LEYR: {"identifier": f"{PNR}|191212121212"},
    NYRA: {"family": "Verma", "given": "Asha"},
}


@pytest.mark.parametrize("faulty", [LEYR, NYRA])
async def test_a_create_whose_answer_hangs_after_commit_is_told_truly_and_made_once(faulty):
    """The vendor made the patient, then its answer hung. The client gets the patient
    (the service looked and found it), or a 504 saying what to do: send again only when
    nothing was made, else search first. Doing as told leaves exactly one patient."""
    world = World(faulty)
    sandbox = world.sandboxes[faulty]
    held = patients_held(sandbox)
    headers = {**JSON, "Idempotency-Key": "create-after-hang"}
    find = {**FIND_NEW[faulty], "_source": faulty}
    async with world.client() as http:
        world.faults.hang_after_commit = True
        world.faults.hang_seconds = HANG
        first = await http.post("/fhir/Patient", json=NEW_PATIENT[faulty], headers=headers)
        assert patients_held(sandbox) == held + 1  # the vendor committed it
        world.faults.reset()

        # Nyra's patient is looked up by its phone and found at once; Leyr's look-up
        # (the upsert asked again) is made while the vendor still hangs, so it fails
        # too: 504, and the key remembers to look again.
        assert first.status_code == {NYRA: 201, LEYR: 504}[faulty]
        if first.status_code == 201:  # found after the timeout: answered as created
            made = first.json()["id"]
            assert (await http.get(f"/fhir/Patient/{made}")).json() == first.json()
        else:
            assert first.status_code == 504 and "retry-after" in first.headers
            issue = first.json()["issue"][0]
            assert issue["code"] == "timeout" and faulty in issue["diagnostics"]
            # it was made: the answer must not say that nothing was
            assert "search" in issue["diagnostics"] and "no such record" not in issue["diagnostics"]
            found, _ = served(await http.get("/fhir/Patient", params=find))
            (made,) = found
        again = await http.post("/fhir/Patient", json=NEW_PATIENT[faulty], headers=headers)
        # the same key: looked up again before anything is sent, found, made once
        assert again.status_code == 201
        found, _ = served(await http.get("/fhir/Patient", params=find))
        assert found == [made]
    assert patients_held(sandbox) == held + 1


# -- the circuit -------------------------------------------------------------------------

OPEN_SECONDS = 0.2
FAILING = {
    # failures in a row before the circuit opens: the default (5), or as configured
    "errors": ({"error_rate": 1.0}, None),
    "timeouts": ({"timeout_rate": 1.0, "hang_seconds": HANG}, 2),
}


@pytest.mark.parametrize("faulty", [LEYR, NYRA])
@pytest.mark.parametrize("failing", FAILING)
async def test_a_source_that_keeps_failing_opens_its_circuit_until_a_probe_closes_it(
    faulty, failing
):
    switches, failures = FAILING[failing]
    circuit: dict[str, Any] = {"open_seconds": OPEN_SECONDS}
    if failures is not None:
        circuit["failures"] = failures
    world = World(faulty, circuit=circuit)
    async with world.client() as http:
        before, record = await baseline(http, world)
        for name, value in switches.items():
            setattr(world.faults, name, value)

        for _ in range(failures or 5):  # each failure is a call to the vendor
            asked = world.vendor_calls()
            r = await http.get(f"/fhir/Patient/{record}")
            # a vendor failing: 503; one not answering in time: 504
            expected = {"errors": 503, "timeouts": 504}[failing]
            assert r.status_code == expected and "retry-after" in r.headers
            assert world.vendor_calls() == asked + 1

        # open: 503 at once, the vendor not asked, Retry-After the circuit's wait
        asked = world.vendor_calls()
        r = await http.get(f"/fhir/Patient/{record}")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert faulty in diagnostics(r) and "keeps failing" in diagnostics(r)
        search = await http.get("/fhir/Patient", params=SEARCH)
        assert search.status_code == 200
        matches, outcomes = served(search)
        assert matches == of(world.healthy, before)
        (outcome,) = outcomes
        assert faulty in outcome["issue"][0]["diagnostics"]
        assert "keeps failing" in outcome["issue"][0]["diagnostics"]
        assert world.vendor_calls() == asked
        ready = await http.get("/readyz")
        assert ready.status_code == 200  # the healthy source still serves
        assert ready.json()["sources"] == {faulty: "circuit open", world.healthy: "up"}

        # the vendor is well again; once open_seconds pass, one probe closes the circuit
        world.faults.reset()
        await asyncio.sleep(OPEN_SECONDS * 1.5)
        again = await http.get("/fhir/Patient", params=SEARCH)
        assert served(again) == (before, [])
        assert world.vendor_calls() > asked
        assert (await http.get("/readyz")).json()["sources"][faulty] == "up"
        assert (await http.get(f"/fhir/Patient/{record}")).status_code == 200


# -- an expired Nyra hospital token ------------------------------------------------------

FIRST_PAUSE = 30  # seconds before a refused key is tried again (the first time)


async def test_an_expired_nyra_token_is_credentials_refused_until_the_keys_pause_ends():
    world = World(NYRA)
    async with world.client() as http:
        before, record = await baseline(http, world)
        world.faults.expired_token = True

        search = await http.get("/fhir/Patient", params=SEARCH)
        assert search.status_code == 200
        matches, outcomes = served(search)
        assert matches == of(LEYR, before)
        (outcome,) = outcomes
        (issue,) = outcome["issue"]
        assert issue["code"] == "security" and NYRA in issue["diagnostics"]
        assert "refused this service's credentials" in issue["diagnostics"]

        read = await http.get(f"/fhir/Patient/{record}")
        assert read.status_code == 502
        assert "refused this service's credentials" in diagnostics(read)
        assert 1 <= int(read.headers["retry-after"]) <= FIRST_PAUSE  # when it is tried again
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["sources"] == {LEYR: "up", NYRA: "credentials refused"}

        # The token is good again, but the key waits out its pause: no call is made, and
        # the answer says how long is left, in whole seconds.
        world.faults.reset()
        asked = world.vendor_calls()
        read = await http.get(f"/fhir/Patient/{record}")
        assert read.status_code == 502
        assert "refused this service's credentials" in diagnostics(read)
        assert 1 <= int(read.headers["retry-after"]) <= FIRST_PAUSE
        search = await http.get("/fhir/Patient", params=SEARCH)
        assert served(search)[0] == of(LEYR, before)
        assert world.vendor_calls() == asked
        assert (await http.get("/readyz")).json()["sources"][NYRA] == "credentials refused"
