"""What one answer cost at the vendors, for its ``Server-Timing`` header.

The request guard opens a :func:`counting` block around each FHIR request; everything the
transport does inside it, in every task the request starts, adds to the same
:class:`Cost`: each vendor call made (and the time it took), each answer taken from the
read cache, and the time spent waiting for a vendor budget's slot. Outside a block (the
export, the Subscriptions' sweeps) nothing is counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["Cost", "cached", "called", "counting", "waited"]


@dataclass
class Cost:
    calls: int = 0  # vendor calls made (each try of a retried call counts)
    vendor_seconds: float = 0.0  # the calls' time, summed (calls made at once overlap)
    wait_seconds: float = 0.0  # waiting for budget, summed
    cached: int = 0  # answers taken from the read cache instead of a call


_cost: ContextVar[Cost | None] = ContextVar("fhir_adapter_cost", default=None)


@contextmanager
def counting() -> Iterator[Cost]:
    """Count what is done inside, and in the tasks started inside, into one :class:`Cost`."""
    cost = Cost()
    token = _cost.set(cost)
    try:
        yield cost
    finally:
        _cost.reset(token)


def called(seconds: float) -> None:
    cost = _cost.get()
    if cost is not None:
        cost.calls += 1
        cost.vendor_seconds += seconds


def waited(seconds: float) -> None:
    cost = _cost.get()
    if cost is not None:
        cost.wait_seconds += seconds


def cached() -> None:
    cost = _cost.get()
    if cost is not None:
        cost.cached += 1
