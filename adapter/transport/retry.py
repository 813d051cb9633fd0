"""When to try a read again: exponential backoff with full jitter, honouring the vendor."""

from __future__ import annotations

import random
from dataclasses import dataclass

from adapter.transport.errors import TemporaryVendorError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all. Before try n+1 wait a random time up to
    ``min(cap, base * 2**n)`` (full jitter), or the vendor's ``Retry-After`` if longer; a
    vendor asking for more than ``max_retry_after`` is not waited for: the error goes up
    at once, with its retry_after, for the caller to pass on."""

    attempts: int = 3
    base: float = 0.2
    cap: float = 5.0
    max_retry_after: float = 30.0

    def delay(self, attempt: int, error: TemporaryVendorError, rng: random.Random) -> float | None:
        """Seconds to wait before try ``attempt + 1`` (from 1), or None to give up."""
        if attempt >= self.attempts:
            return None
        if error.retry_after is not None and error.retry_after > self.max_retry_after:
            return None
        backoff = rng.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
        return max(backoff, error.retry_after or 0.0)
