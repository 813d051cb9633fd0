"""A vendor sandbox's clock whose fixed rate-limit windows begin with a test's load.

Tests of rate limits on the real clock hold the sandbox's own records against the limit:
how many requests each key was charged in each window, and how many it refused (429).
With a window begun by the load's first request, the first window of the run is a whole
one, and a fresh budget spent at once falls in it, not across two, however long the
service took to send that first request."""

from __future__ import annotations

import math
import time

__all__ = ["Aligned"]


class Aligned:
    """The real clock (``time.time``), moved ahead by less than one ``window`` at the
    first reading after :meth:`arm`, so that a window begins then; ``first`` is that
    window's number (``floor(clock() / window)``, as the sandbox numbers its windows).
    The sandbox reads its clock first thing for each request, to charge it."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.offset = 0.0
        self.first: int | None = None
        self._armed = False

    def arm(self) -> None:
        """The next reading begins a window."""
        self.first = None
        self._armed = True

    def __call__(self) -> float:
        now = time.time()
        if self._armed:
            self._armed = False
            self.first = math.ceil(now / self.window)
            # A microsecond into the window: rounding never puts now in the one before.
            self.offset = self.first * self.window - now + 1e-6
        return now + self.offset
