"""Vendor budgets shared by every process: each key's slots counted in Redis.

A deployment runs several workers and replicas against one vendor key; each counting its
own calls would together exceed the vendor's limits. With ``[server] redis_url`` every
pool's slots live in Redis and are taken and given back atomically by Lua scripts, by
the same rule as in one process (:mod:`adapter.transport.ratelimit`): a slot is held from
the moment a call is sent until a window after its answer. Times are Redis's own clock
(``TIME``), so processes on hosts with skewed clocks still agree.

Per key and limit, a sorted set holds one member per call: its score is when the slot
frees (for a call in flight, a far bound, so that a process that dies mid-call does not
hold it for ever). A vendor's "wait" (429 ``Retry-After``, ``X-RateLimit-Remaining: 0``)
is shared too, as a key with its own expiry. Who among every process's waiters gets the
next slot is decided in Redis as well (:meth:`RedisLedger.order`,
:mod:`adapter.transport.order`).

Without Redis and with ``--workers N``, each worker takes 1/N of each key's limits
(:func:`configure`), which keeps the vendor's limits at the cost of unused budget when the
load is uneven between workers.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapter.transport.order import RedisOrder
from adapter.transport.ratelimit import KeyPool, Limit

__all__ = ["NAMESPACE", "Budgets", "RedisLedger", "configure", "current"]

# The default beginning of every key the service keeps in Redis ([server] redis_prefix).
NAMESPACE = "fhir-adapter:"

log = logging.getLogger("fhir_adapter")

# KEYS: one sorted set per limit, then the key's pause key.
# ARGV: slack, hold, member, then count and window of each limit.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = #KEYS - 1
local slack = tonumber(ARGV[1])
local wait = 0
local paused = tonumber(redis.call('GET', KEYS[n + 1]) or '0')
if paused > now then wait = paused - now end
local in_flight = false
for i = 1, n do
  local count = tonumber(ARGV[2 + 2 * i])
  local window = tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  local held = redis.call('ZCARD', KEYS[i])
  if held >= count then
    local nth = redis.call('ZRANGE', KEYS[i], held - count, held - count, 'WITHSCORES')
    local frees = tonumber(nth[2])
    if frees > now + window * (1 + slack) then
      in_flight = true  -- held by a call still in flight: its answer frees it
    elseif frees - now > wait then
      wait = frees - now
    end
  end
end
if in_flight and wait == 0 then return 'inf' end
if wait > 0 then return tostring(wait) end
local hold = tonumber(ARGV[2])
for i = 1, n do
  local window = tonumber(ARGV[3 + 2 * i])
  redis.call('ZADD', KEYS[i], now + hold, ARGV[3])
  redis.call('PEXPIRE', KEYS[i], math.ceil((hold + window * (1 + slack)) * 1000))
end
return '0'
"""

# KEYS: the sorted sets; ARGV: slack, member, then the window of each limit.
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local slack = tonumber(ARGV[1])
for i = 1, #KEYS do
  local window = tonumber(ARGV[2 + i])
  redis.call('ZADD', KEYS[i], 'XX', now + window * (1 + slack), ARGV[2])
end
return 1
"""

# KEYS: the pause key; ARGV: seconds.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > held then
  redis.call('SET', KEYS[1], tostring(until_), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
return 1
"""

_PAUSED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
if held > now then return tostring(held - now) end
return '0'
"""


# Who asked for a source's budget in its window, every process's: KEYS: the sorted set;
# ARGV: window, then an entry to add ('' for none). Gives each entry and its age.
_ASKED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[1], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
end
local out = {}
local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #all, 2 do
  out[#out + 1] = all[i]
  out[#out + 1] = tostring(now - tonumber(all[i + 1]))
end
return out
"""


