"""What one facade request may spend at the vendors: time and calls.

The facade opens a :func:`spending` scope around each request; everything the transport
does inside it (waiting for a key's budget, retrying, the call itself) draws on it:

- the **deadline**: no wait for budget is started that cannot end before it (the caller
  gets the wait the budget implies, at once), no retry sleeps past it, and a call is cut
  off when it is reached;
- the **waits**: the longest wait for a source's budget is noted (:func:`note_wait`), so
  that a search page can say why it was slow;
- the **calls**: each vendor call made for the request counts (a read served by another
  request's call in flight, or from the cache, does not, nor a call made for what every
  request uses: :func:`shared`); past the cap the request stops
  with :class:`CallBudgetExceeded` rather than drain a vendor's budget for everyone.

Outside a scope (tests, the export command) nothing is limited.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field

__all__ = [
    "CallBudgetExceeded",
    "Spending",
    "count_call",
    "current",
    "enter",
    "leave",
    "note_wait",
    "remaining",
    "reserved",
    "shared",
    "spending",
]


class CallBudgetExceeded(Exception):
    """A request needs more vendor calls than ``limit`` allows."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"more than {limit} vendor calls")


@dataclass
class Spending:
    deadline: float | None  # time.monotonic() by which the request must be answered
    max_calls: int | None
    calls: int = 0
    reserve: float | None = None  # seconds kept back to look after a write that timed out
    # The longest wait for a vendor's rate-limit budget, by source: the answer says so.
    waited: dict[str, float] = field(default_factory=dict)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def calls_left(self) -> int | None:
        return None if self.max_calls is None else self.max_calls - self.calls


_current: ContextVar[Spending | None] = ContextVar("fhir_adapter_spending", default=None)


def enter(seconds: float | None, max_calls: int | None) -> Token[Spending | None]:
    """Open a request's scope without a ``with`` (the hot path); :func:`leave` closes it."""
    deadline = None if seconds is None else time.monotonic() + seconds
    return _current.set(Spending(deadline, max_calls))


def leave(token: Token[Spending | None]) -> None:
    _current.reset(token)


@contextmanager
def spending(
    seconds: float | None, max_calls: int | None, reserve: float | None = None
) -> Iterator[Spending]:
    """A request's scope: ``seconds`` from now, at most ``max_calls`` vendor calls; a
    write keeps ``reserve`` seconds back for :func:`reserved`."""
    scope = Spending(None if seconds is None else time.monotonic() + seconds, max_calls)
    scope.reserve = reserve
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)


@contextmanager
def reserved() -> Iterator[Spending | None]:
    """The time a write kept back, for looking at the vendor after its call timed out
    (the request's own deadline has passed by then); its calls still count."""
    outer = _current.get()
    if outer is None or outer.reserve is None:
        yield outer
        return
    inner = Spending(time.monotonic() + outer.reserve, outer.max_calls, outer.calls)
    inner.waited = outer.waited
    token = _current.set(inner)
    try:
        yield inner
    finally:
        outer.calls = inner.calls
        _current.reset(token)


@contextmanager
def shared() -> Iterator[Spending | None]:
    """Calls made for what every request uses (a directory kept for minutes, a doctor's
    slot length learned once): they keep the request's deadline and draw on the vendor's
    budget, but not on the request's call cap, which is for what the request itself asks
    (the first request after a start would otherwise pay for everyone's)."""
    outer = _current.get()
    if outer is None:
        yield None
        return
    inner = Spending(outer.deadline, None)
    inner.waited = outer.waited
    token = _current.set(inner)
    try:
        yield inner
    finally:
        _current.reset(token)


def current() -> Spending | None:
    return _current.get()


def remaining() -> float | None:
    """Seconds left before the current request's deadline (None: no deadline)."""
    scope = _current.get()
    return None if scope is None else scope.remaining()


def count_call() -> None:
    """One more vendor call for the current request; :class:`CallBudgetExceeded` past
    its cap (raised before the call is made)."""
    scope = _current.get()
    if scope is None:
        return
    if scope.max_calls is not None and scope.calls >= scope.max_calls:
        raise CallBudgetExceeded(scope.max_calls)
    scope.calls += 1


def note_wait(source: str, seconds: float) -> None:
    """A call of the current request waited ``seconds`` for ``source``'s rate-limit
    budget (calls made at once wait at once: the longest wait is kept, not the sum)."""
    scope = _current.get()
    if scope is not None and seconds > scope.waited.get(source, 0.0):
        scope.waited[source] = seconds
