"""Three ``fhir-adapter serve`` workers in front of one Nyra key keep to the key's limits
together, through the budget they count in Redis, and spend all of it.

The real command runs in a subprocess (``serve --workers 3``, ``[server] redis_url``); the
Nyra sandbox runs on a loopback port in a thread of this process. Time is scaled 10-fold:
a "second" of 100 ms and a "minute" of 6 s, Nyra's counts kept (12 and 60 per key), and
the source is configured with the same windows. Twenty-four clients read distinct patients
through the facade (distinct, so that no two reads in flight are shared into one vendor
call) for three scaled minutes. What is checked is the sandbox's own record of what it
charged the key, in its fixed windows, the first of which begins with the load
(:class:`windows.Aligned`):

- no request answered 429;
- no minute window charged past the 60 the three workers share;
- the first window, a fresh budget with 24 clients waiting, charged exactly 60: the
  workers do not keep to the limit by leaving the budget idle;
- every client answered 200: what waits for budget is served, not refused.

How much of the budget a run uses over time is measured by ``bench/bench_load.py``.

Needs the Redis server at 127.0.0.1:6379 (every key the run makes is under a
``redis_prefix`` of its own, deleted at the end); without it the test is skipped, saying so
(under ``CI=true`` it fails).
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid

import httpx
from services import REDIS_URL, forget, namespace, needs_redis
from windows import Aligned
from workers import Facade, vendor_on_a_port

from adapter.sandbox import NyraSandbox, RateLimits
from mappings import encode_id

SCALED = RateLimits(second_window=0.1, minute_window=6.0)  # Nyra's time, 10 times faster
WORKERS = 3
CLIENTS = 24
MINUTES = 3  # of load


pytestmark = needs_redis


def _config(source: str, base_url: str, credentials: dict[str, str], prefix: str) -> str:
    key = ", ".join(f'{name} = "{value}"' for name, value in credentials.items())
    return f"""
[server]
open_access = true
redis_url = "{REDIS_URL}"
redis_prefix = "{prefix}"
shutdown_seconds = 1

[sources.{source}]
connector = "nyra"
base_url = "{base_url}"
timezone = "Asia/Kolkata"
keys = [{{ {key} }}]
rate_limit = {{ second_window = {SCALED.second_window}, minute_window = {SCALED.minute_window} }}
"""


async def _load(base: str, paths: list[str], until: float) -> collections.Counter[int | str]:
    """``CLIENTS`` clients, each reading its own paths one after another until ``until``
    (monotonic); the count of each status (or failure) the facade answered."""
    statuses: collections.Counter[int | str] = collections.Counter()

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            i = n
            while time.monotonic() < until:
                try:
                    r = await c.get(paths[i % len(paths)])
                    statuses[r.status_code] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                i += CLIENTS

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return statuses


def test_three_workers_share_one_keys_budget_through_redis(tmp_path):
    source = f"nyra-w{uuid.uuid4().hex[:8]}"
    prefix = namespace()
    clock = Aligned(SCALED.minute_window)
    sandbox = NyraSandbox(seed=11, patients=600, keys=1, limits=SCALED, clock=clock)
    # Client n reads patients n, n + 24, ...: no two reads in flight are the same.
    paths = [f"/fhir/Patient/{encode_id(source, p['id'])}" for p in sandbox.patients]
    config = tmp_path / "adapter.toml"
    try:
        with vendor_on_a_port(sandbox.app) as base_url:
            config.write_text(
                _config(source, base_url, sandbox.api_keys()[0].credentials(), prefix)
            )
            facade = Facade(config, workers=WORKERS)
            try:
                facade.wait_until_started()
                clock.arm()
                until = time.monotonic() + MINUTES * SCALED.minute_window
                statuses = asyncio.run(_load(facade.base, paths, until))
            finally:
                facade.stop()
    finally:
        forget(prefix)

    (grant,) = sandbox.api_keys()
    first = clock.first
    charged = dict(sorted(grant.minutes.items()))
    seen = f"charged per window {charged}, answers {dict(statuses)}"
    assert sandbox.limited_total() == 0, seen
    assert max(charged.values()) <= SCALED.per_minute, seen
    assert charged[first] == SCALED.per_minute, seen
    assert set(statuses) == {200}, seen
