"""Client-side rate limiting per API key, and a pool that spreads calls over keys.

Nyra limits each key to 12 requests per second and 60 per minute, counted in fixed
windows as requests arrive (nyra.md, Rate limits). The client cannot see arrival times,
only when it sent a request and when the answer came back; the arrival lies between. So a
request holds its slot from the moment it is sent until ``window`` after its answer came
back: for every (limit, window), a new request may start on a key only while fewer than
``limit`` requests are in flight or answered within the last ``window``. Any two requests
``limit`` apart then *arrive* at least a window apart, whatever the latency, so no fixed
window the vendor counts can ever hold more than ``limit``: in steady state the client
never causes a 429, and loses only about one round trip per window of throughput.

Where the slots are counted is a :class:`Ledger`: in this process (:class:`LocalLedger`),
or in Redis (:class:`adapter.transport.budget.RedisLedger`) so that every worker and
replica draws on one budget per key. Without Redis, ``--workers N`` gives each worker
1/N of each key's limits (:meth:`KeyPool.bind`).

The vendor's own view is followed too: ``X-RateLimit-Remaining: 0`` pauses the key until
``X-RateLimit-Reset``, a 429 until ``Retry-After`` (another process may share the key).
A key whose credentials are refused (401) is paused, then tried again by one request
after 30 s, then 60 s, ... up to 10 minutes: it serves again as soon as the vendor takes
it (a Nyra hospital token is renewed about daily).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from adapter.transport import hooks, lanes, scope
from adapter.transport.lanes import FairQueue, Waiter
from adapter.transport.order import Dropped, Grant, RedisOrder, Refused, Wait

__all__ = [
    "KeyPool",
    "Lease",
    "Ledger",
    "Limit",
    "LocalLedger",
    "NoKeysLeft",
    "OverShare",
    "QueueFull",
    "SlotTooFar",
]

log = logging.getLogger("fhir_adapter")

AUTH_PAUSE_FIRST = 30.0  # seconds before a refused key is tried again
AUTH_PAUSE_MAX = 600.0
RECENT_CALLS = 1000  # call starts kept per key for the console's "calls in the window"
NOTED_WAIT = 0.05  # seconds: a shorter wait for a slot is not worth telling the client
BEAT = 1.0  # seconds: a worker with waiters in a shared order looks at least this often


@dataclass(frozen=True)
class Limit:
    count: int
    window: float  # seconds


class _Key:
    __slots__ = (
        "auth_failures",
        "auth_until",
        "credentials",
        "limited",
        "paused_until",
        "probing",
        "recent",
        "sent",
    )

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials
        self.paused_until = 0.0  # the vendor asked this key to wait
        self.auth_until = 0.0  # credentials refused: not before this (then one probe)
        self.auth_failures = 0
        self.probing = False
        self.sent = 0
        self.limited = 0  # answers 429
        # When its latest calls started, for the console (this process's; bounded).
        self.recent: collections.deque[float] = collections.deque(maxlen=RECENT_CALLS)

    @property
    def label(self) -> str:
        return str(getattr(self.credentials, "label", "key"))


class Ledger(Protocol):
    """Where a pool's slots are counted, per key and limit."""

    async def take(self, key: str, limits: Sequence[Limit], hold: float) -> tuple[float, Any]:
        """(0, ticket) when a slot was taken in every limit; else (seconds until one may be
        free, None), ``math.inf`` when every slot is held by a call in flight."""
        ...

    async def release(self, key: str, limits: Sequence[Limit], ticket: Any) -> None:
        """The call of ``ticket`` was answered now: its slots free a window from now."""
        ...

    async def pause(self, key: str, seconds: float) -> None:
        """The vendor asked this key to wait (shared with the ledger's other users)."""
        ...

    async def paused(self, key: str) -> float:
        """Seconds this key must still wait by what the vendor asked (0: none)."""
        ...


