"""Sandbox faults, and what the connectors and transport make of them."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from harness import connect, source_config

from adapter.connectors.nyra.errors import classify
from adapter.connectors.registry import create_connector
from adapter.fhir.search import SearchRequest
from adapter.sandbox import Faults, LeyrSandbox, NyraSandbox
from adapter.transport import (
    AuthenticationRejected,
    KeyPool,
    MalformedResponse,
    NyraKey,
    VendorClient,
    VendorTimeout,
    VendorUnavailable,
    make_vendor_http,
)

pytestmark = pytest.mark.anyio
FAST_RETRY = {"attempts": 3, "base": 0.001, "cap": 0.002}
SHORT = {"read": 0.05, "connect": 0.05}


class Counting(httpx.AsyncBaseTransport):
    """Counts the requests that reach the vendor."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return await self.inner.handle_async_request(request)


def counted(vendor: str, sandbox, **extra):
    transport = Counting(sandbox.transport())
    config = source_config(vendor, sandbox, **{"retry": FAST_RETRY, **extra})
    return create_connector(f"{vendor}-faulty", config, transport=transport), transport


@pytest.mark.parametrize("vendor,make", [("leyr", LeyrSandbox), ("nyra", NyraSandbox)])
async def test_5xx_reads_are_retried_then_reported(vendor, make):
    sandbox = make(patients=5, faults=Faults(error_rate=1.0))
    c, transport = counted(vendor, sandbox)
    with pytest.raises(VendorUnavailable) as info:
        await c.search(SearchRequest("Patient"))
    await c.aclose()
    assert transport.sent == 3  # attempts in all
    assert info.value.status == 503 and f"{vendor}-faulty" in str(info.value)


async def test_a_share_of_5xx_is_absorbed_by_retries():
    sandbox = LeyrSandbox(patients=5, faults=Faults(error_rate=0.3, seed=4))
    c, transport = counted("leyr", sandbox, retry={"attempts": 6, "base": 0.001, "cap": 0.001})
    for _ in range(10):
        page = await c.search(SearchRequest("Patient"))
        assert len(page.resources) == 5
    await c.aclose()
    assert transport.sent > 20  # two care units a search, and some tried again


@pytest.mark.parametrize("vendor,make", [("leyr", LeyrSandbox), ("nyra", NyraSandbox)])
async def test_malformed_bodies_are_typed_errors(vendor, make):
    sandbox = make(patients=5, faults=Faults(malformed_rate=1.0))
    c, _ = counted(vendor, sandbox)
    with pytest.raises(MalformedResponse):
        await c.search(SearchRequest("Patient"))
    await c.aclose()


class Hangs:
    """A sandbox's ``sleep`` for hangs that never end on their own: only the client's
    timeout, cancelling the call, ends one. ``cut`` holds each hang so ended."""

    def __init__(self) -> None:
        self.cut: list[float] = []

    async def __call__(self, seconds: float) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cut.append(seconds)
            raise


class Waits:
    """A sandbox's ``sleep`` that records what it is asked to wait, and returns at once."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


async def test_a_hanging_vendor_times_out_on_each_attempt():
    sandbox = LeyrSandbox(patients=5, faults=Faults(timeout_rate=1.0, hang_seconds=30))
    hangs = sandbox.app.sleep = Hangs()
    c, transport = counted("leyr", sandbox, timeout=SHORT)
    # A safety net only: without the read timeout the search would wait for ever.
    async with asyncio.timeout(60):
        with pytest.raises(VendorTimeout):
            await c.search(SearchRequest("Patient"))
    await c.aclose()
    assert transport.sent == 3
    assert hangs.cut == [30, 30, 30]  # each attempt's hang was cut off by the timeout


async def test_latency_is_added():
    """To every answer: asked of the sandbox's sleep once per vendor call."""
    sandbox = LeyrSandbox(patients=2, faults=Faults(latency=0.05))
    waits = sandbox.app.sleep = Waits()
    c, transport = counted("leyr", sandbox)
    await c.search(SearchRequest("Patient"))
    sent = transport.sent
    assert sent >= 2 and waits.asked == [0.05] * sent  # each call, both care units'
    sandbox.faults.reset()
    await c.search(SearchRequest("Patient", count=1))
    assert transport.sent > sent and waits.asked == [0.05] * sent  # answered, none added
    await c.aclose()


async def test_an_expired_nyra_token_names_the_source_and_is_not_retried():
    sandbox = NyraSandbox(patients=5)
    c, transport = counted("nyra", sandbox)
    assert len((await c.search(SearchRequest("Patient"))).resources) == 5
    sandbox.expire_token(sandbox.api_keys()[0])
    for _ in range(3):
        with pytest.raises(AuthenticationRejected) as info:
            await c.search(SearchRequest("Patient"))
        assert "nyra-faulty" in str(info.value) and "rotated" in str(info.value)
        assert sandbox.api_keys()[0].token not in str(info.value)
    await c.aclose()
    assert transport.sent == 2  # one that worked, one refused; then no more calls


async def test_with_two_keys_a_rejected_one_is_set_aside():
    sandbox = NyraSandbox(patients=5, keys=2)
    first, second = sandbox.api_keys()
    config = source_config("nyra", sandbox)
    config["keys"] = [first.credentials(), second.credentials()]
    c = connect("nyra", sandbox, config)
    sandbox.expire_token(first)
    for _ in range(4):
        assert len((await c.search(SearchRequest("Patient"))).resources) == 5
    await c.aclose()
    assert first.requests <= 1 and second.requests >= 4


async def test_a_write_that_hangs_after_commit_is_a_timeout_that_may_have_happened():
    kolkata = ZoneInfo("Asia/Kolkata")
    sandbox = NyraSandbox(patients=3, faults=Faults(hang_after_commit=True, hang_seconds=30))
    grant = sandbox.api_keys()[0]
    http = make_vendor_http(
        "http://nyra", timeout=httpx.Timeout(0.05), transport=sandbox.transport()
    )
    client = VendorClient(
        "nyra-w", http, KeyPool([NyraKey(grant.key, grant.secret, grant.token)]), classify
    )
    day = datetime.now(kolkata).date() + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    body = {
        "patient_id": next(iter(sandbox.patients))["id"],
        "doctor_id": next(iter(sandbox.doctors))["id"],
        "appointment_date": day.isoformat(),
        "appointment_time": "12:00:00",
    }
    before = len(sandbox.appointments)
    with pytest.raises(VendorTimeout) as info:
        await client.send("POST", "/appointments", body)
    assert info.value.committed_unknown is True
    assert len(sandbox.appointments) == before + 1  # the vendor did it
    assert grant.requests == 1  # and the write was not sent again
    await client.aclose()


async def test_the_expired_token_switch_from_configuration():
    from adapter.sandbox import sandbox_for

    sandbox = sandbox_for("nyra", {"patients": 3, "faults": {"expired_token": True}}, {})
    c, transport = counted("nyra", sandbox)
    with pytest.raises(AuthenticationRejected, match="rotated"):
        await c.search(SearchRequest("Patient"))
    sandbox.faults.reset()
    with pytest.raises(AuthenticationRejected):  # the key was set aside: no retry storm
        await c.search(SearchRequest("Patient"))
    await c.aclose()
    assert transport.sent == 1
