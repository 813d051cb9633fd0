"""Who is served next from a vendor key pool: lanes by share, clients by weight.

A source's budget (its key pool's slots) is divided between four **lanes**:

- ``interactive``: reads, searches, ``$everything``, ``_include``;
- ``writes``: creates, updates, bookings and their look-ups;
- ``bulk``: Bulk Data export;
- ``background``: Subscription polling, directory refreshes.

Within a lane the waiting **clients** share by their weight (``[clients.NAME] weight``).
Both levels are start-time fair queueing (Goyal, Vin and Cheng, 1996): each lane and each
client carries a tag that grows by ``1 / share`` (or ``1 / weight``) with every call it is
given; the waiter served next is the one whose lane, then whose client, has the smallest
tag. One that starts waiting after a time without waiters starts at the tag of the last
served (it gets its share from now on, not the share it did not use). So:

- the division is **work-conserving**: a lane or client with nobody waiting takes nothing,
  and whoever waits gets a call whenever a slot is free;
- two clients of a lane that both wait all along never drift apart by more than one call
  each, counted in their weights (``|served_a / w_a - served_b / w_b| <= 1/w_a + 1/w_b``),
  and likewise two lanes by their shares.

A lane may also have a **ceiling** (the bulk lane's is ``[export] budget_share``): the
key pool skips a lane that has had its ceiling's part of the budget in the last window
(:meth:`FairQueue.head`'s ``eligible``). Each client's own waiters are served in order.

The queue is pure: no clock, no I/O. :class:`adapter.transport.ratelimit.KeyPool` holds
one and asks it who is next whenever a slot may be free. With a budget shared through
Redis the same order is kept in Redis for every worker's waiters
(:mod:`adapter.transport.order`); the pool's own queue then only says what waits here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_SHARES",
    "LANES",
    "FairQueue",
    "Waiter",
    "client",
    "current_client",
    "current_lane",
    "lane",
    "note",
]

LANES = ("interactive", "writes", "bulk", "background")
# Favouring people at a screen, then writes (a partner booking for a patient), then bulk
# readers; polling takes what is left over and whatever the others leave unused.
DEFAULT_SHARES: Mapping[str, float] = {
    "interactive": 0.5,
    "writes": 0.25,
    "bulk": 0.15,
    "background": 0.1,
}
ANONYMOUS = "-"  # calls made for no client (the service's own work)

_lane: ContextVar[str] = ContextVar("fhir_adapter_lane", default="interactive")
_client: ContextVar[tuple[str, float]] = ContextVar("fhir_adapter_client", default=(ANONYMOUS, 1.0))
# What the client's calls of one request found of each source's budget:
# source -> (calls per window, window seconds, left to this client, seconds to reset).
Standing = dict[str, tuple[int, float, int, float]]
_standing: ContextVar[Standing | None] = ContextVar("fhir_adapter_standing", default=None)


@contextmanager
def lane(name: str) -> Iterator[None]:
    """Vendor calls made inside are ``name``'s."""
    if name not in LANES:
        raise ValueError(f"unknown lane {name!r}")
    # Set back, not reset by token: a coroutine closed after its task ended (a job at
    # shutdown) leaves its blocks in another context.
    before = _lane.get()
    _lane.set(name)
    try:
        yield
    finally:
        _lane.set(before)


@contextmanager
def client(name: str, weight: float = 1.0) -> Iterator[Standing]:
    """Vendor calls made inside are made for the client ``name`` (its ``weight``); what
    they found of each source's budget is noted into the dict it gives (:func:`note`)."""
    standing: Standing = {}
    before = _client.get(), _standing.get()
    _client.set((name, weight))
    _standing.set(standing)
    try:
        yield standing
    finally:
        _client.set(before[0])
        _standing.set(before[1])


def note(source: str, quota: int, window: float, remaining: int, reset: float) -> None:
    """A call to ``source`` was given a slot: where the client now stands there."""
    standing = _standing.get()
    if standing is not None:
        standing[source] = (quota, window, remaining, reset)


def current_lane() -> str:
    return _lane.get()


def current_client() -> tuple[str, float]:
    """(name, weight) of the client the current calls are made for."""
    return _client.get()


@dataclass(eq=False)
class Waiter:
    """One call waiting for a slot."""

    lane: str
    client: str
    weight: float = 1.0
    ticket: Any = None


