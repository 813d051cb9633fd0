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
