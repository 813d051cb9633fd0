"""Vendor budgets shared through Redis: pools in different processes (here: different pools,
each with its own ledger client) draw on one budget per key, together stay under its
limits, and use them nearly fully.

Needs the Redis server at 127.0.0.1:6379; without it the tests are skipped, saying so.
Time is scaled: a "second" of 50 ms and a "minute" of 250 ms, Nyra's counts kept.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis
from services import needs_redis

from adapter.transport import KeyPool, NyraKey
from adapter.transport.budget import Budgets, RedisLedger
from adapter.transport.ratelimit import Limit

REDIS = "redis://127.0.0.1:6379/15"
SECOND, MINUTE = 0.05, 0.25


pytestmark = [pytest.mark.anyio, needs_redis]


def _pool(source: str, client: aioredis.Redis) -> KeyPool:
    pool = KeyPool.nyra(
        [NyraKey("nyra_shared_key", "s", "t")], second_window=SECOND, minute_window=MINUTE
    )
    pool.bind(source, RedisLedger(client, source))
    return pool


async def _work(pool: KeyPool, until: float, starts: list[float]) -> None:
    while time.monotonic() < until:
        async with pool.acquire():
            starts.append(time.monotonic())
            await asyncio.sleep(0.002)  # the vendor's answer takes a moment


async def test_three_processes_share_one_keys_budget():
    source = f"shared-{uuid.uuid4().hex[:8]}"
    clients = [aioredis.Redis.from_url(REDIS, socket_connect_timeout=1) for _ in range(3)]
    pools = [_pool(source, c) for c in clients]
    starts: list[float] = []
    minutes = 8
    until = time.monotonic() + minutes * MINUTE
    try:
        await asyncio.gather(*(_work(p, until, starts) for p in pools for _ in range(4)))
    finally:
        for c in clients:
            await c.aclose()
    starts.sort()
    # No 61 calls within any "minute", no 13 within any "second" (sliding: stricter than
    # the vendor's fixed windows), with a little room for the two clocks' resolution.
    for i in range(len(starts) - 60):
        assert starts[i + 60] - starts[i] >= MINUTE * 0.97
    for i in range(len(starts) - 12):
        assert starts[i + 12] - starts[i] >= SECOND * 0.97
    budget = 60 * minutes
    # Most of the budget is used (a loose floor: the machine may be busy), none past it.
    assert len(starts) >= 0.6 * budget, f"{len(starts)} of {budget}"
    assert len(starts) <= budget + 60


async def test_without_redis_each_of_n_workers_takes_its_share():
    pool = KeyPool.nyra([NyraKey("k", "s", "t")])
    Budgets(redis=None, workers=3).bind("nyra-w", pool)
    assert [(lim.count, lim.window) for lim in pool.limits] == [(4, 1.0), (20, 60.0)]
    Budgets(redis=None, workers=1).bind("nyra-w", pool)
    assert [lim.count for lim in pool.limits] == [12, 60]


async def test_a_vendor_pause_is_seen_by_every_process():
    source = f"pause-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(REDIS, socket_connect_timeout=1)
    try:
        ledger = RedisLedger(client, source)
        other = RedisLedger(client, source)
        await ledger.pause("key-1", 2.0)
        assert 1.5 < await other.paused("key-1") <= 2.0
        wait, ticket = await other.take("key-1", [Limit(12, 1.0)], 10.0)
        assert ticket is None and wait > 1.5
    finally:
        await client.aclose()


async def test_more_calls_at_once_than_a_window_holds_wait_for_answers_not_refusals():
    source = f"flight-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(REDIS, socket_connect_timeout=1)
    pool = KeyPool.nyra([NyraKey("nyra_busy_key", "s", "t")], max_wait=10)  # Nyra's own windows
    pool.bind(source, RedisLedger(client, source))
    done: list[float] = []

    async def call() -> None:
        async with pool.acquire():
            await asyncio.sleep(0.05)  # the vendor takes a moment to answer
            done.append(time.monotonic())

    started = time.monotonic()
    try:
        # 20 at once: 12 start, the other 8 wait for the first answers' second to pass
        await asyncio.gather(*(call() for _ in range(20)))
    finally:
        await client.aclose()
    assert len(done) == 20
    assert max(done) - started < 3.0