class _Level:
    """Start-time fair queueing over flows (lanes, or a lane's clients)."""

    __slots__ = ("tags", "virtual")

    def __init__(self) -> None:
        self.tags: dict[str, float] = {}
        self.virtual = 0.0

    def wake(self, flow: str) -> None:
        """``flow`` has waiters again: it starts no earlier than now."""
        self.tags[flow] = max(self.tags.get(flow, 0.0), self.virtual)

    def served(self, flow: str, weight: float) -> None:
        start = self.tags.get(flow, self.virtual)
        self.virtual = max(self.virtual, start)
        self.tags[flow] = start + 1.0 / weight

    def forget(self, flow: str) -> None:
        """No waiters left: the tag need not be kept (a flow that wakes starts at the
        virtual time, which is at least its tag was, up to one call)."""
        tag = self.tags.get(flow)
        if tag is not None and tag <= self.virtual:
            del self.tags[flow]


class FairQueue:
    """The waiters of one key pool."""

    def __init__(self, shares: Mapping[str, float] = DEFAULT_SHARES) -> None:
        unknown = set(shares) - set(LANES)
        if unknown:
            raise ValueError(f"unknown lane(s) {', '.join(sorted(unknown))}")
        if any(s <= 0 for s in shares.values()):
            raise ValueError("every lane's share must be above 0")
        self.shares = {name: float(shares.get(name, DEFAULT_SHARES[name])) for name in LANES}
        self._lanes = _Level()
        self._clients: dict[str, _Level] = {name: _Level() for name in LANES}
        self._waiting: dict[str, dict[str, deque[Waiter]]] = {name: {} for name in LANES}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def waiting(self, lane: str | None = None, client: str | None = None) -> int:
        """How many wait (in ``lane``, for ``client``)."""
        lanes = LANES if lane is None else (lane,)
        return sum(
            len(q)
            for name in lanes
            for who, q in self._waiting[name].items()
            if client is None or who == client
        )

    def clients(self) -> dict[str, float]:
        """The clients that have waiters, with their weights."""
        out: dict[str, float] = {}
        for by_client in self._waiting.values():
            for who, q in by_client.items():
                out[who] = max(out.get(who, 0.0), max(w.weight for w in q))
        return out

    def push(self, waiter: Waiter) -> None:
        by_client = self._waiting[waiter.lane]
        if not any(by_client.values()):
            self._lanes.wake(waiter.lane)
        q = by_client.get(waiter.client)
        if not q:
            q = by_client[waiter.client] = deque()
            self._clients[waiter.lane].wake(waiter.client)
        q.append(waiter)
        self._count += 1

    def head(self, eligible: Callable[[str], bool] | None = None) -> Waiter | None:
        """The waiter to serve next (of the lanes ``eligible`` admits), or None."""
        best: tuple[float, int, str] | None = None
        for i, name in enumerate(LANES):
            if not self._waiting[name] or (eligible is not None and not eligible(name)):
                continue
            key = (self._lanes.tags.get(name, self._lanes.virtual), i, name)
            if best is None or key < best:
                best = key
        if best is None:
            return None
        name = best[2]
        level = self._clients[name]
        who = min(
            self._waiting[name],
            key=lambda c: (level.tags.get(c, level.virtual), c),
        )
        return self._waiting[name][who][0]

    def served(self, waiter: Waiter) -> None:
        """``waiter`` was given a slot: it leaves, and its lane and client pay for it."""
        self._lanes.served(waiter.lane, self.shares[waiter.lane])
        self._clients[waiter.lane].served(waiter.client, waiter.weight)
        self._drop(waiter)

    def remove(self, waiter: Waiter) -> None:
        """``waiter`` gave up (its deadline, a cancelled request): it leaves unserved."""
        self._drop(waiter)

    def _drop(self, waiter: Waiter) -> None:
        by_client = self._waiting[waiter.lane]
        q = by_client.get(waiter.client)
        if q is None:
            return
        try:
            q.remove(waiter)
        except ValueError:
            return
        self._count -= 1
        if not q:
            del by_client[waiter.client]
            self._clients[waiter.lane].forget(waiter.client)
            if not by_client:
                self._lanes.forget(waiter.lane)