class LocalLedger:
    """Slots counted in this process's memory."""

    def __init__(self, slack: float = 0.01, clock: Callable[[], float] = time.monotonic) -> None:
        self._slack = slack
        self._clock = clock
        self._entries: dict[str, list[list[float | None]]] = {}
        self._paused: dict[str, float] = {}

    def _ready_in(self, entries: list[list[float | None]], limits: Sequence[Limit]) -> float:
        now = self._clock()
        horizon = max(lim.window for lim in limits) * (1 + self._slack)
        # Answers older than every window no longer hold a slot.
        entries[:] = [e for e in entries if e[0] is None or e[0] + horizon > now]
        ready = now
        for limit in limits:
            window = limit.window * (1 + self._slack)
            expiries = sorted(
                math.inf if e[0] is None else e[0] + window
                for e in entries
                if e[0] is None or e[0] + window > now
            )
            if len(expiries) >= limit.count:
                ready = max(ready, expiries[len(expiries) - limit.count])
        return ready - now

    async def take(self, key: str, limits: Sequence[Limit], hold: float) -> tuple[float, Any]:
        entries = self._entries.setdefault(key, [])
        wait = self._ready_in(entries, limits)
        if wait > 0:
            return wait, None
        entry: list[float | None] = [None]
        entries.append(entry)
        return 0.0, entry

    async def release(self, key: str, limits: Sequence[Limit], ticket: Any) -> None:
        ticket[0] = self._clock()

    async def pause(self, key: str, seconds: float) -> None:
        until = self._clock() + seconds
        if until > self._paused.get(key, 0.0):
            self._paused[key] = until

    async def paused(self, key: str) -> float:
        return max(0.0, self._paused.get(key, 0.0) - self._clock())


class Lease:
    """One request's use of one key; report the answer's headers with :meth:`observe`."""

    __slots__ = ("_pause", "_pool", "_state", "_ticket")

    def __init__(self, pool: KeyPool, state: _Key, ticket: Any) -> None:
        self._pool = pool
        self._state = state
        self._ticket = ticket
        self._pause = 0.0  # what the vendor asked, to share when the lease ends

    @property
    def key(self) -> Any:
        return self._state.credentials

    @property
    def label(self) -> str:
        return self._state.label

    def observe(self, headers: Mapping[str, str], status: int | None = None) -> None:
        if self._pool._limits:  # a vendor with no limits has no windows to follow
            self._pause = max(self._pause, self._pool._observe(self._state, headers, status))
        if status is not None and status != 401:
            self._pool._accepted(self._state)

    def refused(self) -> None:
        """The vendor refused this key's credentials."""
        self._pool._refused(self._state)

    async def release(self) -> None:
        state = self._state
        state.probing = False
        ledger = self._pool._ledger
        if self._ticket is not None:
            await ledger.release(state.label, self._pool._limits, self._ticket)
        if self._pause > 0 and self._pool.shared:
            await ledger.pause(state.label, self._pause)
        self._pool._notify()
        order = self._pool._order
        if order is not None:
            await order.freed()  # every worker's waiters look again when its slot frees


