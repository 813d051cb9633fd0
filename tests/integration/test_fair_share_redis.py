"""A vendor budget shared fairly by several processes through Redis: the waiters are
counted over all of them (the queue sized from the budget), and who asked for the budget
in its window is seen by all, so a client over its share in one worker is told so by
another. Each pool stands for a worker: its own ledger client, its own fair queue.

Needs the Redis server at 127.0.0.1:6379; keys are under a prefix unique to each test,
deleted at its end (no database is flushed)."""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest
import redis.asyncio as aioredis
from services import needs_redis

from adapter.transport import lanes, scope
from adapter.transport.budget import RedisLedger
from adapter.transport.order import Grant
from adapter.transport.ratelimit import KeyPool, Limit, OverShare, QueueFull, SlotTooFar

REDIS = "redis://127.0.0.1:6379/15"

pytestmark = [pytest.mark.anyio, needs_redis]


async def forever(_: float) -> None:
    await asyncio.Event().wait()


class Workers:
    """Three pools over one Nyra key of 2 calls a minute, sharing one budget."""

    def __init__(self) -> None:
        self.source = f"fair-{uuid.uuid4().hex[:10]}"
        self.redis = [aioredis.Redis.from_url(REDIS, socket_connect_timeout=1) for _ in range(3)]
        self.pools = []
        for client in self.redis:
            pool = KeyPool.nyra(["k"], per_second=100, per_minute=2, slack=0.0, sleep=forever)
            pool.bind(self.source, RedisLedger(client, self.source))
            pool.configure_lanes()
            self.pools.append(pool)

    async def close(self) -> None:
        names = [n async for n in self.redis[0].scan_iter(match=f"*:{self.source}:*")]
        if names:
            await self.redis[0].delete(*names)
        for client in self.redis:
            await client.aclose()


@pytest.fixture
async def workers():
    w = Workers()
    yield w
    await w.close()


async def call(pool: KeyPool, client: str, deadline: float | None = None) -> None:
    with lanes.client(client), scope.spending(deadline, None):
        async with pool.acquire():
            pass


async def test_the_queue_is_counted_over_every_worker(workers):
    first, second, third = workers.pools
    # Sized from the budget: 2 calls a minute serve 2 waiters within the longest wait (65 s).
    assert first.queue == 2
    await call(first, "a")
    await call(second, "a")  # the window's budget is spent
    waiting = [
        asyncio.create_task(call(first, "a")),
        asyncio.create_task(call(second, "b")),
    ]
    while first._waiting + second._waiting < 2:
        await asyncio.sleep(0)
    with pytest.raises(QueueFull):  # a third waiter, in a third worker, is one too many
        await call(third, "c")
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_a_client_over_its_share_is_told_so_by_any_worker(workers):
    first, second, third = workers.pools
    await call(first, "a")
    await call(first, "a")  # a has had the window's whole budget, in the first worker
    with pytest.raises(SlotTooFar) as spent:
        await call(second, "b", deadline=5.0)  # b had nothing: spent for everyone
    assert not isinstance(spent.value, OverShare)
    with pytest.raises(OverShare) as over:  # b asked: a is over its half, said by the third
        await call(third, "a", deadline=5.0)
    assert over.value.quota == 1 and math.ceil(over.value.wait) == 60  # its Retry-After


