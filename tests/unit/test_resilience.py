"""The transport through a day and a failing vendor: refused keys recover, a failing
vendor's circuit opens and closes, identical reads share one call, the read cache, the
request's deadline and call budget, the bounded queue."""

from __future__ import annotations

import asyncio
import logging
import random

import httpx
import pytest

from adapter.transport import (
    AuthenticationRejected,
    BudgetRefused,
    CircuitRefused,
    KeyPool,
    NotFound,
    NyraKey,
    RetryPolicy,
    VendorClient,
    VendorTimeout,
    VendorUnavailable,
    make_vendor_http,
    scope,
)
from adapter.transport.circuit import Circuit
from adapter.transport.ratelimit import QueueFull, SlotTooFar

pytestmark = pytest.mark.anyio
SECRETS = ["nyra_public_key_1", "s3cr3t-value", "deadbeefcafe0123"]


def key(n: int = 1) -> NyraKey:
    return NyraKey(f"nyra_public_key_{n}", "s3cr3t-value", "deadbeefcafe0123")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += max(delay, 0.0)
        await asyncio.sleep(0)


class Vendor:
    """A vendor whose answer the test sets; counts the calls it gets."""

    def __init__(self, answer: httpx.Response | Exception | None = None) -> None:
        self.answer: httpx.Response | Exception = answer or ok()
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        await asyncio.sleep(0)
        if isinstance(self.answer, Exception):
            raise self.answer
        return httpx.Response(
            self.answer.status_code, headers=self.answer.headers, content=self.answer.content
        )


def ok(body: bytes = b'{"success": true, "data": 1}') -> httpx.Response:
    return httpx.Response(200, content=body)


def client(vendor: Vendor, pool: KeyPool | None = None, **options) -> VendorClient:
    http = make_vendor_http("http://vendor.test", transport=httpx.MockTransport(vendor))
    options.setdefault("retry", RetryPolicy(attempts=1))
    return VendorClient(
        "nyra-x", http, pool or KeyPool.unlimited([key()]), rng=random.Random(1), **options
    )


# -- keys recover --------------------------------------------------------------------------


async def test_a_refused_key_is_paused_then_probed_and_serves_again(caplog):
    clock = Clock()
    pool = KeyPool.nyra([key()], clock=clock, sleep=clock.sleep)
    vendor = Vendor(httpx.Response(401, json={"success": False, "error": "Unauthorized"}))
    c = client(vendor, pool)
    with caplog.at_level(logging.WARNING, logger="fhir_adapter"):
        with pytest.raises(AuthenticationRejected) as first:
            await c.get_json("/patients")
        assert first.value.retry_after == pytest.approx(30.0)
        assert c.health() == "credentials refused"
        with pytest.raises(AuthenticationRejected):  # paused: the vendor is not asked
            await c.get_json("/patients")
        assert vendor.calls == 1
        clock.now += 30.0  # the probe is due, and still refused: the pause doubles
        with pytest.raises(AuthenticationRejected) as again:
            await c.get_json("/patients")
        assert vendor.calls == 2 and again.value.retry_after == pytest.approx(60.0)
        clock.now += 60.0
        vendor.answer = ok()  # the hospital renewed its token
        assert await c.get_json("/patients") == {"success": True, "data": 1}
        assert c.health() == "up"
    lines = [r.getMessage() for r in caplog.records]
    assert any("refused" in line and "nyra-x" in line and "key-" in line for line in lines)
    assert any("accepts the credentials" in line and "again" in line for line in lines)
    for line in lines:
        for secret in SECRETS:
            assert secret not in line


async def test_the_pause_of_a_refused_key_grows_to_ten_minutes_at_most():
    clock = Clock()
    pool = KeyPool.unlimited([key()])
    pool._clock = clock  # an unlimited pool takes no clock of its own
    c = client(Vendor(httpx.Response(401)), pool)
    waits = []
    for _ in range(8):
        with pytest.raises(AuthenticationRejected) as refused:
            await c.get_json("/x")
        waits.append(refused.value.retry_after)
        clock.now += refused.value.retry_after
    assert waits == [30, 60, 120, 240, 480, 600, 600, 600]


# -- the circuit ---------------------------------------------------------------------------


async def test_a_failing_vendor_opens_the_circuit_and_a_probe_closes_it():
    clock = Clock()
    vendor = Vendor(httpx.Response(503))
    c = client(vendor, circuit=Circuit(failures=3, open_seconds=30, clock=clock))
    for _ in range(3):
        with pytest.raises(VendorUnavailable):
            await c.get_json("/x")
    assert vendor.calls == 3 and c.health() == "circuit open"
    for _ in range(5):  # open: refused at once, the vendor left alone
        with pytest.raises(CircuitRefused) as refused:
            await c.get_json("/x")
    assert vendor.calls == 3
    assert 0 < refused.value.retry_after <= 30
    clock.now += 30
    vendor.answer = ok()
    assert await c.get_json("/x") == {"success": True, "data": 1}  # the half-open probe
    assert c.health() == "up" and vendor.calls == 4


