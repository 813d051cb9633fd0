"""A key pool serves its waiters by lane and client: fair order, the bulk lane's ceiling,
and a refusal that tells a client over its share (its own limit) from a budget spent for
everyone. The clock is injected; a waiter that must wait sleeps until the test ends it."""

from __future__ import annotations

import asyncio

import pytest

from adapter.transport import lanes, scope
from adapter.transport.ratelimit import KeyPool, OverShare, SlotTooFar

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pool_of(per_minute: int, clock: Clock, sleep=None, queue=None, **lane_options) -> KeyPool:
    async def forever(_: float) -> None:
        await asyncio.Event().wait()

    pool = KeyPool.nyra(
        ["k"],
        per_second=100,
        per_minute=per_minute,
        slack=0.0,
        clock=clock,
        sleep=sleep or forever,
        queue=queue,
    )
    pool.bind("nyra-t")
    pool.configure_lanes(**lane_options)
    return pool


async def call(pool: KeyPool, client: str, lane: str = "interactive", deadline=None) -> None:
    with lanes.client(client), lanes.lane(lane), scope.spending(deadline, None):
        async with pool.acquire():
            pass


async def until_waiting(pool: KeyPool, n: int, tasks=()) -> None:
    while pool._waiting < n:
        for task in tasks:
            if task.done():
                await task  # it ended instead of waiting: its exception says why
                raise AssertionError("a call was served that should wait")
        await asyncio.sleep(0)


async def test_waiting_clients_are_served_in_turn_whoever_asked_first():
    clock = Clock()
    advance = asyncio.Event()

    async def sleep(seconds: float) -> None:  # the window passes when the test says so
        await advance.wait()
        clock.now += seconds

    pool = pool_of(2, clock, sleep, queue=6)
    await call(pool, "a")
    await call(pool, "a")  # the window's budget is spent
    order: list[str] = []

    async def one(client: str) -> None:
        await call(pool, client)
        order.append(client)

    tasks = [asyncio.create_task(one("a")) for _ in range(4)]
    await until_waiting(pool, 4, tasks)
    tasks += [asyncio.create_task(one("b")) for _ in range(2)]
    await until_waiting(pool, 6, tasks)
    advance.set()
    await asyncio.gather(*tasks)
    # b asked last but has had nothing: it is served first, then in turn with a.
    assert order == ["b", "a", "b", "a", "a", "a"]


async def test_the_bulk_lane_keeps_to_its_ceiling_and_leaves_the_rest():
    clock = Clock()
    pool = pool_of(4, clock, ceilings={"bulk": 0.5})
    await call(pool, "a", "bulk")
    await call(pool, "a", "bulk")
    with pytest.raises(SlotTooFar) as refused:
        await call(pool, "a", "bulk", deadline=5.0)
    assert refused.value.wait == pytest.approx(60.0)
    await call(pool, "b")  # interactive calls still have the other half
    await call(pool, "b")


async def test_over_its_share_while_others_wait_is_the_clients_own_limit():
    clock = Clock()
    pool = pool_of(2, clock)
    clock.now = 1000.0
    await call(pool, "a")
    clock.now = 1010.0
    await call(pool, "a")  # a has had the whole budget of this window
    waiting = asyncio.create_task(call(pool, "b"))  # b waits for the next window
    await until_waiting(pool, 1, [waiting])
    with pytest.raises(OverShare) as over:
        await call(pool, "a", deadline=5.0)
    # a's fair part is half of 2 calls a minute: it has a call left when both of its calls
    # have left the window, at 1070.
    assert over.value.quota == 1 and over.value.wait == pytest.approx(60.0)
    with pytest.raises(SlotTooFar) as spent:
        await call(pool, "c", deadline=5.0)  # c had nothing: the budget is spent for all
    assert not isinstance(spent.value, OverShare)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(OverShare):  # c asked in this window too, and was refused
        await call(pool, "a", deadline=5.0)


async def test_a_client_alone_is_refused_because_the_budget_is_spent():
    clock = Clock()
    pool = pool_of(2, clock)
    await call(pool, "a")
    await call(pool, "a")
    with pytest.raises(SlotTooFar) as alone:
        await call(pool, "a", deadline=5.0)  # nobody else asks: not a's own limit
    assert not isinstance(alone.value, OverShare) and alone.value.wait == pytest.approx(60.0)


async def test_each_grant_tells_the_client_where_it_stands():
    clock = Clock()
    pool = pool_of(6, clock)
    with lanes.client("a") as standing, scope.spending(None, None):
        async with pool.acquire():
            pass
        assert standing == {"nyra-t": (6, 60.0, 5, 60.0)}
        clock.now += 15
        async with pool.acquire():
            pass
        assert standing == {"nyra-t": (6, 60.0, 4, 45.0)}


def test_the_queue_is_sized_from_the_budget():
    clock = Clock()
    # What the budget serves within the longest wait (65 s): 60 calls a minute, 65.
    assert pool_of(60, clock).queue == 65
    assert pool_of(2, clock).queue == 2
    assert pool_of(2, clock, queue=10).queue == 10  # as configured


def test_unknown_lanes_and_shares_are_refused():
    with pytest.raises(ValueError, match="unknown lane 'batch'"), lanes.lane("batch"):
        pass
    with pytest.raises(ValueError, match="unknown lane"):
        lanes.FairQueue({"batch": 0.5})
    with pytest.raises(ValueError, match="above 0"):
        lanes.FairQueue({"bulk": 0.0})
