"""Vendor budgets shared through Redis: pools in different processes (here: different pools,
each with its own ledger client) draw on one budget per key, together stay under its
limits, and spend all of a window's budget.

Needs the Redis server at 127.0.0.1:6379; without it the tests are skipped, saying so.
Each slot a pool grants is spent on a request to a Nyra sandbox, whose own record is what
is checked: no request refused (429) in its fixed windows, and the budget of the first
window, which begins with the load (:class:`windows.Aligned`), spent to the limit. Time is
scaled 30-fold: a "second" of 1/30 s and a "minute" of 2 s, Nyra's counts kept.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid

import httpx
import pytest
import redis.asyncio as aioredis
from services import REDIS_URL, namespace, needs_redis
from windows import Aligned

from adapter.sandbox import NyraSandbox, RateLimits
from adapter.transport import KeyPool, NyraKey
from adapter.transport.budget import Budgets, RedisLedger
from adapter.transport.ratelimit import Limit

# Every key these tests make is under a prefix of this module's own run.
PREFIX = namespace()
SCALED = RateLimits(second_window=1 / 30, minute_window=2.0)  # Nyra's time, 30 times faster


pytestmark = [pytest.mark.anyio, needs_redis]


def _key(sandbox: NyraSandbox) -> NyraKey:
    grant = sandbox.api_keys()[0]
    return NyraKey(grant.key, grant.secret, grant.token)


async def _forget(client: aioredis.Redis, source: str) -> None:
    """Delete what a test left in Redis (all of it is named after its source)."""
    names = [n async for n in client.scan_iter(match=f"{PREFIX}*:{source}:*", count=1000)]
    if names:
        await client.delete(*names)


async def _work(
    pool: KeyPool,
    vendor: httpx.AsyncClient,
    until: float,
    answers: collections.Counter[int],
) -> None:
    """Requests to the vendor, each in a slot of ``pool``, one after another until
    ``until`` (monotonic)."""
    while time.monotonic() < until:
        async with pool.acquire() as lease:
            r = await vendor.get("/patients", params={"limit": "1"}, headers=lease.key.headers())
            answers[r.status_code] += 1


async def test_three_processes_share_one_keys_budget():
    source = f"shared-{uuid.uuid4().hex[:8]}"
    clock = Aligned(SCALED.minute_window)
    sandbox = NyraSandbox(seed=1, patients=5, limits=SCALED, clock=clock)
    clients = [aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=1) for _ in range(3)]
    pools = []
    for client in clients:
        pool = KeyPool.nyra(
            [_key(sandbox)],
            second_window=SCALED.second_window,
            minute_window=SCALED.minute_window,
        )
        pool.bind(source, RedisLedger(client, source, namespace=PREFIX))
        pools.append(pool)
    answers: collections.Counter[int] = collections.Counter()
    minutes = 3
    try:
        async with httpx.AsyncClient(transport=sandbox.transport(), base_url="http://n") as v:
            clock.arm()
            until = time.monotonic() + minutes * SCALED.minute_window
            await asyncio.gather(*(_work(p, v, until, answers) for p in pools for _ in range(4)))
    finally:
        await _forget(clients[0], source)
        for c in clients:
            await c.aclose()
    charged = sandbox.per_minute_window()
    first = clock.first
    seen = f"charged per window {dict(sorted(charged.items()))}, answers {dict(answers)}"
    # Together within the key's limits, as the vendor counts them: no 429, whether for
    # its "second" or its "minute"...
    assert set(answers) == {200} and sandbox.limited_total() == 0, seen
    assert max(charged.values()) <= SCALED.per_minute, seen
    # ...and the fresh budget of the first window spent to its limit by the three.
    assert charged[first] == SCALED.per_minute, seen


async def test_without_redis_each_of_n_workers_takes_its_share():
    pool = KeyPool.nyra([NyraKey("k", "s", "t")])
    Budgets(redis=None, workers=3).bind("nyra-w", pool)
    assert [(lim.count, lim.window) for lim in pool.limits] == [(4, 1.0), (20, 60.0)]
    Budgets(redis=None, workers=1).bind("nyra-w", pool)
    assert [lim.count for lim in pool.limits] == [12, 60]


PAUSE = 600.0  # seconds: far longer than the test, so that what is left is near all of it


async def test_a_vendor_pause_is_seen_by_every_process():
    source = f"pause-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        ledger = RedisLedger(client, source, namespace=PREFIX)
        other = RedisLedger(client, source, namespace=PREFIX)
        await ledger.pause("key-1", PAUSE)
        assert PAUSE - 60 < await other.paused("key-1") <= PAUSE
        wait, ticket = await other.take("key-1", [Limit(12, 1.0)], 10.0)
        assert ticket is None and PAUSE - 60 < wait <= PAUSE
    finally:
        await _forget(client, source)
        await client.aclose()


async def test_more_calls_at_once_than_a_window_holds_wait_for_answers_not_refusals():
    """20 at once against Nyra's own limits (12 a second): 12 start, the other 8 wait for
    the first answers' second to pass. None is refused by the pool, whose longest wait
    here is two seconds (a wait for the minute would be refused), and the vendor, its
    second begun with the calls, refuses none (so the 8 did wait)."""
    source = f"flight-{uuid.uuid4().hex[:8]}"
    clock = Aligned(1.0)
    sandbox = NyraSandbox(seed=1, patients=5, limits=RateLimits(), clock=clock)
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    pool = KeyPool.nyra([_key(sandbox)], max_wait=2)
    pool.bind(source, RedisLedger(client, source, namespace=PREFIX))
    answers: collections.Counter[int] = collections.Counter()

    async def call(vendor: httpx.AsyncClient) -> None:
        async with pool.acquire() as lease:
            r = await vendor.get("/patients", params={"limit": "1"}, headers=lease.key.headers())
            answers[r.status_code] += 1

    try:
        async with httpx.AsyncClient(transport=sandbox.transport(), base_url="http://n") as v:
            clock.arm()
            await asyncio.gather(*(call(v) for _ in range(20)))
    finally:
        await _forget(client, source)
        await client.aclose()
    assert answers == {200: 20}
    assert sandbox.limited_total() == 0