async def test_a_failed_probe_opens_the_circuit_again():
    clock = Clock()
    vendor = Vendor(httpx.ConnectError("refused"))
    c = client(vendor, circuit=Circuit(failures=2, open_seconds=10, clock=clock))
    for _ in range(2):
        with pytest.raises(VendorUnavailable):
            await c.get_json("/x")
    clock.now += 10
    with pytest.raises(VendorUnavailable) as probe:
        await c.get_json("/x")
    assert not isinstance(probe.value, CircuitRefused) and vendor.calls == 3
    with pytest.raises(CircuitRefused):
        await c.get_json("/x")
    assert vendor.calls == 3


async def test_answers_that_are_the_clients_fault_do_not_open_the_circuit():
    vendor = Vendor(httpx.Response(404))
    c = client(vendor, circuit=Circuit(failures=2, open_seconds=10))
    for _ in range(5):
        with pytest.raises(NotFound):
            await c.get_json("/x")
    assert vendor.calls == 5 and c.health() == "up"


# -- one call for identical reads, and the cache -------------------------------------------


async def test_fifty_identical_reads_at_once_make_one_vendor_call():
    vendor = Vendor()
    c = client(vendor)
    answers = await asyncio.gather(*(c.get_json("/patients/1") for _ in range(50)))
    assert vendor.calls == 1 and all(a == {"success": True, "data": 1} for a in answers)
    await c.get_json("/patients/1")  # once answered, a new read asks again
    assert vendor.calls == 2


async def test_a_failure_is_shared_by_the_reads_waiting_for_it_and_never_kept():
    vendor = Vendor(httpx.Response(503))
    c = client(vendor, cache_seconds=60)
    results = await asyncio.gather(*(c.get_json("/x") for _ in range(5)), return_exceptions=True)
    assert vendor.calls == 1 and all(isinstance(r, VendorUnavailable) for r in results)
    vendor.answer = ok()
    assert await c.get_json("/x") == {"success": True, "data": 1}
    assert vendor.calls == 2


async def test_the_read_cache_serves_until_a_write_empties_it():
    vendor = Vendor()
    c = client(vendor, cache_seconds=60)
    for _ in range(3):
        await c.get_json("/patients/1")
    assert vendor.calls == 1
    await c.send("POST", "/patients", {"first_name": "x"})
    assert vendor.calls == 2
    await c.get_json("/patients/1")
    assert vendor.calls == 3


async def test_without_cache_seconds_every_read_asks():
    vendor = Vendor()
    c = client(vendor)
    for _ in range(3):
        await c.get_json("/patients/1")
    assert vendor.calls == 3


# -- the request's deadline and calls ------------------------------------------------------


async def test_a_wait_for_budget_past_the_deadline_is_refused_at_once():
    clock = Clock()
    pool = KeyPool.nyra([key()], clock=clock, sleep=clock.sleep, max_wait=600)
    c = client(Vendor(), pool)
    for _ in range(60):  # the minute's budget, spent
        await c.get_json("/x", {"n": str(clock.now)})
        clock.now += 0.2
    started = clock.now
    with scope.spending(5.0, None), pytest.raises(BudgetRefused) as refused:
        await c.get_json("/x", {"n": "last"})
    assert clock.now == started  # nothing was waited for
    assert refused.value.retry_after > 5.0
    assert c.health() == "budget exhausted"


async def test_a_hanging_vendor_is_cut_off_at_the_deadline():
    cut: list[str] = []

    async def hang(request: httpx.Request) -> httpx.Response:
        try:
            await asyncio.Event().wait()  # the vendor never answers
        except asyncio.CancelledError:
            cut.append(request.url.path)
            raise
        return ok()

    http = make_vendor_http("http://vendor.test", transport=httpx.MockTransport(hang))
    c = VendorClient("nyra-x", http, KeyPool.unlimited([key()]), retry=RetryPolicy(attempts=3))
    # A mock transport has no read timeout of its own: only the deadline can end the call.
    # The safety net fails a client that is not cut off, instead of letting it wait.
    async with asyncio.timeout(60):
        with scope.spending(0.2, None), pytest.raises(VendorTimeout):
            await c.get_json("/x")
    # Cut off once, at the deadline; no retry was begun, since none could end before it.
    assert cut == ["/x"]


async def test_retries_never_sleep_past_the_deadline():
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    vendor = Vendor(httpx.Response(503, headers={"retry-after": "3"}))
    http = make_vendor_http("http://vendor.test", transport=httpx.MockTransport(vendor))
    c = VendorClient(
        "nyra-x", http, KeyPool.unlimited([key()]), retry=RetryPolicy(attempts=5), sleep=sleep
    )
    with scope.spending(2.0, None), pytest.raises(VendorUnavailable):
        await c.get_json("/x")
    assert vendor.calls == 1 and slept == []


async def test_calls_past_the_requests_cap_are_not_made():
    vendor = Vendor()
    c = client(vendor)
    with scope.spending(None, 3), pytest.raises(scope.CallBudgetExceeded) as capped:
        for n in range(5):
            await c.get_json("/x", {"n": str(n)})
    assert vendor.calls == 3 and capped.value.limit == 3


async def test_a_full_queue_is_refused_at_once():
    clock = Clock()
    pool = KeyPool.nyra([key()], clock=clock, sleep=clock.sleep, queue=2)
    pool._waiting = 2  # two requests already wait for this source's keys
    with pytest.raises(QueueFull) as full:
        async with pool.acquire():
            pass
    assert isinstance(full.value, SlotTooFar) and full.value.wait >= 1
