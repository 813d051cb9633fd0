"""A vendor budget shared by lanes and clients: over random arrivals, nobody drifts from
its weight's share by more than one call while it waits, and no slot is left idle while
anyone may take it.

The world is a budget of ``per_tick`` calls a tick (a window's worth over the window);
each tick some calls arrive (lane, client), then the free slots go, one by one, to the
fair queue's head. The oracle reads the trace alone: for every two clients of a lane (and
every two lanes) and every run of grants during which both waited at each grant, it
counts what each got and checks the start-time fair queueing bound. It knows nothing of
tags or virtual times."""

from __future__ import annotations

import itertools
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from adapter.transport.lanes import DEFAULT_SHARES, LANES, FairQueue, Waiter

CLIENTS = ("a", "b", "c")

arrival = st.tuples(st.sampled_from(LANES), st.sampled_from(CLIENTS))
ticks = st.lists(st.lists(arrival, max_size=6), min_size=1, max_size=40)
weights = st.fixed_dictionaries({c: st.sampled_from([1.0, 2.0, 3.0]) for c in CLIENTS})
shares = st.fixed_dictionaries({name: st.sampled_from([0.1, 0.25, 0.5, 1.0]) for name in LANES})


def run(pattern, weight_of, lane_shares, per_tick, ceiling=None):
    """Play the arrivals; the trace: per grant, who waited (lane -> clients) and who got it."""
    queue = FairQueue(lane_shares)
    trace = []
    bulk_recent: list[int] = []  # ticks of the bulk lane's grants in the current window
    for tick, arrivals in enumerate(pattern):
        for lane, client in arrivals:
            queue.push(Waiter(lane, client, weight_of[client]))
        bulk_recent = [t for t in bulk_recent if t > tick - 1]  # one tick is one window

        def eligible(lane: str, recent: list[int] = bulk_recent) -> bool:
            return ceiling is None or lane != "bulk" or len(recent) < ceiling

        for _ in range(per_tick):
            waiting = {lane: {c for c in CLIENTS if queue.waiting(lane, c)} for lane in LANES}
            takers = [lane for lane in LANES if waiting[lane] and eligible(lane)]
            head = queue.head(eligible)
            # No slot idle while anyone may take it, and nobody served who may not.
            assert (head is None) == (not takers)
            if head is None:
                break
            assert head.lane in takers and head.client in waiting[head.lane]
            queue.served(head)
            if head.lane == "bulk":
                bulk_recent.append(tick)
            trace.append((waiting, head.lane, head.client, tick))
    return trace


def drift_within_bound(trace, who_waits, who_got, weight_of, pairs):
    """The oracle: over every run of grants in which both of a pair waited at each grant,
    |got_x / w_x - got_y / w_y| <= 1 / w_x + 1 / w_y."""
    for x, y in pairs:
        bound = 1 / weight_of[x] + 1 / weight_of[y] + 1e-9
        runs: list[list[int]] = [[]]
        for i, step in enumerate(trace):
            if x in who_waits(step) and y in who_waits(step):
                runs[-1].append(i)
            elif runs[-1]:
                runs.append([])
        for grants in runs:
            for start in range(len(grants)):
                got: Counter[str] = Counter()
                for i in grants[start:]:
                    got[who_got(trace[i])] += 1
                    drift = got[x] / weight_of[x] - got[y] / weight_of[y]
                    assert abs(drift) <= bound, (x, y, dict(got))


@given(ticks, weights, shares, st.integers(1, 4))
def test_clients_of_a_lane_share_by_weight(pattern, weight_of, lane_shares, per_tick):
    trace = run(pattern, weight_of, lane_shares, per_tick)
    for lane in LANES:
        steps = [step for step in trace if step[1] == lane]
        drift_within_bound(
            steps,
            lambda step, lane=lane: step[0][lane],
            lambda step: step[2],
            weight_of,
            itertools.combinations(CLIENTS, 2),
        )


@given(ticks, weights, shares, st.integers(1, 4))
def test_lanes_share_by_their_shares(pattern, weight_of, lane_shares, per_tick):
    trace = run(pattern, weight_of, lane_shares, per_tick)
    drift_within_bound(
        trace,
        lambda step: {lane for lane, clients in step[0].items() if clients},
        lambda step: step[1],
        lane_shares,
        itertools.combinations(LANES, 2),
    )


@given(ticks, weights, st.integers(1, 4), st.integers(1, 3))
def test_a_lane_at_its_ceiling_leaves_the_budget_to_the_others(
    pattern, weight_of, per_tick, ceiling
):
    trace = run(pattern, weight_of, DEFAULT_SHARES, per_tick, ceiling=ceiling)
    bulk_per_tick = Counter(tick for _, lane, _, tick in trace if lane == "bulk")
    assert all(n <= ceiling for n in bulk_per_tick.values())
