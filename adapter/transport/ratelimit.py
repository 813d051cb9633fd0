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

The vendor's own view is followed too: ``X-RateLimit-Remaining: 0`` pauses the key until
``X-RateLimit-Reset``, a 429 until ``Retry-After`` (another process may share the key).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["KeyPool", "Lease", "Limit", "NoKeysLeft", "SlotTooFar"]


@dataclass(frozen=True)
class Limit:
    count: int
    window: float  # seconds


class _Key:
    __slots__ = ("credentials", "disabled", "entries", "paused_until", "sent")

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials
        self.entries: list[list[float | None]] = []  # [answered at] or [None] in flight
        self.paused_until = 0.0
        self.disabled = False
        self.sent = 0


class Lease:
    """One request's use of one key; report the answer's headers with :meth:`observe`."""

    __slots__ = ("_entry", "_pool", "_state")

    def __init__(self, pool: KeyPool, state: _Key, entry: list[float | None]) -> None:
        self._pool = pool
        self._state = state
        self._entry = entry

    @property
    def key(self) -> Any:
        return self._state.credentials

    def observe(self, headers: Mapping[str, str], status: int | None = None) -> None:
        if self._pool._limits:  # a vendor with no limits has no windows to follow
            self._pool._observe(self._state, headers, status)

    def disable(self) -> None:
        self._pool.disable(self._state.credentials)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._entry[0] = self._pool._clock()
        self._pool._changed.set()


class KeyPool:
    """Keys and their limits; ``async with pool.acquire() as lease`` waits for a slot on
    the key that can start soonest (so N keys give about N times the throughput), serving
    waiters in order. A slot further than ``max_wait`` seconds away (a vendor asked for a
    long pause) is not waited for: :class:`SlotTooFar` says how long it would be."""

    def __init__(
        self,
        keys: Sequence[Any],
        limits: Sequence[Limit] = (),
        *,
        slack: float = 0.01,
        max_pause: float = 120.0,
        max_wait: float = 65.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not keys:
            raise ValueError("a key pool needs at least one key")
        self._keys = [_Key(k) for k in keys]
        self._limits = tuple(limits)
        self._slack = slack
        self._max_pause = max_pause
        self._max_wait = max_wait
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._horizon = max((lim.window for lim in self._limits), default=0.0) * (1 + slack)

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

    @property
    def keys(self) -> list[Any]:
        return [k.credentials for k in self._keys]

    def sent(self) -> dict[str, int]:
        """Requests started per key label."""
        return {getattr(k.credentials, "label", str(i)): k.sent for i, k in enumerate(self._keys)}

    def disable(self, credentials: Any) -> None:
        for state in self._keys:
            if state.credentials is credentials:
                state.disabled = True
        self._changed.set()

    def active(self) -> int:
        return sum(not k.disabled for k in self._keys)

    def _ready_at(self, state: _Key, now: float) -> float:
        if self._limits:
            # Answers older than every window no longer hold a slot.
            state.entries = [e for e in state.entries if e[0] is None or e[0] + self._horizon > now]
        ready = max(now, state.paused_until)
        for limit in self._limits:
            window = limit.window * (1 + self._slack)
            expiries = sorted(
                math.inf if e[0] is None else e[0] + window
                for e in state.entries
                if e[0] is None or e[0] + window > now
            )
            if len(expiries) >= limit.count:
                ready = max(ready, expiries[len(expiries) - limit.count])
        return ready

    def acquire(self) -> _Acquire:
        return _Acquire(self)

    async def _take(self) -> Lease:
        if not self._limits:  # nothing to wait for: the least used live key, at once
            live = [k for k in self._keys if not k.disabled]
            if not live:
                raise NoKeysLeft()
            state = min(live, key=lambda k: k.sent)
            state.sent += 1
            return Lease(self, state, [None])
        async with self._lock:
            while True:
                live = [k for k in self._keys if not k.disabled]
                if not live:
                    raise NoKeysLeft()
                now = self._clock()
                when, state = min(((self._ready_at(k, now), k) for k in live), key=_first)
                if when <= now:
                    entry: list[float | None] = [None]
                    state.entries.append(entry)
                    state.sent += 1
                    return Lease(self, state, entry)
                if when - now > self._max_wait and not math.isinf(when):
                    raise SlotTooFar(when - now)
                self._changed.clear()
                if math.isinf(when):
                    await self._changed.wait()  # every slot is held by a request in flight
                else:
                    await self._sleep(when - now)

    def _observe(self, state: _Key, headers: Mapping[str, str], status: int | None) -> None:
        now = self._clock()
        pause_until = state.paused_until
        retry_after = _number(headers.get("retry-after"))
        if status == 429 and retry_after is not None:
            pause_until = max(pause_until, now + min(retry_after, self._max_pause))
        remaining = _number(headers.get("x-ratelimit-remaining"))
        reset = _number(headers.get("x-ratelimit-reset"))
        if remaining is not None and remaining <= 0 and reset is not None:
            wait = min(max(0.0, reset - self._wall()), self._max_pause)
            pause_until = max(pause_until, now + wait)
        if pause_until != state.paused_until:
            state.paused_until = pause_until
            self._changed.set()


class SlotTooFar(Exception):
    """No key is free within ``max_wait`` (a vendor asked every key to wait longer)."""

    def __init__(self, wait: float) -> None:
        self.wait = wait
        super().__init__(f"no key free for {wait:.0f} s")


class NoKeysLeft(Exception):
    """Every key of the pool was disabled (their credentials were rejected)."""


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
            await self._lease.__aexit__(*exc)


def _first(pair: tuple[float, _Key]) -> tuple[float, int]:
    # Soonest first; among keys ready alike, the least used, to spread the load.
    return pair[0], pair[1].sent


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