class KeyPool:
    """Keys and their limits; ``async with pool.acquire() as lease`` waits for a slot on
    the key that can start soonest (so N keys give about N times the throughput). Waiters
    are served by lane and client (:mod:`adapter.transport.lanes`: the current call's lane
    and client are the context's). A slot further than ``max_wait`` seconds away, or past
    the current request's deadline, is not waited for: :class:`SlotTooFar` says how long
    it would be; :class:`OverShare` when the client has had its fair part of the window
    while others wait (its own limit). More than ``queue`` requests waiting at once:
    :class:`QueueFull`."""

    def __init__(
        self,
        keys: Sequence[Any],
        limits: Sequence[Limit] = (),
        *,
        slack: float = 0.01,
        max_pause: float = 120.0,
        max_wait: float = 65.0,
        queue: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not keys:
            raise ValueError("a key pool needs at least one key")
        self._keys = [_Key(k) for k in keys]
        self._declared = tuple(limits)
        self._limits = tuple(limits)
        self._slack = slack
        self._max_pause = max_pause
        self._max_wait = max_wait
        self._queue = queue
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._changed = asyncio.Event()
        self._fair = FairQueue()
        self._next_free = -math.inf  # when the next in line expects a slot (clock time)
        self.ceilings: dict[str, float] = {}
        self._asked: deque[tuple[float, str, str, float, bool]] = deque()
        self._ledger: Ledger = LocalLedger(slack, clock)
        self._waiting = 0
        # With a shared ledger that keeps one order of every worker's waiters (Redis):
        # it, this worker's waiters in it (by id), and the task that serves them.
        self._order: RedisOrder | None = None
        self._pending: dict[str, tuple[asyncio.Future[Any], float]] = {}
        self._pump_task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._nudge = asyncio.Event()
        self.source = "?"
        self.shared = False  # slots counted with other processes (Redis)
        # An in-flight slot held by a process that died frees after this long.
        self._hold = max((lim.window for lim in self._limits), default=0.0) + 120.0

    @classmethod
    def unlimited(cls, keys: Sequence[Any]) -> KeyPool:
        """For a vendor with no documented limit (Leyr)."""
        return cls(keys)

    @classmethod
    def nyra(
        cls,
        keys: Sequence[Any],
        *,
        per_second: int = 12,
        per_minute: int = 60,
        second_window: float = 1.0,
        minute_window: float = 60.0,
        **options: Any,
    ) -> KeyPool:
        """Nyra: per key, 12 requests per second and 60 per minute (nyra.md)."""
        limits = (Limit(per_second, second_window), Limit(per_minute, minute_window))
        return cls(keys, limits, **options)

    def bind(self, source: str, ledger: Ledger | None = None, share: float = 1.0) -> None:
        """Name the pool's source and say where its slots are counted: ``ledger`` shared
        with other processes, else this process's ``share`` of each limit."""
        self.source = source
        self._order = None
        if ledger is not None:
            self._ledger = ledger
            self.shared = True
            self._limits = self._declared
            make_order = getattr(ledger, "order", None)
            if self._limits and make_order is not None:
                self._order = make_order()
        else:
            self._ledger = LocalLedger(self._slack, self._clock)
            self.shared = False
            self._limits = tuple(
                Limit(max(1, math.floor(lim.count * share)), lim.window) for lim in self._declared
            )

    @property
    def limits(self) -> tuple[Limit, ...]:
        return self._limits

    @property
    def keys(self) -> list[Any]:
        return [k.credentials for k in self._keys]

    def usage(self) -> list[dict[str, Any]]:
        """Each key by its index (never its credentials or label): calls started in each
        limit's current window by this process, 429 answers, and whether it waits for
        the vendor (paused) or has its credentials refused."""
        now = self._clock()
        return [
            {
                "index": i,
                "sent": k.sent,
                "windows": [
                    (sum(1 for t in k.recent if t > now - lim.window), lim.count, lim.window)
                    for lim in self._limits
                ],
                "rate_limited": k.limited,
                "paused": k.paused_until > now,
                "refused": k.auth_until > now,
            }
            for i, k in enumerate(self._keys)
        ]

    @property
    def waiting(self) -> int:
        """Requests waiting in this process for one of the keys."""
        return self._waiting

    def index_of(self, credentials: Any) -> int:
        """A key's place in the pool (0, 1, ...): how traces and the console name it."""
        for i, k in enumerate(self._keys):
            if k.credentials is credentials:
                return i
        return -1

    def sent(self) -> dict[str, int]:
        """Requests started per key label."""
        return {k.label: k.sent for k in self._keys}

    def active(self) -> int:
        """Keys whose credentials the vendor has not refused (or that are due a probe)."""
        now = self._clock()
        return sum(k.auth_until <= now for k in self._keys)

    def refused_for(self) -> float | None:
        """Seconds until a refused key is tried again, when every key is refused."""
        now = self._clock()
        if any(k.auth_until <= now for k in self._keys):
            return None
        return min(k.auth_until for k in self._keys) - now

    def acquire(self) -> _Acquire:
        return _Acquire(self)

    async def _take(self) -> Lease:
        if not self._limits:  # nothing to wait for: the least used live key, at once
            state = self._live_key()
            state.sent += 1
            state.recent.append(self._clock())
            return Lease(self, state, None)
        who, weight = lanes.current_client()
        me = Waiter(lanes.current_lane(), who, weight)
        if self._order is not None:
            return await self._take_ordered(self._order, me)
        if self._waiting >= self.queue:
            hooks.lane_refused(self.source, me.lane, me.client)
            raise await self._refusal(me, QueueFull(self._estimate()))
        self._waiting += 1
        self._fair.push(me)
        self._notify()
        started = self._clock()
        served = False
        try:
            lease = await self._wait_turn(me)
            served = True
        except SlotTooFar as exc:
            hooks.lane_refused(self.source, me.lane, me.client)
            refusal = await self._refusal(me, exc)
            calls, window = self.capacity()
            lanes.note(self.source, calls, window, 0, refusal.wait)
            raise refusal from None
        finally:
            self._waiting -= 1
            if not served:
                self._fair.remove(me)
            self._notify()
        waited = self._clock() - started
        if waited >= NOTED_WAIT:
            scope.note_wait(self.source, waited)
            hooks.lane_waited(self.source, me.lane, me.client)
        hooks.lane_granted(self.source, me.lane, me.client)
        await self._asked_now(me, True)
        self._tell(me)
        return lease

    async def _take_ordered(self, order: RedisOrder, me: Waiter) -> Lease:
        """Wait for a slot in the one order of every worker's waiters (Redis)."""
        self._live_key()  # every key refused: said at once (NoKeysLeft)
        left = scope.remaining()
        limit = self._max_wait if left is None else min(self._max_wait, max(0.0, left))
        calls, window = self.capacity()
        # No client waits for more calls than the whole budget could serve before its
        # deadline (every slot free now, then each window's worth again).
        own = len(self._keys) * min(
            lim.count * (1 + math.floor(limit / lim.window)) for lim in self._limits
        )
        wid = uuid.uuid4().hex
        # Known here before it joins: a grant may reach this worker's wake list (and be
        # read) before the join's own answer does.
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[wid] = (future, self._clock() + limit)
        admitted, over = left is None or left > 0, None
        try:
            if admitted:
                joined = await order.join(
                    wid,
                    me.lane,
                    me.client,
                    me.weight,
                    ttl=limit + 5.0,
                    most=self.queue,
                    own=own,
                    shares=self._fair.shares,
                )
                admitted, over = joined.admitted, joined.over
        except BaseException:
            self._pending.pop(wid, None)
            raise
        if not admitted:
            self._pending.pop(wid, None)
            hooks.lane_refused(self.source, me.lane, me.client)
            exc = QueueFull(self._estimate()) if left is None or left > 0 else None
            refusal = await self._refusal(me, exc or SlotTooFar(self._estimate()), over)
            lanes.note(self.source, calls, window, 0, refusal.wait)
            raise refusal
        self._waiting += 1
        self._fair.push(me)
        if self._pump_task is None or self._pump_task.done():
            self._nudge = asyncio.Event()  # of this event loop
            self._pump_task = asyncio.create_task(self._pump(order))
        if self._listen_task is None or self._listen_task.done():
            self._listen_task = asyncio.create_task(self._listen(order))
        self._nudge.set()  # a new waiter may be the head: look now
        started = self._clock()
        lease: Lease | None = None
        try:
            try:
                got = await asyncio.wait_for(asyncio.shield(future), limit)
            except TimeoutError:
                raise SlotTooFar(self._estimate()) from None
            if isinstance(got, Refused):
                hooks.lane_refused(self.source, me.lane, me.client)
                refusal = await self._refusal(me, SlotTooFar(1.0), {got.client: got.weight})
                lanes.note(self.source, calls, window, 0, refusal.wait)
                raise refusal
            if isinstance(got, Dropped):
                raise SlotTooFar(self._estimate())
            if isinstance(got, SlotTooFar):
                raise got
            lease = self._lease_for(got)
        except SlotTooFar as exc:
            if isinstance(exc, OverShare):
                raise
            hooks.lane_refused(self.source, me.lane, me.client)
            refusal = await self._refusal(me, exc)
            lanes.note(self.source, calls, window, 0, refusal.wait)
            raise refusal from None
        finally:
            self._waiting -= 1
            self._fair.remove(me)
            self._pending.pop(wid, None)
            if lease is None:
                await self._give_up(order, wid, future)
        waited = self._clock() - started
        if waited >= NOTED_WAIT:
            scope.note_wait(self.source, waited)
            hooks.lane_waited(self.source, me.lane, me.client)
        hooks.lane_granted(self.source, me.lane, me.client)
        self._granted(me)
        await self._asked_now(me, True)
        self._tell(me)
        return lease

    def _lease_for(self, grant: Grant) -> Lease:
        for state in self._keys:
            if state.label == grant.key:
                state.sent += 1
                state.recent.append(self._clock())
                if state.auth_failures:
                    state.probing = True
                return Lease(self, state, grant.waiter)
        raise SlotTooFar(self._estimate())  # not a key of this pool's (never, by config)

    async def _give_up(self, order: RedisOrder, wid: str, future: asyncio.Future[Any]) -> None:
        """A waiter that leaves unserved: out of the order, or, when a slot was granted to
        it meanwhile, the slot given back."""
        if future.done() and not future.cancelled():
            got = future.result()
            if isinstance(got, Grant):
                await self._ledger.release(got.key, self._limits, got.waiter)
                await order.freed()
            return
        future.cancel()
        try:
            await asyncio.shield(order.leave(wid))
        except Exception:  # Redis away: the waiter expires there by itself
            log.debug("source %s: a waiter could not leave the shared order", self.source)

    async def _grant(self, order: RedisOrder) -> Grant | Wait:
        """Serve the head of the shared order if a key has a slot."""
        now = self._clock()
        live = [k for k in self._keys if k.auth_until <= now and not k.probing]
        calls, window = self.capacity()
        ceilings = {lane: max(1, math.floor(calls * part)) for lane, part in self.ceilings.items()}
        return await order.grant(
            [k.label for k in sorted(live, key=lambda k: k.sent)],
            [(lim.count, lim.window) for lim in self._limits],
            hold=self._hold,
            shares=self._fair.shares,
            ceilings=ceilings,
            ceiling_window=window,
        )

    async def _pump(self, order: RedisOrder) -> None:
        """While this worker has waiters in the shared order: serve the head whenever a
        slot may be free (when the last look said, when woken, and at least every beat,
        which also keeps this worker alive in the order)."""
        while self._pending:
            self._nudge.clear()
            try:
                step = await self._grant(order)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: the waiters meet their deadlines
                log.warning("source %s: the shared order is not answering (%s)", self.source, exc)
                await asyncio.sleep(BEAT)
                continue
            if isinstance(step, Grant):
                continue  # another slot may be free too
            due = step.seconds
            if due is not None and not math.isinf(due):
                self._too_far(due)
            timeout = BEAT if due is None or math.isinf(due) else min(BEAT, due)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), timeout)

    async def _listen(self, order: RedisOrder) -> None:
        """While this worker has waiters in the shared order: hand them what Redis tells
        this worker (a grant, a refusal), and wake the pump on a nudge."""
        while self._pending:
            try:
                events = await order.events(BEAT)
            except asyncio.CancelledError:
                raise
            except Exception:  # said by the pump
                await asyncio.sleep(BEAT)
                continue
            for event in events:
                if event is None:
                    self._nudge.set()
                    continue
                future, _ = self._pending.get(event.waiter, (None, 0.0))
                if future is not None and not future.done():
                    future.set_result(event)
                elif isinstance(event, Grant):  # its waiter left meanwhile: give it back
                    try:
                        await self._ledger.release(event.key, self._limits, event.waiter)
                        await order.freed()
                    except Exception:  # held until its bound (the pool's hold) at worst
                        log.debug("source %s: a slot could not be given back", self.source)

    def _too_far(self, due: float) -> None:
        """The next slot is ``due`` seconds away: this worker's waiters that may not wait
        that long are refused now, not at their deadlines."""
        at = self._clock() + due
        for future, until in self._pending.values():
            if until < at and not future.done():
                future.set_result(SlotTooFar(due))

    @property
    def _shared_ledger(self) -> Any:
        """The ledger, when it keeps the askers of every process (Redis)."""
        return self._ledger if self.shared and hasattr(self._ledger, "asked") else None

    @property
    def queue(self) -> int:
        """How many calls may wait for this pool at once: as configured, else sized from
        the budget, what its keys serve within ``max_wait`` (in every process together
        when the budget is shared)."""
        if self._queue is not None:
            return self._queue
        calls, window = self.capacity()
        if not calls:
            return 64
        return max(1, math.floor(calls * max(self._max_wait, window) / window))

    @queue.setter
    def queue(self, value: int | None) -> None:
        self._queue = value

    def _notify(self) -> None:
        """Something changed that a waiter may be waiting for: wake them all (each
        looks again whether it is next)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _live_key(self) -> _Key:
        now = self._clock()
        live = [k for k in self._keys if k.auth_until <= now and not k.probing]
        if not live:
            raise NoKeysLeft(self.refused_for())
        state = min(live, key=lambda k: k.sent)
        if state.auth_failures:
            state.probing = True  # one request at a time tries a refused key again
        return state

    async def _wait_turn(self, me: Waiter) -> Lease:
        """Wait until ``me`` is the fair queue's next and a key has a slot."""
        while True:
            changed = self._changed
            left = scope.remaining()
            if left is not None and left <= 0:  # no slot is taken that cannot be used
                raise SlotTooFar(self._estimate())
            limit = self._max_wait if left is None else min(self._max_wait, max(0.0, left))
            if self.ceilings and self._shared_ledger is not None:
                await self._asked_now(None, False)  # the lanes' calls in every process
            head = self._fair.head(self._under_ceiling)
            if head is me:
                lease, soonest = await self._attempt()
                if lease is not None:
                    self._next_free = -math.inf
                    self._fair.served(me)
                    self._granted(me)
                    return lease
                if not math.isinf(soonest):
                    self._next_free = self._clock() + soonest
                if soonest > limit and not math.isinf(soonest):
                    raise SlotTooFar(soonest)
                if self.shared:
                    # Other processes' answers free slots too, and nothing here hears of them.
                    # Looked at again often enough for the shortest window (a quarter
                    # of it, at most every 0.25 s).
                    poll = min(0.25, min(lim.window for lim in self._limits) / 4)
                    await self._sleep(
                        min(soonest, min(0.05, poll) if math.isinf(soonest) else poll, limit)
                    )
                elif math.isinf(soonest):
                    # Every slot is held by a call in flight: its answer frees one.
                    await self._wait_changed(changed, limit)
                else:
                    await self._sleep(soonest)
                continue
            ahead = self._next_free - self._clock()
            if ahead > limit:  # the next in line waits longer than this request may
                raise SlotTooFar(max(ahead, self._estimate()))
            if head is None:  # my lane is at its ceiling: its oldest call leaves the window
                ceiling = self._ceiling_wait(me.lane)
                if ceiling > limit:
                    raise SlotTooFar(ceiling)
                if ceiling > 0:
                    await self._sleep(ceiling)
                    continue
            await self._wait_changed(changed, limit)

    async def _attempt(self) -> tuple[Lease | None, float]:
        """A slot on the key that can start soonest, or how long until one may be free."""
        now = self._clock()
        live = [k for k in self._keys if k.auth_until <= now and not k.probing]
        if not live:
            raise NoKeysLeft(self.refused_for())
        soonest = math.inf
        for state in sorted(live, key=lambda k: k.sent):
            wait = max(state.paused_until - now, await self._ledger.paused(state.label))
            if wait <= 0:
                wait, ticket = await self._ledger.take(state.label, self._limits, self._hold)
                if wait <= 0:
                    state.sent += 1
                    state.recent.append(self._clock())
                    if state.auth_failures:
                        state.probing = True
                    return Lease(self, state, ticket), 0.0
            soonest = min(soonest, wait)
        return None, soonest

    async def _wait_changed(self, changed: asyncio.Event, limit: float) -> None:
        if math.isinf(limit) or limit >= self._max_wait:
            await changed.wait()
            return
        try:
            await asyncio.wait_for(changed.wait(), limit)
        except TimeoutError:
            raise SlotTooFar(self._estimate()) from None

    # -- lanes and clients ----------------------------------------------------------------

    def configure_lanes(
        self, shares: Mapping[str, float] | None = None, ceilings: Mapping[str, float] = {}
    ) -> None:
        """Divide the budget between the lanes by ``shares``; a lane of ``ceilings`` takes
        at most that part of the budget per window, even when nobody else waits."""
        self._fair = FairQueue(shares or lanes.DEFAULT_SHARES)
        self.ceilings = {name: float(part) for name, part in ceilings.items() if part < 1}

    @property
    def shares(self) -> dict[str, float]:
        return dict(self._fair.shares)

    def capacity(self) -> tuple[int, float]:
        """(calls, seconds): the most calls the pool's keys may make in its longest window."""
        if not self._limits:
            return 0, 0.0
        window = max(lim.window for lim in self._limits)
        per_key = min(lim.count * max(1.0, window / lim.window) for lim in self._limits)
        return int(per_key) * len(self._keys), window

    def _recent(self) -> deque[tuple[float, str, str, float, bool]]:
        """Who asked for the budget in the last window: (when, lane, client, its weight,
        whether it was given a slot)."""
        _, window = self.capacity()
        now = self._clock()
        while self._asked and self._asked[0][0] <= now - window:
            self._asked.popleft()
        return self._asked

    def _granted(self, me: Waiter) -> None:
        self._recent().append((self._clock(), me.lane, me.client, me.weight, True))

    async def _asked_now(self, me: Waiter | None, given: bool) -> None:
        """With a shared budget: note ``me`` among those who asked (given a slot or not)
        in every process, and take their list as this process's view."""
        ledger = self._shared_ledger
        if ledger is None:
            return
        _, window = self.capacity()
        entry = ""
        if me is not None:
            # Each grant counts; of the refusals, only the latest of a client in a lane
            # (who asked matters, not how often: a burst leaves one entry, not thousands).
            mark = uuid.uuid4().hex[:8] if given else "-"
            entry = f"{me.lane}|{me.weight:g}|{int(given)}|{mark}|{me.client}"
        seen = await ledger.asked(entry, window)
        now = self._clock()
        view = []
        for text, age in seen:
            lane, weight, was_given, _, client = text.split("|", 4)
            view.append((now - age, lane, client, float(weight), was_given == "1"))
        view.sort()
        self._asked = deque(view)

    def _under_ceiling(self, lane: str) -> bool:
        return self._ceiling_wait(lane) <= 0

    def _ceiling_wait(self, lane: str) -> float:
        """Seconds until ``lane`` is under its ceiling again (0: it is)."""
        part = self.ceilings.get(lane)
        if part is None:
            return 0.0
        calls, window = self.capacity()
        allowed = max(1, math.floor(calls * part))
        mine = [t for t, name, _, _, given in self._recent() if given and name == lane]
        if len(mine) < allowed:
            return 0.0
        return max(0.0, mine[len(mine) - allowed] + window - self._clock())

    def standing(
        self, client: str, weight: float = 1.0, also: Mapping[str, float] | None = None
    ) -> tuple[int, int, float]:
        """(quota, remaining, reset seconds) of ``client`` in the current window: its
        weight's part of the budget among the clients that asked for it in the window
        (given a slot or refused) or wait for it; reset: when it has a call left again."""
        calls, window = self.capacity()
        recent = self._recent()
        weights = self._fair.clients()
        for _, _, who, their_weight, _ in recent:
            weights[who] = max(weights.get(who, 0.0), their_weight)
        for who, their_weight in (also or {}).items():
            weights[who] = max(weights.get(who, 0.0), their_weight)
        weights[client] = max(weights.get(client, 0.0), weight)
        fair = max(1, math.floor(calls * weights[client] / sum(weights.values())))
        mine = [t for t, _, who, _, given in recent if given and who == client]
        if len(mine) < fair:
            reset = (mine[0] + window - self._clock()) if mine else 0.0
        else:
            reset = mine[len(mine) - fair] + window - self._clock()
        return fair, max(0, fair - len(mine)), max(0.0, reset)

    def lane_states(self) -> dict[str, dict[str, Any]]:
        """Each lane's share, its calls waiting here, and its state: ``idle`` (nobody
        waits), ``waiting``, or ``at ceiling`` (it has had its ceiling's part of the
        window)."""
        out: dict[str, dict[str, Any]] = {}
        for name, share in self._fair.shares.items():
            waiting = self._fair.waiting(name)
            state = "waiting" if waiting else "idle"
            if self._limits and not self._under_ceiling(name):
                state = "at ceiling"
            out[name] = {"share": share, "waiting": waiting, "state": state}
        return out

    def _tell(self, me: Waiter) -> None:
        calls, window = self.capacity()
        _, remaining, reset = self.standing(me.client, me.weight)
        lanes.note(self.source, calls, window, remaining, reset)

    async def _refusal(
        self, me: Waiter, exc: SlotTooFar, over: Mapping[str, float] | None = None
    ) -> SlotTooFar:
        """A client beyond its fair share while others want the budget too is told of its
        own limit (:class:`OverShare`); otherwise the budget is spent for everyone
        (``exc``). Either way the refused call counts as asking for the budget. ``over``:
        the clients (with weights) a waiter of this client made room for, being over its
        share."""
        if self._shared_ledger is not None:  # noted, and every process's askers read
            await self._asked_now(me, False)
        else:
            self._recent().append((self._clock(), me.lane, me.client, me.weight, False))
        asking = set(self._fair.clients()) | {e[2] for e in self._recent()}
        quota, remaining, reset = self.standing(me.client, me.weight, over)
        if over is not None:  # over its part of the budget while others wait
            return OverShare(max(1.0, reset), quota)
        if not asking - {me.client} or remaining > 0:
            return exc
        return OverShare(max(1.0, reset), quota)

    def _estimate(self) -> float:
        """About how long a new request would wait: the requests waiting ahead of it at
        the slowest of the limits' rates (a minute's, for Nyra), over the keys."""
        if not self._limits:
            return 1.0
        per_key = min(lim.count / lim.window for lim in self._limits)
        return max(1.0, (self._waiting + 1) / (per_key * max(1, len(self._keys))))

    def _observe(self, state: _Key, headers: Mapping[str, str], status: int | None) -> float:
        """Pause the key as the vendor asks; the pause, in seconds (0: none)."""
        now = self._clock()
        pause = 0.0
        if status == 429:
            state.limited += 1
        retry_after = _number(headers.get("retry-after"))
        if status == 429 and retry_after is not None:
            pause = max(pause, min(retry_after, self._max_pause))
        remaining = _number(headers.get("x-ratelimit-remaining"))
        reset = _number(headers.get("x-ratelimit-reset"))
        if remaining is not None and remaining <= 0 and reset is not None:
            pause = max(pause, min(max(0.0, reset - self._wall()), self._max_pause))
        if pause > 0 and now + pause > state.paused_until:
            state.paused_until = now + pause
            self._notify()
        return pause

    def _refused(self, state: _Key) -> None:
        state.auth_failures += 1
        wait = min(AUTH_PAUSE_FIRST * 2 ** (state.auth_failures - 1), AUTH_PAUSE_MAX)
        state.auth_until = self._clock() + wait
        state.probing = False
        log.warning(
            "source %s: the vendor refused the credentials of %s; paused, tried again in %d s",
            self.source,
            state.label,
            round(wait),
        )
        self._notify()

    def _accepted(self, state: _Key) -> None:
        if state.auth_failures:
            log.warning(
                "source %s: the vendor accepts the credentials of %s again",
                self.source,
                state.label,
            )
            state.auth_failures = 0
            state.auth_until = 0.0
        state.probing = False


class SlotTooFar(Exception):
    """No key is free within ``max_wait`` or the request's deadline (a vendor asked every
    key to wait longer, or the budget is spent for longer)."""

    def __init__(self, wait: float) -> None:
        self.wait = wait
        super().__init__(f"no key free for {wait:.0f} s")


class QueueFull(SlotTooFar):
    """More requests wait for this source's keys than its queue admits."""


class OverShare(SlotTooFar):
    """The client has had its fair part (``quota``) of the budget this window while
    others wait: its own limit, not the vendor's."""

    def __init__(self, wait: float, quota: int) -> None:
        super().__init__(wait)
        self.quota = quota


class NoKeysLeft(Exception):
    """The vendor refused the credentials of every key; ``retry_after`` is when the first
    is tried again."""

    def __init__(self, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__("every key was refused")


class _Acquire:
    __slots__ = ("_lease", "_pool")

    def __init__(self, pool: KeyPool) -> None:
        self._pool = pool
        self._lease: Lease | None = None

    async def __aenter__(self) -> Lease:
        self._lease = await self._pool._take()
        return self._lease

    async def __aexit__(self, *exc: object) -> None:
        if self._lease is not None:
            await self._lease.release()


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
