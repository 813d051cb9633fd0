"""What the transport reports as it works, for metrics and operator logs.

The transport knows nothing of how it is watched: it calls these hooks, which do nothing
until the service installs an observer (:func:`install`; the app installs
``adapter.ops``'s). Hooks must be cheap and must not raise.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = [
    "Observer",
    "cache_hit",
    "circuit",
    "install",
    "key_budget",
    "lane_granted",
    "lane_refused",
    "lane_waited",
    "rate_limited",
    "vendor_call",
    "vendor_failure",
]


class Observer(Protocol):
    def vendor_call(self, source: str, status: str, seconds: float) -> None: ...

    def rate_limited(self, source: str) -> None: ...

    def vendor_failure(self, source: str, status: int | None, kind: str) -> None: ...

    def cache_hit(self, source: str) -> None: ...

    def circuit(self, source: str, is_open: bool) -> None: ...

    def key_budget(self, source: str, key: str, remaining: float) -> None: ...

    def lane_call(self, source: str, lane: str, client: str, outcome: str) -> None: ...


_observer: Observer | None = None


def install(observer: Observer | None) -> None:
    global _observer
    _observer = observer


def vendor_call(source: str, status: str, started: float) -> None:
    """A call answered (``status``: the HTTP status, or ``timeout`` / ``error``);
    ``started`` is its ``time.perf_counter()`` at the start."""
    if _observer is not None:
        _observer.vendor_call(source, status, time.perf_counter() - started)


def rate_limited(source: str) -> None:
    if _observer is not None:
        _observer.rate_limited(source)


def vendor_failure(source: str, status: int | None, kind: str) -> None:
    if _observer is not None:
        _observer.vendor_failure(source, status, kind)


def cache_hit(source: str) -> None:
    if _observer is not None:
        _observer.cache_hit(source)


def circuit(source: str, is_open: bool) -> None:
    """The source's circuit opened or closed."""
    if _observer is not None:
        _observer.circuit(source, is_open)


def key_budget(source: str, key: str, remaining: float) -> None:
    """What the vendor says is left of a key's budget (``key``: its public label)."""
    if _observer is not None:
        _observer.key_budget(source, key, remaining)


def lane_granted(source: str, lane: str, client: str) -> None:
    """A call of ``client`` in ``lane`` was given a slot of ``source``'s budget."""
    if _observer is not None:
        _observer.lane_call(source, lane, client, "granted")


def lane_waited(source: str, lane: str, client: str) -> None:
    """... after waiting for it."""
    if _observer is not None:
        _observer.lane_call(source, lane, client, "waited")


def lane_refused(source: str, lane: str, client: str) -> None:
    """A call of ``client`` in ``lane`` was refused a slot (not in time, or over its share)."""
    if _observer is not None:
        _observer.lane_call(source, lane, client, "refused")
