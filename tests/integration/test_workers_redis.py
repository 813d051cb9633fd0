"""Three ``fhir-adapter serve`` workers in front of one Nyra key keep to the key's limits
together, through the budget they count in Redis, and still use most of it.

The real command runs in a subprocess (``serve --workers 3``, ``[server] redis_url``); the
Nyra sandbox runs on a loopback port in a thread of this process, and every request it
receives is timed as it arrives. Time is scaled 20-fold: a "second" of 50 ms and a
"minute" of 3 s, Nyra's counts kept (12 and 60 per key), and the source is configured
with the same windows. Twenty-four clients read distinct patients through the facade
(distinct, so that no two reads in flight are shared into one vendor call) for five
scaled minutes. What is checked is what the vendor sees:

- no request answered 429 (the sandbox counts them);
- no more than 60 arrivals in any of the sandbox's own fixed minute windows
  (``floor(arrival / minute_window)``), the limit the three workers share;
- at least 80% of the key's 60 a minute used in the complete windows of the run: the
  workers do not keep to the limit by leaving the budget idle.

Needs the Redis server at 127.0.0.1:6379 (database 15; every key the run makes is named
after a source name of its own and deleted at the end); without it the test is skipped,
saying so.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
import uuid

import httpx
import redis
from services import needs_redis
from workers import Arrivals, Facade, vendor_on_a_port

from adapter.sandbox import NyraSandbox, RateLimits
from mappings import encode_id

REDIS_URL = "redis://127.0.0.1:6379/15"
SCALED = RateLimits(second_window=0.05, minute_window=3.0)  # Nyra's time, 20 times faster
WORKERS = 3
CLIENTS = 24
MINUTES = 5  # of load; the complete fixed windows among them are measured


pytestmark = needs_redis


def _config(source: str, base_url: str, credentials: dict[str, str]) -> str:
    key = ", ".join(f'{name} = "{value}"' for name, value in credentials.items())
    return f"""
[server]
open_access = true
redis_url = "{REDIS_URL}"
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


def _forget(source: str) -> None:
    """Delete what the run left in Redis (all of it is named after its source)."""
    with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1) as r:
        names = list(r.scan_iter(match=f"fhir-adapter:*:{source}:*", count=1000))
        if names:
            r.delete(*names)


def test_three_workers_share_one_keys_budget_through_redis(tmp_path):
    source = f"nyra-w{uuid.uuid4().hex[:8]}"
    sandbox = NyraSandbox(seed=11, patients=600, keys=1, limits=SCALED)
    arrivals = Arrivals(sandbox.app)
    # Client n reads patients n, n + 24, ...: no two reads in flight are the same.
    paths = [f"/fhir/Patient/{encode_id(source, p['id'])}" for p in sandbox.patients]
    window = SCALED.minute_window
    config = tmp_path / "adapter.toml"
    try:
        with vendor_on_a_port(arrivals) as base_url:
            config.write_text(_config(source, base_url, sandbox.api_keys()[0].credentials()))
            facade = Facade(config, workers=WORKERS)
            try:
                facade.wait_until_started()
                started = time.time()
                until = time.monotonic() + MINUTES * window
                statuses = asyncio.run(_load(facade.base, paths, until))
                ended = time.time()
            finally:
                facade.stop()
    finally:
        _forget(source)

    per_window = collections.Counter(math.floor(t / window) for t in arrivals.times)
    measured = range(math.ceil(started / window), math.floor(ended / window))
    used = sum(per_window[w] for w in measured)
    budget = SCALED.per_minute * len(measured)
    seen = f"per window {[per_window[w] for w in sorted(per_window)]}, answers {dict(statuses)}"

    assert sandbox.limited_total() == 0, seen
    assert max(per_window.values()) <= SCALED.per_minute, seen
    assert len(measured) >= MINUTES - 1, seen
    assert used >= 0.8 * budget, f"{used} of {budget} in {len(measured)} windows; {seen}"