async def test_every_workers_waiters_are_served_in_one_fair_order():
    """a has had a call, and three more of a's wait at the first worker before b's one
    arrives at the second: b is served next (its client's turn), not after a's earlier
    calls, then a's in their order."""
    source = f"fair-{uuid.uuid4().hex[:10]}"
    clients = [aioredis.Redis.from_url(REDIS, socket_connect_timeout=1) for _ in range(3)]
    pools = []
    for client in clients:
        # One call per 0.2 s: each slot frees a window after its answer.
        pool = KeyPool(["k"], [Limit(1, 0.2)], slack=0.0, sleep=forever)
        pool.bind(source, RedisLedger(client, source))
        pool.configure_lanes()
        pools.append(pool)
    served: list[str] = []

    async def take(pool: KeyPool, name: str, client: str) -> None:
        with lanes.client(client):
            async with pool.acquire():
                served.append(name)

    try:
        await take(pools[0], "a0", "a")  # the slot is held for the window from now
        first = [asyncio.create_task(take(pools[0], f"a{i}", "a")) for i in (1, 2, 3)]
        while pools[0].waiting < 3:
            await asyncio.sleep(0)
        second = asyncio.create_task(take(pools[1], "b1", "b"))
        while pools[1].waiting < 1:
            await asyncio.sleep(0)
        await asyncio.gather(*first, second)
        assert served == ["a0", "b1", "a1", "a2", "a3"]
    finally:
        names = [n async for n in clients[0].scan_iter(match=f"*:{source}:*")]
        if names:
            await clients[0].delete(*names)
        for client in clients:
            await client.aclose()


async def test_a_grant_read_before_the_join_has_answered_is_not_lost():
    """Another worker grants a waiter its slot the moment it joins, and this worker's
    listener reads the grant before the join's own answer is seen: the waiter is served
    (the grant is not taken for one whose waiter left, and given back)."""
    source = f"fair-{uuid.uuid4().hex[:10]}"
    clients = [aioredis.Redis.from_url(REDIS, socket_connect_timeout=1) for _ in range(2)]
    pools = []
    for client in clients:
        pool = KeyPool(["k"], [Limit(5, 60.0)], slack=0.0, sleep=forever)
        pool.bind(source, RedisLedger(client, source))
        pool.configure_lanes()
        pools.append(pool)
    mine, other = pools
    assert mine._order is not None and other._order is not None
    order, joined = mine._order, mine._order.join
    wake = f"{order.prefix}:wake:{order.worker}"
    # This worker already listens (as it does while any of its calls waits).
    idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    mine._pending["idle"] = (idle, math.inf)
    mine._listen_task = asyncio.create_task(mine._listen(order))

    async def join_then_granted_elsewhere(*args, **kwargs):
        answer = await joined(*args, **kwargs)
        assert isinstance(await other._grant(other._order), Grant)  # the other worker
        # This worker's listener has read the grant and handled it: it took a nudge
        # pushed after, which it reads only once done with what it read before.
        while await clients[0].llen(wake):
            await asyncio.sleep(0)
        await clients[0].rpush(wake, "*")
        while await clients[0].llen(wake):
            await asyncio.sleep(0)
        return answer

    order.join = join_then_granted_elsewhere
    try:
        with lanes.client("a"), scope.spending(5.0, None):
            async with mine.acquire() as lease:
                assert lease.label == "key"
    finally:
        mine._pending.pop("idle")
        mine._listen_task.cancel()
        await asyncio.gather(mine._listen_task, return_exceptions=True)
        names = [n async for n in clients[0].scan_iter(match=f"*:{source}:*")]
        if names:
            await clients[0].delete(*names)
        for client in clients:
            await client.aclose()


async def test_a_client_over_its_part_of_the_waiting_is_told_so_at_once(workers):
    """The budget is spent; b waits at one worker, a at another. A call of a's that may
    wait 5 s may wait for half of what the budget serves by then (2 calls, so 1), and a
    has one waiting: it is told 429 at once (its share, b waiting), not 503, and not at
    its deadline."""
    first, second, _ = workers.pools
    await call(first, "z")
    await call(first, "z")  # the window's 2 calls are spent
    # These two may wait longer than the slot is away (a minute): they wait.
    waiting = [asyncio.create_task(call(second, "b"))]
    while second._waiting < 1:
        await asyncio.sleep(0)
    waiting.append(asyncio.create_task(call(first, "a")))
    while first._waiting < 1:
        await asyncio.sleep(0)
    with pytest.raises(OverShare) as over:
        await call(first, "a", deadline=5.0)
    assert over.value.quota == 1 and math.ceil(over.value.wait) == 1
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
