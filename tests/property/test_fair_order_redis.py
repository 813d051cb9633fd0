"""The fair order of a shared budget kept in Redis, over random arrivals at two or three
workers on one prefix: nobody drifts from its weight's share by more than one call while
it waits, no slot is left idle while anyone waits, and each grant reaches the worker of
its waiter.

The workers are :class:`RedisOrder` instances with worker names of their own and one key
prefix, each with its own Redis connection. Time is injected (the scripts read it rather
than Redis's clock): a budget of ``per_tick`` calls a window of one tick, each slot held
for the window from its grant. Each tick some calls join at the workers, then the workers
take turns asking for grants until the head must wait. The oracle (shared with the
in-process queue's test) reads the trace alone."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st
from services import REDIS_URL, aforget, namespace, needs_redis
from test_fair_share import CLIENTS, drift_within_bound, shares, weights

from adapter.transport.lanes import DEFAULT_SHARES, LANES
from adapter.transport.order import Dropped, Grant, Joined, RedisOrder, Refused, Wait

pytestmark = needs_redis

BIG = 10**6
arrival = st.tuples(st.integers(0, 2), st.sampled_from(LANES), st.sampled_from(CLIENTS))
ticks = st.lists(st.lists(arrival, max_size=6), min_size=1, max_size=25)


class World:
    """Workers sharing one order, on a clock the test moves."""

    def __init__(self, workers: int) -> None:
        self.now = 0.0
        self.prefix = namespace()
        self.clients = [aioredis.Redis.from_url(REDIS_URL) for _ in range(workers)]
        self.orders = [
            RedisOrder(
                client,
                f"{self.prefix}budget:src",
                worker=f"w{i}",
                clock=lambda: self.now,
                slack=0.0,
            )
            for i, client in enumerate(self.clients)
        ]

    async def close(self) -> None:
        await aforget(self.clients[0], self.prefix)
        for client in self.clients:
            await client.aclose()

    async def grant(self, worker: int, per_tick: int, **options) -> Grant | Wait:
        return await self.orders[worker].grant(
            ["k"],
            [(per_tick, 1.0)],
            hold=1.0,
            shares=options.pop("shares", DEFAULT_SHARES),
            **options,
        )

    async def told(self, worker: int) -> list[Grant | Refused | Dropped | None]:
        """What the worker's wake list holds now (read without waiting)."""
        order = self.orders[worker]
        wake = f"{order.prefix}:wake:{order.worker}"
        out: list[Grant | Refused | Dropped | None] = []
        while await self.clients[worker].llen(wake):
            out += await order.events(1.0)
        return out


async def play(pattern, weight_of, lane_shares, per_tick, workers, ceiling=None):
    world = World(workers)
    trace = []
    waiting: dict[str, tuple[int, str, str]] = {}  # waiter -> (worker, lane, client)
    granted: dict[int, set[str]] = {i: set() for i in range(workers)}
    ceilings = {} if ceiling is None else {"bulk": ceiling}
    try:
        for tick, arrivals in enumerate(pattern):
            world.now = tick + 0.5
            for worker, lane, client in arrivals:
                worker %= workers
                wid = uuid.uuid4().hex
                joined = await world.orders[worker].join(
                    wid, lane, client, weight_of[client], ttl=BIG, most=BIG, own=BIG
                )
                assert joined == Joined(True)
                waiting[wid] = (worker, lane, client)
            given_now = 0
            for turn in itertools.count():
                before = {
                    lane: {c for _, at, c in waiting.values() if at == lane} for lane in LANES
                }
                step = await world.grant(
                    turn % workers,
                    per_tick,
                    shares=lane_shares,
                    ceilings=ceilings,
                    ceiling_window=1.0,
                )
                if isinstance(step, Wait):
                    if turn >= workers - 1:  # every worker looked (as each does each beat)
                        break
                    continue
                worker, lane, client = waiting.pop(step.waiter)
                assert step.worker == f"w{worker}"
                granted[worker].add(step.waiter)
                given_now += 1
                trace.append((before, lane, client, tick))
            bulk_open = (
                ceiling is None
                or sum(1 for _, lane, _, t in trace if lane == "bulk" and t == tick) < ceiling
            )
            takers = [w for w in waiting.values() if w[1] != "bulk" or bulk_open]
            # No slot idle while anyone may take it; nobody waits with none left to wait for.
            assert given_now == per_tick or not takers, (given_now, per_tick, takers)
            if not waiting:
                assert step == Wait(None)
        for worker in range(workers):  # each grant was told to its waiter's worker
            told = {e.waiter for e in await world.told(worker) if isinstance(e, Grant)}
            assert told == granted[worker]
    finally:
        await world.close()
    return trace


