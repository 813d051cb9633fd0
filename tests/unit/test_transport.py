"""The shared vendor transport: typed errors, retries, key rotation, secrets, limits."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from adapter.transport import (
    AuthenticationRejected,
    KeyPool,
    LeyrCredentials,
    NotFound,
    NyraKey,
    PermissionMissing,
    RateLimited,
    RetryPolicy,
    VendorClient,
    VendorRejected,
    VendorTimeout,
    VendorUnavailable,
    VendorValidation,
    classify_status,
    make_vendor_http,
    parse_retry_after,
)

pytestmark = pytest.mark.anyio
SECRETS = ["nyra_public_key_1", "s3cr3t-value", "deadbeefcafe0123"]


def key(n: int = 1) -> NyraKey:
    return NyraKey(f"nyra_public_key_{n}", "s3cr3t-value", "deadbeefcafe0123")


class Vendor:
    """A scripted vendor: answers in order, records what it saw."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def no_sleep(_: float) -> None:
    return None


def client(vendor: Vendor, keys=None, retry=None) -> VendorClient:
    http = make_vendor_http("http://vendor.test", transport=httpx.MockTransport(vendor))
    pool = KeyPool.unlimited(keys or [key()])
    return VendorClient("nyra-x", http, pool, retry=retry, sleep=no_sleep, rng=random.Random(1))


def ok(body=b'{"success": true, "data": 1}', **headers):
    return httpx.Response(200, content=body, headers=headers)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, VendorValidation),
        (401, AuthenticationRejected),
        (403, PermissionMissing),
        (404, NotFound),
        (409, VendorValidation),
        (418, VendorRejected),
        (429, RateLimited),
        (500, VendorUnavailable),
        (502, VendorUnavailable),
        (503, VendorUnavailable),
        (504, VendorUnavailable),
    ],
)
def test_classify_status(status, kind):
    error = classify_status("src", httpx.Response(status, headers={"retry-after": "7"}))
    assert isinstance(error, kind)
    assert error.source == "src"


def test_retry_after_in_both_forms():
    assert parse_retry_after("12", 0) == 12
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490.0) == 0
    assert parse_retry_after("soon", 0) is None


async def test_reads_are_retried_on_temporary_failures():
    vendor = Vendor(
        httpx.Response(503),
        httpx.ConnectError("boom"),
        ok(),
    )
    assert await client(vendor).get_json("/patients") == {"success": True, "data": 1}
    assert len(vendor.seen) == 3


async def test_reads_give_up_after_the_policy_attempts():
    vendor = Vendor(httpx.Response(502))
    with pytest.raises(VendorUnavailable):
        await client(vendor, retry=RetryPolicy(attempts=3)).get_json("/x")
    assert len(vendor.seen) == 3


async def test_a_long_retry_after_is_passed_up_not_waited_for():
    vendor = Vendor(httpx.Response(429, headers={"retry-after": "600"}))
    with pytest.raises(RateLimited) as caught:
        await client(vendor).get_json("/x")
    assert caught.value.retry_after == 600
    assert len(vendor.seen) == 1


async def test_writes_are_never_retried():
    vendor = Vendor(httpx.Response(503), ok())
    with pytest.raises(VendorUnavailable):
        await client(vendor).send("POST", "/appointments", {"a": 1})
    assert len(vendor.seen) == 1


async def test_a_write_timeout_says_the_outcome_is_unknown():
    vendor = Vendor(httpx.ReadTimeout("slow"))
    with pytest.raises(VendorTimeout) as caught:
        await client(vendor).send("POST", "/appointments", {"a": 1})
    assert caught.value.committed_unknown


async def test_a_rejected_key_is_set_aside_and_the_read_goes_on():
    def vendor(request: httpx.Request) -> httpx.Response:
        if request.headers["x-api-key"] == "nyra_public_key_1":
            return httpx.Response(401, json={"success": False, "error": "Unauthorized"})
        return ok()

    c = client(Vendor(ok()), keys=[key(1), key(2)])
    c.http = make_vendor_http("http://v", transport=httpx.MockTransport(vendor))
    for _ in range(3):
        assert await c.get_json("/x") == {"success": True, "data": 1}
    assert c.pool.active() == 1


async def test_all_keys_rejected_is_said_once_per_key_without_a_storm():
    vendor = Vendor(httpx.Response(401))
    c = client(vendor, keys=[key(1), key(2)])
    with pytest.raises(AuthenticationRejected) as caught:
        await c.get_json("/x")
    assert "rotated" in str(caught.value) and "nyra-x" in str(caught.value)
    with pytest.raises(AuthenticationRejected):
        await c.get_json("/x")
    assert len(vendor.seen) == 2  # one call per key, then none


async def test_headers_carry_the_credentials_but_nothing_prints_them():
    vendor = Vendor(httpx.Response(403, json={"message": "Missing required permission: x:y"}))
    c = client(vendor)
    with pytest.raises(PermissionMissing) as caught:
        await c.get_json("/x")
    sent = vendor.seen[0].headers
    assert sent["x-api-key"] == "nyra_public_key_1"
    assert sent["authorization"] == "Bearer deadbeefcafe0123"
    shown = [repr(key()), str(key()), repr(c.pool.keys), str(caught.value), repr(caught.value)]
    shown.append(repr(LeyrCredentials("client-id-1", "s3cr3t-value")))
    for text in shown:
        for secret in [*SECRETS, "client-id-1"]:
            assert secret not in text


def test_a_secret_cannot_be_pickled():
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(key())


class FakeClock:
    """Virtual time: sleeping advances it; nothing waits for real."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += max(delay, 0.0)
        await asyncio.sleep(0)


async def test_limits_hold_per_key_and_keys_add_up():
    clock = FakeClock()
    pool = KeyPool.nyra([key(1), key(2)], clock=clock, sleep=clock.sleep, slack=0.0)
    starts: dict[str, list[float]] = {"a": [], "b": []}
    for _ in range(240):
        async with pool.acquire() as lease:
            starts["a" if lease.key.label == key(1).label else "b"].append(clock.now)
    for times in starts.values():
        assert len(times) == 120
        for i in range(len(times) - 12):
            assert times[i + 12] - times[i] >= 1.0
        for i in range(len(times) - 60):
            assert times[i + 60] - times[i] >= 60.0
    # two keys: 240 requests in a little over two minutes, not four
    assert clock.now - 1000.0 < 121.0


async def test_vendor_remaining_zero_pauses_the_key_until_reset():
    clock = FakeClock()
    wall = [5000.0]
    pool = KeyPool.nyra([key()], clock=clock, sleep=clock.sleep, wall=lambda: wall[0])
    async with pool.acquire() as lease:
        lease.observe({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "5030"}, 200)
    before = clock.now
    async with pool.acquire():
        pass
    assert clock.now - before == pytest.approx(30.0)
