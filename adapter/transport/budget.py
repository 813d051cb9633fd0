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
is shared too, as a key with its own expiry.

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

from adapter.transport.ratelimit import KeyPool, Limit

__all__ = ["Budgets", "RedisLedger", "configure", "current"]

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


class RedisLedger:
    """One source's slots in Redis, under ``fhir-adapter:budget:{source}:...``."""

    def __init__(self, redis: Any, source: str, slack: float = 0.01) -> None:
        self._redis = redis
        self._prefix = f"fhir-adapter:budget:{source}"
        self._slack = slack
        self._take = redis.register_script(_TAKE)
        self._release = redis.register_script(_RELEASE)
        self._pause = redis.register_script(_PAUSE)
        self._paused = redis.register_script(_PAUSED)

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

    async def pause(self, key: str, seconds: float) -> None:
        await self._pause(keys=[f"{self._prefix}:{key}:pause"], args=[seconds])

    async def paused(self, key: str) -> float:
        return float(await self._paused(keys=[f"{self._prefix}:{key}:pause"]))


@dataclass(frozen=True)
class Budgets:
    """How this process draws on vendor budgets: through Redis, or its share of them."""

    redis: Any = None
    workers: int = 1
    # The lanes' shares of each budget, and the ceilings of those that have one (the bulk
    # lane's is [export] budget_share): adapter.transport.lanes.
    shares: Mapping[str, float] | None = None
    ceilings: Mapping[str, float] = field(default_factory=dict)

    def bind(self, source: str, pool: KeyPool) -> None:
        pool.configure_lanes(self.shares, self.ceilings)
        if not pool.limits:
            pool.bind(source)
            return
        if self.redis is not None:
            pool.bind(source, RedisLedger(self.redis, source))
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