@settings(max_examples=40, deadline=None)
@given(ticks, weights, shares, st.integers(1, 4), st.integers(2, 3))
def test_clients_of_a_lane_share_by_weight_across_workers(
    pattern, weight_of, lane_shares, per_tick, workers
):
    trace = asyncio.run(play(pattern, weight_of, lane_shares, per_tick, workers))
    for lane in LANES:
        steps = [step for step in trace if step[1] == lane]
        drift_within_bound(
            steps,
            lambda step, lane=lane: step[0][lane],
            lambda step: step[2],
            weight_of,
            itertools.combinations(CLIENTS, 2),
        )


@settings(max_examples=40, deadline=None)
@given(ticks, weights, shares, st.integers(1, 4), st.integers(2, 3))
def test_lanes_share_by_their_shares_across_workers(
    pattern, weight_of, lane_shares, per_tick, workers
):
    trace = asyncio.run(play(pattern, weight_of, lane_shares, per_tick, workers))
    drift_within_bound(
        trace,
        lambda step: {lane for lane, clients in step[0].items() if clients},
        lambda step: step[1],
        lane_shares,
        itertools.combinations(LANES, 2),
    )


@settings(max_examples=25, deadline=None)
@given(ticks, weights, st.integers(1, 4), st.integers(1, 3), st.integers(2, 3))
def test_a_lane_at_its_ceiling_leaves_the_budget_to_the_others_across_workers(
    pattern, weight_of, per_tick, ceiling, workers
):
    trace = asyncio.run(
        play(pattern, weight_of, DEFAULT_SHARES, per_tick, workers, ceiling=ceiling)
    )
    bulk_per_tick = Counter(tick for _, lane, _, tick in trace if lane == "bulk")
    assert all(n <= ceiling for n in bulk_per_tick.values())


@pytest.mark.anyio
async def test_a_worker_that_stopped_leaves_no_waiter_in_front_of_others():
    world = World(2)
    try:
        live, dead = world.orders
        await dead.join("ghost", "interactive", "a", 1.0, ttl=BIG, most=BIG, own=BIG)
        world.now = 1.0
        await live.join("also", "interactive", "a", 1.0, ttl=BIG, most=BIG, own=BIG)
        await live.join("mine", "interactive", "b", 1.0, ttl=BIG, most=BIG, own=BIG)
        # The stopped worker said it was alive until 3.0 (when it joined); at 3.0 it has
        # not said so again. a's ghost is at the head: dropped, a's next call served.
        world.now = 3.0
        assert await world.grant(0, 1) == Grant("also", "w0", "k")
        world.now = 4.0
        assert await world.grant(0, 1) == Grant("mine", "w0", "k")
        assert await world.grant(0, 1) == Wait(None)
        assert await world.told(1) == [None, Dropped("ghost")]  # its join's nudge, then this
    finally:
        await world.close()


@pytest.mark.anyio
async def test_a_full_queue_refuses_the_newest_waiter_of_the_client_most_over_its_share():
    world = World(2)
    try:
        first, second = world.orders
        for wid in ("a1", "a2"):
            assert await first.join(
                wid, "interactive", "a", 1.0, ttl=BIG, most=2, own=BIG
            ) == Joined(True)
        # Full: b (no waiter) takes the place of a's newest, which its worker is told of.
        joined = await second.join("b1", "bulk", "b", 1.0, ttl=BIG, most=2, own=BIG)
        assert joined == Joined(True, "a2", "w0")
        assert await world.told(0) == [None, None, Refused("a2", "b", 1.0)]
        # Now a and b have one each: nobody is over its share, so a third is refused.
        assert await first.join("a3", "interactive", "a", 1.0, ttl=BIG, most=2, own=BIG) == Joined(
            False
        )
        # A client is never queued beyond its own reach (what the budget serves it in time).
        assert await second.join("b2", "bulk", "b", 1.0, ttl=BIG, most=BIG, own=1) == Joined(False)
        assert await world.grant(0, 5) == Grant("a1", "w0", "k")
        assert await world.grant(1, 5) == Grant("b1", "w1", "k")
        assert await world.grant(1, 5) == Wait(None)
    finally:
        await world.close()


