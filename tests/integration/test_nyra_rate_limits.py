"""Many concurrent calls through one Nyra connector stay under every key's limits, and
spend all of a window's budget.

Time is scaled down 30-fold (a "second" of 1/30 s, a "minute" of 2 s), keeping Nyra's
counts: 12 per second-window and 60 per minute-window, per key. The sandbox's windows
begin with the run (:class:`windows.Aligned`), and what is checked is the sandbox's own
record: no request refused (429), no minute window charged past the limit, and the first
window charged exactly the limit, per key (a fresh budget, forty callers waiting: all of
it is used, none held back). How much of the budget a long run uses over time is a
figure of the machine as well, and is measured by ``bench/bench_ratelimit.py``.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from harness import connect, source_config
from windows import Aligned

from adapter.sandbox import NyraSandbox, RateLimits
from mappings import encode_id

pytestmark = pytest.mark.anyio

SCALED = RateLimits(second_window=1 / 30, minute_window=2.0)
MINUTES = 3
WORKERS = 40


async def run(keys: int) -> tuple[int, NyraSandbox, int]:
    """(calls completed within the run, the sandbox, the number of the run's first
    minute window)."""
    # 200 patients over 40 workers: worker n reads only ids n, n + 40, ... so no two reads
    # in flight are the same (identical reads would share one vendor call).
    clock = Aligned(SCALED.minute_window)
    sandbox = NyraSandbox(seed=2, patients=200, keys=keys, limits=SCALED, clock=clock)
    config = source_config("nyra", sandbox)
    config["keys"] = [g.credentials() for g in sandbox.api_keys()]
    connector = connect("nyra", sandbox, config, source="nyra-load")
    ids = [encode_id("nyra-load", p["id"]) for p in sandbox.patients]
    done = 0
    clock.arm()
    deadline = time.monotonic() + MINUTES * SCALED.minute_window

    async def worker(n: int) -> None:
        nonlocal done
        i = n
        while True:
            await connector.read("Patient", ids[i % len(ids)])
            if time.monotonic() > deadline:
                return
            done += 1
            i += WORKERS

    await asyncio.gather(*(worker(n) for n in range(WORKERS)))
    await connector.aclose()
    assert clock.first is not None, "the sandbox was not called"
    return done, sandbox, clock.first


async def test_one_key_no_429s_and_at_least_90_percent_of_the_budget():
    """No 429, and all of a window's budget used: the whole 60 charged in the first
    window (the share over a long run is bench_ratelimit.py's figure)."""
    done, sandbox, first = await run(1)
    (grant,) = sandbox.api_keys()
    seen = f"charged per window {dict(sorted(grant.minutes.items()))}"
    assert sandbox.limited_total() == 0, seen
    assert max(grant.minutes.values()) <= SCALED.per_minute, seen
    assert grant.minutes[first] == SCALED.per_minute, seen
    # Completed within the run's windows, so charged in them: never past their budget.
    assert done <= SCALED.per_minute * MINUTES


async def test_two_keys_give_about_twice_the_throughput():
    """Two keys: each charged its whole 60 in the first window, twice one key's."""
    _, one, first_one = await run(1)
    done, two, first_two = await run(2)
    assert one.limited_total() == two.limited_total() == 0
    assert one.per_minute_window()[first_one] == SCALED.per_minute
    # Both keys' budgets spent in the first window, each to its limit and not past it.
    assert [g.minutes[first_two] for g in two.api_keys()] == [SCALED.per_minute] * 2
    assert all(max(g.minutes.values()) <= SCALED.per_minute for g in two.api_keys())
    assert done <= 2 * SCALED.per_minute * MINUTES
