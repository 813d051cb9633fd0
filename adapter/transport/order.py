"""One fair order of a shared vendor budget's waiters, kept in Redis for every worker.

With ``[server] redis_url`` every worker and replica draws on one budget per vendor key
(:class:`adapter.transport.budget.RedisLedger`). Who among all their waiting calls gets
the next slot is decided here, in Redis, by the same start-time fair queueing as in one
process (:mod:`adapter.transport.lanes`): lanes by share, then a lane's clients by weight,
then each client's calls in order. The tags, the waiters and the lanes' calls of the
window (for a ceiling) live under ``{namespace}budget:{source}:fq``; scripts change them
atomically on Redis's clock:

- **join**: a call starts waiting. The queue is counted over every worker; a client is
  not queued beyond what the whole budget serves before its deadline, nor beyond its
  part of that (its lane's share among the lanes waiting, its weight among its lane's
  clients waiting), and when the queue is full a client under its share takes the place
  of the newest waiter of the client furthest over its share, which is refused at once
  (429 to its client).
- **grant**: give the head of the order a slot, if one is free on a key, and tell its
  worker; else say how long until one may be. Any worker may run it, as often as it
  likes: it only ever serves the head, so every worker's waiters are served in one
  order. A head whose worker has stopped saying it is alive is dropped (a worker that
  died leaves no waiter in front of others).
- **freed**: a call was answered; every worker with waiters is woken to look again.

Each worker has a wake list in Redis (``...:fq:wake:{worker}``) and waits on it with a
blocking pop: a grant to one of its waiters, a waiter refused to make room, or a nudge
wakes it at once. Between events it runs **grant** when the head's slot is due (and at
least every ``beat`` seconds, which also keeps it alive in the order).

``now`` may be injected (``clock``) for tests: every script then reads it instead of
Redis's ``TIME``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapter.transport.lanes import DEFAULT_SHARES, LANES

__all__ = ["Dropped", "Grant", "Joined", "RedisOrder", "Refused", "Wait"]

# Shared by every script: the time, the tags, and how a waiter leaves.
_PRELUDE = """
local P = KEYS[1]
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function num(x) return string.format('%.17g', x) end
-- Keep ``key`` at least ``ms`` from now (never shortened: another waiter may need longer).
local function keep(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
local function split(s)
  local out = {}
  for part in string.gmatch(s, '([^\\n]*)\\n?') do out[#out + 1] = part end
  return out
end
local function tag(field, virtual)
  local v = redis.call('HGET', P .. ':tags', field)
  if v then return tonumber(v) end
  return tonumber(redis.call('HGET', P .. ':tags', virtual) or '0')
end
local function wake(field, virtual)
  local t = tonumber(redis.call('HGET', P .. ':tags', field) or '0')
  local v = tonumber(redis.call('HGET', P .. ':tags', virtual) or '0')
  if v > t then t = v end
  redis.call('HSET', P .. ':tags', field, num(t))
end
local function served(field, virtual, weight)
  local start = tag(field, virtual)
  local v = tonumber(redis.call('HGET', P .. ':tags', virtual) or '0')
  if start > v then redis.call('HSET', P .. ':tags', virtual, num(start)) end
  redis.call('HSET', P .. ':tags', field, num(start + 1 / weight))
end
local function forget(field, virtual)
  local t = redis.call('HGET', P .. ':tags', field)
  local v = tonumber(redis.call('HGET', P .. ':tags', virtual) or '0')
  if t and tonumber(t) <= v then redis.call('HDEL', P .. ':tags', field) end
end
-- A waiter leaves (served, given up, refused or of a dead worker): lane, client, weight,
-- worker; nil when it was not waiting.
local function drop(wid)
  local info = redis.call('HGET', P .. ':w', wid)
  if not info then return nil end
  local f = split(info)
  local lane, client = f[1], f[2]
  redis.call('HDEL', P .. ':w', wid)
  redis.call('ZREM', P .. ':exp', wid)
  local q = P .. ':q:' .. lane .. ':' .. client
  redis.call('ZREM', q, wid)
  if redis.call('HINCRBY', P .. ':per', client, -1) <= 0 then
    redis.call('HDEL', P .. ':per', client)
  end
  if redis.call('ZCARD', q) == 0 then
    redis.call('SREM', P .. ':c:' .. lane, client)
    forget('C:' .. lane .. ':' .. client, 'VC:' .. lane)
    if redis.call('SCARD', P .. ':c:' .. lane) == 0 then forget('L:' .. lane, 'VL') end
  end
  return f
end
local function purge()
  for _, wid in ipairs(redis.call('ZRANGEBYSCORE', P .. ':exp', '-inf', num(now))) do
    drop(wid)
  end
end
local function tell(worker, message, keep_ms)
  local list = P .. ':wake:' .. worker
  redis.call('RPUSH', list, message)
  keep(list, keep_ms)
end
local function alive(worker, until_)
  redis.call('ZADD', P .. ':alive', num(until_), worker)
  redis.call('PEXPIRE', P .. ':alive', math.ceil((until_ - now) * 1000) + 60000)
end
"""

# ARGV: now, worker, alive seconds, waiter, lane, client, weight, seconds it may wait,
# most waiters of every worker, most calls the budget serves before the waiter's deadline,
# then each lane's share (interactive, writes, bulk, background).
# {'1'}: waiting; {'0'}: not admitted; {'1', evicted, its worker}: waiting in its place;
# {'p', client, weight, ...}: not admitted, over its part while those clients wait.
_JOIN = (
    _PRELUDE
    + """
local me, wid, lane, client = ARGV[2], ARGV[4], ARGV[5], ARGV[6]
local weight, ttl = tonumber(ARGV[7]), tonumber(ARGV[8])
local most, own = tonumber(ARGV[9]), tonumber(ARGV[10])
purge()
local mine = tonumber(redis.call('HGET', P .. ':per', client) or '0')
if mine >= own then return {'0'} end
-- Nor beyond its part of them: its lane's share among the lanes waiting, times its weight
-- among the clients waiting in its lane.
local names = {'interactive', 'writes', 'bulk', 'background'}
local share, shares = 0, 0
for i, l in ipairs(names) do
  local s = tonumber(ARGV[10 + i])
  if l == lane then share = s end
  if l == lane or redis.call('SCARD', P .. ':c:' .. l) > 0 then shares = shares + s end
end
local weights = weight
for _, c in ipairs(redis.call('SMEMBERS', P .. ':c:' .. lane)) do
  if c ~= client then weights = weights + tonumber(redis.call('HGET', P .. ':cw', c) or '1') end
end
local part = math.max(1, math.floor(own * share / shares * weight / weights + 1e-9))
if redis.call('ZCARD', P .. ':q:' .. lane .. ':' .. client) >= part then
  if part >= own then return {'0'} end
  -- Over its part while others wait: the others of its lane, with their weights.
  local out = {'p'}
  for _, c in ipairs(redis.call('SMEMBERS', P .. ':c:' .. lane)) do
    if c ~= client then
      out[#out + 1] = c
      out[#out + 1] = redis.call('HGET', P .. ':cw', c) or '1'
    end
  end
  return out
end
local out = {'1'}
if redis.call('HLEN', P .. ':w') >= most then
  -- Full: the client furthest over its share (waiters per weight) gives up its newest.
  local worst, ratio = nil, (mine + 1) / weight
  local per = redis.call('HGETALL', P .. ':per')
  for i = 1, #per, 2 do
    if per[i] ~= client then
      local w = tonumber(redis.call('HGET', P .. ':cw', per[i]) or '1')
      local r = tonumber(per[i + 1]) / w
      if r > ratio then worst, ratio = per[i], r end
    end
  end
  if not worst then return {'0'} end
  local newest, seq = nil, -1
  for _, l in ipairs({'interactive', 'writes', 'bulk', 'background'}) do
    local last = redis.call('ZRANGE', P .. ':q:' .. l .. ':' .. worst, -1, -1, 'WITHSCORES')
    if #last > 0 and tonumber(last[2]) > seq then newest, seq = last[1], tonumber(last[2]) end
  end
  local f = newest and drop(newest)
  if not f then return {'0'} end
  tell(f[4], 'r\\n' .. newest .. '\\n' .. client .. '\\n' .. num(weight),
       math.ceil(ttl * 1000))
  out = {'1', newest, f[4]}
end
local cs = P .. ':c:' .. lane
if redis.call('SCARD', cs) == 0 then wake('L:' .. lane, 'VL') end
local q = P .. ':q:' .. lane .. ':' .. client
if redis.call('ZCARD', q) == 0 then
  redis.call('SADD', cs, client)
  wake('C:' .. lane .. ':' .. client, 'VC:' .. lane)
end
redis.call('ZADD', q, redis.call('INCR', P .. ':seq'), wid)
redis.call('HSET', P .. ':w', wid, lane .. '\\n' .. client .. '\\n' .. num(weight) .. '\\n' .. me)
redis.call('ZADD', P .. ':exp', num(now + ttl), wid)
redis.call('HINCRBY', P .. ':per', client, 1)
redis.call('HSET', P .. ':cw', client, num(weight))
redis.call('ZADD', P .. ':workers', num(now + ttl), me)
alive(me, now + tonumber(ARGV[3]))
tell(me, '*', math.ceil(ttl * 1000))  -- its worker looks at once whether it is the head
local ms = math.ceil(ttl * 2000)
for _, k in ipairs({':tags', ':w', ':exp', ':per', ':cw', ':seq', ':workers', ':c:' .. lane}) do
  keep(P .. k, ms)
end
keep(q, ms)
return out
"""
)

# KEYS: the order's prefix, the budget's (where the ledger counts slots).
# ARGV: now, worker, alive seconds, slack, hold, the ceilings' window, then per lane its
# share and the most calls it may have in that window (-1: no ceiling), then the number
# of limits and each limit's count and window, then the keys that may serve.
# {'g', waiter, its worker, key}: granted; {'w', seconds}: the head waits that long
# ('inf': every slot is held by a call in flight); {'w', 'none'}: nobody waits.
_GRANT = (
    _PRELUDE
    + """
local L = KEYS[2]
local me = ARGV[2]
local slack, hold, cw = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local lanes = {'interactive', 'writes', 'bulk', 'background'}
local shares, allowed = {}, {}
for i = 1, 4 do
  shares[i] = tonumber(ARGV[5 + 2 * i])
  allowed[i] = tonumber(ARGV[6 + 2 * i])
end
local nlim = tonumber(ARGV[15])
local limits = {}
for j = 1, nlim do
  limits[j] = {tonumber(ARGV[14 + 2 * j]), tonumber(ARGV[15 + 2 * j])}
end
local keys = {}
for k = 16 + 2 * nlim, #ARGV do keys[#keys + 1] = ARGV[k] end
purge()
alive(me, now + tonumber(ARGV[3]))
local dead = redis.call('ZRANGEBYSCORE', P .. ':alive', '-inf', num(now))
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', P .. ':alive', '-inf', num(now)) end
local function gone(worker)
  local until_ = redis.call('ZSCORE', P .. ':alive', worker)
  return (not until_) or tonumber(until_) <= now
end

-- Seconds until a key has a slot in every limit (0: now), 'inf' when held in flight.
local function ready(label)
  local wait = 0
  local paused = tonumber(redis.call('GET', L .. ':' .. label .. ':pause') or '0')
  if paused > now then wait = paused - now end
  local in_flight = false
  for j = 1, nlim do
    local count, window = limits[j][1], limits[j][2]
    local z = L .. ':' .. label .. ':' .. count .. '/' .. ARGV[15 + 2 * j]
    redis.call('ZREMRANGEBYSCORE', z, '-inf', num(now))
    local held = redis.call('ZCARD', z)
    if held >= count then
      local nth = redis.call('ZRANGE', z, held - count, held - count, 'WITHSCORES')
      local frees = tonumber(nth[2])
      if frees > now + window * (1 + slack) then
        in_flight = true
      elseif frees - now > wait then
        wait = frees - now
      end
    end
  end
  if in_flight and wait == 0 then return math.huge end
  return wait
end

for _ = 1, 64 do
  local best, best_tag, ceiling, open_lanes = nil, nil, math.huge, {}
  for i = 1, 4 do
    local lane = lanes[i]
    if redis.call('SCARD', P .. ':c:' .. lane) > 0 then
      local open = true
      if allowed[i] >= 0 then
        local z = P .. ':calls:' .. lane
        redis.call('ZREMRANGEBYSCORE', z, '-inf', num(now - cw))
        local n = redis.call('ZCARD', z)
        if n >= allowed[i] then
          open = false
          local oldest = redis.call('ZRANGE', z, n - allowed[i], n - allowed[i], 'WITHSCORES')
          local w = tonumber(oldest[2]) + cw - now
          if w < ceiling then ceiling = w end
        end
      end
      if open then
        open_lanes[#open_lanes + 1] = i
        local t = tag('L:' .. lane, 'VL')
        if best == nil or t < best_tag then best, best_tag = i, t end
      end
    end
  end
  if best == nil then
    if ceiling < math.huge then return {'w', num(math.max(ceiling, 0.001))} end
    return {'w', 'none'}
  end
  local lane = lanes[best]
  local who, who_tag = nil, nil
  for _, c in ipairs(redis.call('SMEMBERS', P .. ':c:' .. lane)) do
    local t = tag('C:' .. lane .. ':' .. c, 'VC:' .. lane)
    if who == nil or t < who_tag or (t == who_tag and c < who) then who, who_tag = c, t end
  end
  local q = P .. ':q:' .. lane .. ':' .. who
  local wid = redis.call('ZRANGE', q, 0, 0)[1]
  local info = wid and redis.call('HGET', P .. ':w', wid)
  local f = info and split(info) or {}
  local worker = f[4]
  if not info then
    -- Nothing known of it (its keys expired apart): out of the lane's clients if empty.
    if wid then redis.call('ZREM', q, wid) end
    if redis.call('ZCARD', q) == 0 then redis.call('SREM', P .. ':c:' .. lane, who) end
  elseif gone(worker) then
    drop(wid)  -- its worker stopped: nobody would take the slot
    tell(worker, 'd\\n' .. wid, 60000)  -- (should it be alive after all)
  else
    local soonest, key = math.huge, nil
    for _, label in ipairs(keys) do
      local w = ready(label)
      if w <= 0 then key = label break end
      if w < soonest then soonest = w end
    end
    if key == nil then
      if soonest == math.huge then return {'w', 'inf'} end
      return {'w', num(soonest)}
    end
    for j = 1, nlim do
      local z = L .. ':' .. key .. ':' .. limits[j][1] .. '/' .. ARGV[15 + 2 * j]
      redis.call('ZADD', z, num(now + hold), wid)
      redis.call('PEXPIRE', z, math.ceil((hold + limits[j][2] * (1 + slack)) * 1000))
    end
    -- What each waiting lane was due of this call by its share, and who got it: over
    -- time, a lane's calls against its due say how fair the division was.
    local total = 0
    for _, i in ipairs(open_lanes) do total = total + shares[i] end
    for _, i in ipairs(open_lanes) do
      redis.call('HINCRBYFLOAT', P .. ':stat', 'due:' .. lanes[i], num(shares[i] / total))
    end
    redis.call('HINCRBY', P .. ':stat', 'got:' .. lane, 1)
    redis.call('PEXPIRE', P .. ':stat', 3600000)
    served('L:' .. lane, 'VL', shares[best])
    served('C:' .. lane .. ':' .. who, 'VC:' .. lane, tonumber(f[3]))
    drop(wid)
    if allowed[best] >= 0 then
      redis.call('ZADD', P .. ':calls:' .. lane, num(now), wid)
      redis.call('PEXPIRE', P .. ':calls:' .. lane, math.ceil(cw * 1000) + 1000)
    end
    tell(worker, 'g\\n' .. wid .. '\\n' .. key, math.ceil((hold + 60) * 1000))
    return {'g', wid, worker, key}
  end
end
return {'w', '0'}
"""
)

# ARGV: now, waiter. 1: it left the order; 0: it was not waiting (granted, or gone).
_LEAVE = (
    _PRELUDE
    + """
if drop(ARGV[2]) then return 1 end
return 0
"""
)

# ARGV: now. Every worker with waiters is woken to look again.
_FREED = (
    _PRELUDE
    + """
redis.call('ZREMRANGEBYSCORE', P .. ':workers', '-inf', num(now))
for _, w in ipairs(redis.call('ZRANGE', P .. ':workers', 0, -1)) do
  local list = P .. ':wake:' .. w
  if redis.call('LLEN', list) < 4 then
    redis.call('RPUSH', list, '*')
    keep(list, 60000)
  end
end
return 1
"""
)


@dataclass(frozen=True)
class Joined:
    """What a join came to: ``admitted`` or not; the waiter refused to make room for it
    (``evicted``, of ``evicted_worker``); when it was refused as over its part while
    other clients of its lane wait, those clients with their weights (``over``; a client
    alone in its lane over its lane's part: empty, yet refused as over its share).
    """

    admitted: bool
    evicted: str | None = None
    evicted_worker: str | None = None
    over: dict[str, float] | None = None


@dataclass(frozen=True)
class Grant:
    """``waiter`` (of ``worker``) was given a slot on ``key``; the slot's ticket is the
    waiter's id."""

    waiter: str
    worker: str
    key: str


@dataclass(frozen=True)
class Wait:
    """The head of the order waits ``seconds`` (``math.inf``: for an answer in flight;
    ``None``: nobody waits)."""

    seconds: float | None


@dataclass(frozen=True)
class Refused:
    """``waiter`` was refused to make room for a waiter of ``client`` (``weight``)."""

    waiter: str
    client: str
    weight: float


@dataclass(frozen=True)
class Dropped:
    """``waiter`` was dropped from the order: its worker had not said it was alive in
    time."""

    waiter: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisOrder:
    """The fair order of one source's waiters in every worker; ``worker`` names this
    one (its wake list)."""

    def __init__(
        self,
        redis: Any,
        budget_prefix: str,
        *,
        worker: str | None = None,
        clock: Callable[[], float] | None = None,
        alive: float = 3.0,
        slack: float = 0.01,
    ) -> None:
        self._redis = redis
        self.budget_prefix = budget_prefix
        self.prefix = f"{budget_prefix}:fq"
        self.worker = worker or uuid.uuid4().hex[:12]
        self._clock = clock
        self.alive = alive  # seconds this worker stays in the order without a grant call
        self._slack = slack
        self._join = redis.register_script(_JOIN)
        self._grant = redis.register_script(_GRANT)
        self._leave = redis.register_script(_LEAVE)
        self._freed = redis.register_script(_FREED)

    def _now(self) -> str:
        return "" if self._clock is None else repr(self._clock())

    async def join(
        self,
        waiter: str,
        lane: str,
        client: str,
        weight: float,
        *,
        ttl: float,
        most: int,
        own: int,
        shares: Mapping[str, float] = DEFAULT_SHARES,
    ) -> Joined:
        """Start ``waiter`` waiting for ``ttl`` seconds at most. Not admitted: ``most`` wait
        already (and no client is further over its share than this one), or its client
        waits for ``own`` calls (what the budget serves before its deadline), or, in its
        lane, for its part of them (by ``shares`` and the weights of the clients waiting)."""
        args: list[Any] = [self._now(), self.worker, self.alive, waiter, lane, client, weight]
        args += [ttl, most, own, *(shares[name] for name in LANES)]
        got = [_text(v) for v in await self._join(keys=[self.prefix], args=args)]
        if got[0] == "p":
            over = {got[i]: float(got[i + 1]) for i in range(1, len(got), 2)}
            return Joined(False, over=over)
        if got[0] != "1":
            return Joined(False)
        if len(got) == 3:
            return Joined(True, got[1], got[2])
        return Joined(True)

    async def grant(
        self,
        keys: Sequence[str],
        limits: Sequence[tuple[int, float]],
        *,
        hold: float,
        shares: Mapping[str, float],
        ceilings: Mapping[str, int] | None = None,
        ceiling_window: float = 0.0,
    ) -> Grant | Wait:
        """Serve the head of the order if a slot is free on one of ``keys`` (tried in
        that order), counted against ``limits`` ((count, window) each)."""
        ceilings = ceilings or {}
        args: list[Any] = [self._now(), self.worker, self.alive, self._slack, hold]
        args.append(ceiling_window)
        for name in LANES:
            args += [shares[name], ceilings.get(name, -1)]
        args.append(len(limits))
        for count, window in limits:
            args += [count, f"{window:g}"]
        args += list(keys)
        answer = await self._grant(keys=[self.prefix, self.budget_prefix], args=args)
        got = [_text(v) for v in answer]
        if got[0] == "g":
            return Grant(got[1], got[2], got[3])
        if got[1] == "none":
            return Wait(None)
        return Wait(math.inf if got[1] == "inf" else float(got[1]))

    async def leave(self, waiter: str) -> bool:
        """``waiter`` gives up; False when it was no longer waiting (a grant may be on
        its way to this worker's wake list)."""
        return bool(await self._leave(keys=[self.prefix], args=[self._now(), waiter]))

    async def division(self) -> dict[str, tuple[int, float]]:
        """Per lane, the calls it was granted and the calls its share gave it among the
        lanes waiting at each grant (kept an hour after the last grant)."""
        raw = await self._redis.hgetall(f"{self.prefix}:stat")
        got: dict[str, tuple[int, float]] = {}
        for name in LANES:
            granted = raw.get(f"got:{name}".encode(), raw.get(f"got:{name}", 0))
            due = raw.get(f"due:{name}".encode(), raw.get(f"due:{name}", 0))
            got[name] = (int(granted), float(due))
        return got

    async def freed(self) -> None:
        """A call was answered: wake every worker with waiters."""
        await self._freed(keys=[self.prefix], args=[self._now()])

    async def events(self, timeout: float) -> list[Grant | Refused | Dropped | None]:
        """What was told to this worker, waiting up to ``timeout`` seconds for the first
        (``None`` for a nudge: look again)."""
        wake = f"{self.prefix}:wake:{self.worker}"
        first = await self._redis.blpop([wake], timeout=max(0.01, timeout))
        if first is None:
            return []
        raw = [first[1]]
        rest = await self._redis.lpop(wake, 64)
        raw += rest or []
        out: list[Grant | Refused | Dropped | None] = []
        for item in raw:
            parts = _text(item).split("\n")
            if parts[0] == "g":
                out.append(Grant(parts[1], self.worker, parts[2]))
            elif parts[0] == "r":
                out.append(Refused(parts[1], parts[2], float(parts[3])))
            elif parts[0] == "d":
                out.append(Dropped(parts[1]))
            else:
                out.append(None)
        return out