class RedisLedger:
    """One source's slots in Redis, under ``{namespace}budget:{source}:...``."""

    def __init__(
        self, redis: Any, source: str, slack: float = 0.01, namespace: str = NAMESPACE
    ) -> None:
        self._redis = redis
        self._prefix = f"{namespace}budget:{source}"
        self._slack = slack
        self._take = redis.register_script(_TAKE)
        self._release = redis.register_script(_RELEASE)
        self._pause = redis.register_script(_PAUSE)
        self._paused = redis.register_script(_PAUSED)
        self._asked = redis.register_script(_ASKED)

    def _keys(self, key: str, limits: Sequence[Limit]) -> list[str]:
        return [f"{self._prefix}:{key}:{lim.count}/{lim.window:g}" for lim in limits]

    async def take(self, key: str, limits: Sequence[Limit], hold: float) -> tuple[float, Any]:
        member = uuid.uuid4().hex
        args: list[Any] = [self._slack, hold, member]
        for lim in limits:
            args += [lim.count, lim.window]
        keys = [*self._keys(key, limits), f"{self._prefix}:{key}:pause"]
        answer = await self._take(keys=keys, args=args)
        wait = math.inf if answer in (b"inf", "inf") else float(answer)
        return (wait, None) if wait > 0 else (0.0, member)

    async def release(self, key: str, limits: Sequence[Limit], ticket: Any) -> None:
        args: list[Any] = [self._slack, ticket, *(lim.window for lim in limits)]
        await self._release(keys=self._keys(key, limits), args=args)

    def order(self) -> RedisOrder:
        """The one order of every process's waiters for this source's slots (a new
        worker in it: one per pool, that is per process)."""
        return RedisOrder(self._redis, self._prefix, slack=self._slack)

    async def pause(self, key: str, seconds: float) -> None:
        await self._pause(keys=[f"{self._prefix}:{key}:pause"], args=[seconds])

    async def paused(self, key: str) -> float:
        return float(await self._paused(keys=[f"{self._prefix}:{key}:pause"]))

    async def asked(self, entry: str, window: float) -> list[tuple[str, float]]:
        """Note ``entry`` (unless empty) among those who asked for the budget; every entry
        of the last ``window`` seconds, with its age in seconds."""
        got = await self._asked(keys=[f"{self._prefix}:asked"], args=[window, entry])
        items = [v.decode() if isinstance(v, bytes) else str(v) for v in got]
        return [(items[i], float(items[i + 1])) for i in range(0, len(items), 2)]


@dataclass(frozen=True)
class Budgets:
    """How this process draws on vendor budgets: through Redis, or its share of them."""

    redis: Any = None
    workers: int = 1
    # What every key this deployment keeps in Redis begins with ([server] redis_prefix).
    namespace: str = NAMESPACE
    # The lanes' shares of each budget, and the ceilings of those that have one (the bulk
    # lane's is [export] budget_share): adapter.transport.lanes.
    shares: Mapping[str, float] | None = None
    ceilings: Mapping[str, float] = field(default_factory=dict)
    # The pools and shared circuits bound so far, by source (what /readyz shows).
    pools: dict[str, KeyPool] = field(default_factory=dict)
    circuits: dict[str, Any] = field(default_factory=dict)

    def lane_states(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Each limited source's lanes as its pool in this process sees them."""
        return {name: pool.lane_states() for name, pool in self.pools.items() if pool.limits}

    async def sync_circuits(self) -> None:
        """Every shared circuit as Redis has it now (before ``/readyz`` answers); with
        Redis away, each process's own view stands."""
        for shared in list(self.circuits.values()):
            try:
                await shared.sync()
            except Exception:
                continue

    def bind(self, source: str, pool: KeyPool) -> None:
        pool.configure_lanes(self.shares, self.ceilings)
        self.pools[source] = pool
        if not pool.limits:
            pool.bind(source)
            return
        if self.redis is not None:
            pool.bind(source, RedisLedger(self.redis, source, namespace=self.namespace))
            return
        pool.bind(source, share=1 / max(1, self.workers))
        if self.workers > 1:
            shown = ", ".join(f"{lim.count} per {lim.window:g} s" for lim in pool.limits)
            log.warning(
                "source %s: no redis_url, so each of %d workers keeps to 1/%d of each key's "
                "limits (%s a key here)",
                source,
                self.workers,
                self.workers,
                shown,
            )


_current = Budgets()


def configure(budgets: Budgets) -> None:
    """The budgets pools built from now on draw on (the app sets this before it builds
    its connectors)."""
    global _current
    _current = budgets


def current() -> Budgets:
    return _current
