"""A source's circuit shared by three workers through Redis: failures counted in any of
them open it in all, every worker's readiness then names the source as failing, none asks
the vendor while it is open, and once it is due to be tried again exactly one call in all
three is the probe.

Each worker is a vendor client with its own Redis client and budgets, in front of one
vendor that is down (503). Keys are under a source name unique to the test, deleted at
its end."""

from __future__ import annotations

import asyncio
import random
import uuid

import httpx
import pytest
import redis.asyncio as aioredis
from services import needs_redis

from adapter.transport import KeyPool, NyraKey, RetryPolicy, VendorClient, budget, make_vendor_http
from adapter.transport.circuit import Circuit
from adapter.transport.errors import CircuitRefused, VendorUnavailable

REDIS = "redis://127.0.0.1:6379/15"

pytestmark = [pytest.mark.anyio, needs_redis]


class DownVendor:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        await asyncio.sleep(0)
        return httpx.Response(503, json={"success": False})


@pytest.fixture
async def workers():
    source = f"circ-{uuid.uuid4().hex[:10]}"
    vendor = DownVendor()
    redis_clients = [aioredis.Redis.from_url(REDIS, socket_connect_timeout=1) for _ in range(3)]
    before = budget.current()
    made = []
    for client in redis_clients:
        budgets = budget.Budgets(client)
        budget.configure(budgets)
        http = make_vendor_http("http://vendor.test", transport=httpx.MockTransport(vendor))
        made.append(
            (
                VendorClient(
                    source,
                    http,
                    KeyPool.unlimited([NyraKey("k", "s", "t")]),
                    retry=RetryPolicy(attempts=1),
                    circuit=Circuit(failures=3, open_seconds=30.0),
                    rng=random.Random(1),
                ),
                budgets,
            )
        )
    budget.configure(before)
    yield source, vendor, made, redis_clients[0]
    names = [n async for n in redis_clients[0].scan_iter(match=f"fhir-adapter:circuit:{source}*")]
    if names:
        await redis_clients[0].delete(*names)
    for client in redis_clients:
        await client.aclose()


async def states(made) -> list[str]:
    out = []
    for client, budgets in made:
        await budgets.sync_circuits()
        out.append(client.health())
    return out


async def test_a_circuit_opened_anywhere_is_open_everywhere_and_probed_once(workers):
    source, vendor, made, redis = workers
    (first, _), (second, _), (third, _) = made
    for client in (first, first, second):  # three failures in a row, in two workers
        with pytest.raises(VendorUnavailable) as failed:
            await client.get_json("/patients")
        assert not isinstance(failed.value, CircuitRefused)
    assert vendor.calls == 3
    # Open in all three: each worker's readiness names the source as failing...
    assert await states(made) == ["circuit open"] * 3
    # ...and the third, which never failed itself, does not ask the vendor.
    with pytest.raises(CircuitRefused):
        await third.get_json("/patients")
    assert vendor.calls == 3
    # The interval has passed (the opening moved back on Redis's own clock): the three
    # ask at once, and exactly one of them tries the vendor.
    now = float((await redis.time())[0])
    await redis.hset(f"fhir-adapter:circuit:{source}", "opened", str(now - 31))
    answers = await asyncio.gather(
        *(c.get_json("/patients") for c, _ in made), return_exceptions=True
    )
    assert vendor.calls == 4
    assert sorted(type(a).__name__ for a in answers) == [
        "CircuitRefused",
        "CircuitRefused",
        "VendorUnavailable",
    ]
    # The probe failed: open again in all three, and nobody probes again in this interval.
    assert await states(made) == ["circuit open"] * 3
    for client, _ in made:
        with pytest.raises(CircuitRefused):
            await client.get_json("/patients")
    assert vendor.calls == 4
