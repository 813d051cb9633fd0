"""Many concurrent calls through one Nyra connector stay under every key's limits, and use
nearly all of them.

Time is scaled down 60-fold (a "second" of 1/60 s, a "minute" of 1 s), keeping Nyra's
counts: 12 per second-window and 60 per minute-window, per key. So one key's budget is 60
requests per (scaled) minute, and a 3-minute run may make at most 180.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from harness import connect, source_config

from adapter.sandbox import NyraSandbox, RateLimits
from mappings import encode_id

pytestmark = pytest.mark.anyio

SCALED = RateLimits(second_window=1 / 60, minute_window=1.0)
MINUTES = 3
WORKERS = 40


async def run(keys: int) -> tuple[int, int, float]:
    """(calls completed within the run, 429s the sandbox answered, budget of the run)."""
    # 200 patients over 40 workers: worker n reads only ids n, n + 40, ... so no two reads
    # in flight are the same (identical reads would share one vendor call).
    sandbox = NyraSandbox(seed=2, patients=200, keys=keys, limits=SCALED)
    config = source_config("nyra", sandbox)
    config["keys"] = [g.credentials() for g in sandbox.api_keys()]
    connector = connect("nyra", sandbox, config, source="nyra-load")
    ids = [encode_id("nyra-load", p["id"]) for p in sandbox.patients]
    done = 0
    started = time.monotonic()
    deadline = started + MINUTES * SCALED.minute_window

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
    budget = SCALED.per_minute * keys * MINUTES
    return done, sandbox.limited_total(), budget


async def test_one_key_no_429s_and_at_least_90_percent_of_the_budget():
    done, limited, budget = await run(1)
    assert limited == 0
    assert done <= budget
    assert done >= 0.9 * budget, f"{done} of {budget}"


async def test_two_keys_give_about_twice_the_throughput():
    one, limited_one, _ = await run(1)
    two, limited_two, budget = await run(2)
    assert limited_one == limited_two == 0
    assert two >= 0.9 * budget
    assert 1.8 <= two / one <= 2.2, (one, two)
    print(f"one key: {one} calls, two keys: {two} calls, of {budget} allowed")
