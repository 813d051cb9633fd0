"""A circuit per source: a vendor that keeps failing is left alone for a while.

After ``failures`` calls in a row fail for the vendor's reasons (5xx, timeouts, refused
connections), the circuit opens: calls fail at once, for ``open_seconds``, with that
wait as their ``Retry-After``, and the vendor is not asked. Then one call goes through (half
open): its success closes the circuit, its failure opens it again. What the client asked
wrongly (4xx) or a vendor's rate limit does not count: those are answers, not failures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Circuit", "CircuitOpen"]


class CircuitOpen(Exception):
    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"circuit open for {retry_after:.0f} s")


@dataclass
class Circuit:
    failures: int = 5
    open_seconds: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _failed: int = 0
    _opened_at: float | None = None
    _probing: bool = False

    @property
    def failing(self) -> bool:
        """Some calls failed in a row, not yet enough to open the circuit."""
        return self._failed > 0

    @property
    def state(self) -> str:
        """closed | open | half-open"""
        if self._opened_at is None:
            return "closed"
        if self.clock() - self._opened_at < self.open_seconds or self._probing:
            return "open"
        return "half-open"

    def before_call(self) -> bool:
        """Raise :class:`CircuitOpen` when the vendor is not to be asked; True when this
        call is the half-open probe."""
        if self._opened_at is None:
            return False
        waited = self.clock() - self._opened_at
        if waited < self.open_seconds:
            raise CircuitOpen(self.open_seconds - waited)
        if self._probing:
            raise CircuitOpen(1.0)  # another call is finding out now
        self._probing = True
        return True

    def succeeded(self) -> None:
        self._failed = 0
        self._opened_at = None
        self._probing = False

    def failed(self) -> bool:
        """Count a failure; True when it opened the circuit."""
        self._probing = False
        self._failed += 1
        if self._opened_at is not None or self._failed >= self.failures:
            was_closed = self._opened_at is None
            self._opened_at = self.clock()
            return was_closed
        return False

    def abandoned(self) -> None:
        """The probe ended without an answer either way (cancelled): let another try."""
        self._probing = False
