"""Pacing a background task (an export, the Subscriptions' polling) to a share of a
source's vendor budget: the vendor calls it made are counted (the transport's call
counting, :mod:`adapter.transport.scope`), and the next call waits until the calls of the
last window are under that share of every limit of the source's key pool (per window,
times the number of keys). The rest of the budget stays free for interactive requests."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence

__all__ = ["Pacer", "share_limits"]


class Pacer:
    """At most ``allowed`` vendor calls in any ``window`` seconds, per limit; ``calls``:
    those made already, as ``(time, count)``."""

    def __init__(
        self,
        limits: Sequence[tuple[int, float]],
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        calls: Iterable[tuple[float, int]] = (),
    ) -> None:
        self.limits = list(limits)
        self.calls: deque[tuple[float, int]] = deque((float(t), int(n)) for t, n in calls)
        self.clock = clock
        self.sleep = sleep
        self.horizon = max((w for _, w in self.limits), default=0.0)

    def delay(self) -> float:
        """Seconds until the next call may be made (0: now)."""
        now = self.clock()
        while self.calls and self.calls[0][0] <= now - self.horizon:
            self.calls.popleft()
        wait = 0.0
        for allowed, window in self.limits:
            recent = [(t, n) for t, n in self.calls if t > now - window]
            if sum(n for _, n in recent) >= allowed:
                wait = max(wait, recent[0][0] + window - now)
        return wait

    async def wait(self) -> None:
        while (wait := self.delay()) > 0:
            await self.sleep(wait)

    def record(self, calls: int) -> None:
        if self.limits and calls:
            self.calls.append((self.clock(), calls))


def share_limits(limits: Iterable[tuple[int, float]], share: float) -> list[tuple[int, float]]:
    """``share`` of a source's limits (per limit: calls per window, over all its keys; see
    ``Connector.limits``): none for a vendor without limits."""
    return [(max(1, math.floor(count * share)), window) for count, window in limits]