@pytest.mark.anyio
async def test_a_waiter_past_its_time_leaves_by_itself():
    world = World(1)
    try:
        (order,) = world.orders
        await order.join("soon", "interactive", "a", 1.0, ttl=2.0, most=BIG, own=BIG)
        await order.join("late", "interactive", "b", 1.0, ttl=BIG, most=BIG, own=BIG)
        world.now = 2.0
        assert await world.grant(0, 1) == Grant("late", "w0", "k")
        assert await world.grant(0, 1) == Wait(None)  # "soon" left at 2.0, unserved
    finally:
        await world.close()


@pytest.mark.anyio
async def test_each_lane_gets_what_its_share_gave_it_among_those_waiting():
    world = World(2)
    try:
        first, second = world.orders
        for i in range(8):
            await first.join(f"i{i}", "interactive", "a", 1.0, ttl=BIG, most=BIG, own=BIG)
            await second.join(f"b{i}", "bulk", "b", 1.0, ttl=BIG, most=BIG, own=BIG)
        got = Counter()
        for _ in range(8):
            step = await world.grant(0, 100)
            assert isinstance(step, Grant)
            got[step.waiter[0]] += 1
        # interactive 0.5 against bulk 0.15 while both wait: 8 calls due 6.15 and 1.85.
        division = await first.division()
        assert division["interactive"] == (got["i"], pytest.approx(8 * 0.5 / 0.65))
        assert division["bulk"] == (got["b"], pytest.approx(8 * 0.15 / 0.65))
        assert got == {"i": 6, "b": 2}
        assert division["writes"] == division["background"] == (0, 0.0)
    finally:
        await world.close()


@pytest.mark.anyio
async def test_a_client_waits_for_no_more_than_its_part_of_what_the_budget_serves_in_time():
    world = World(2)
    try:
        first, second = world.orders

        async def join(order, wid, lane, client):
            got = await order.join(wid, lane, client, 1.0, ttl=BIG, most=BIG, own=6)
            return got.admitted

        assert await join(second, "b1", "interactive", "b")
        # 6 calls in time; a and b of equal weight in the one lane waiting: 3 each.
        assert [await join(first, f"a{i}", "interactive", "a") for i in range(4)] == [
            True,
            True,
            True,
            False,
        ]
        # With bulk waiting too, interactive's part is 0.5 / 0.65 of the 6, a's half of it
        # 2.3: a's next is refused; c's part of bulk's 0.15 / 0.65 is 1 (at least one).
        assert await join(second, "c1", "bulk", "c")
        assert not await join(second, "c2", "bulk", "c")
        assert not await join(first, "a9", "interactive", "a")
        # Refused as over its part while others wait: who they are, for the 429's quota.
        over = await first.join("a10", "interactive", "a", 1.0, ttl=BIG, most=BIG, own=6)
        assert over == Joined(False, over={"b": 1.0})
        alone = await second.join("c3", "bulk", "c", 1.0, ttl=BIG, most=BIG, own=6)
        assert alone == Joined(False, over={})  # its lane's part, the others in other lanes
        # A client alone, with its whole budget's worth waiting: the budget, not its share.
        full = await second.join("d", "writes", "d", 1.0, ttl=BIG, most=BIG, own=0)
        assert full == Joined(False)
    finally:
        await world.close()


@pytest.mark.anyio
async def test_a_short_waiter_does_not_shorten_what_a_long_one_needs_kept():
    world = World(1)
    try:
        (order,) = world.orders
        await order.join("long", "interactive", "a", 1.0, ttl=100.0, most=BIG, own=BIG)
        await order.join("short", "writes", "b", 1.0, ttl=1.0, most=BIG, own=BIG)
        for name in (":w", ":exp", ":tags", ":c:interactive", ":q:interactive:a"):
            assert await world.clients[0].pttl(order.prefix + name) > 100_000, name
        world.now = 50.0  # "short" is gone by its time; "long" is served
        assert await world.grant(0, 1) == Grant("long", "w0", "k")
    finally:
        await world.close()
