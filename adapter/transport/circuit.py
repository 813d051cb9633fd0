"""A circuit per source: a vendor that keeps failing is left alone for a while.

After ``failures`` calls in a row fail for the vendor's reasons (5xx, timeouts, refused
connections), the circuit opens: calls fail at once, for ``open_seconds``, with that
wait as their ``Retry-After``, and the vendor is not asked. Then one call goes through (half
open): its success closes the circuit, its failure opens it again. What the client asked
wrongly (4xx) or a vendor's rate limit does not count: those are answers, not failures.

With Redis (:class:`SharedCircuit`) the count, the opening and the probe are every
process's: one worker's finding that a vendor is down holds for all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Circuit", "CircuitOpen", "SharedCircuit"]


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


# The circuit of a source as every process sees it, in Redis (a hash): ``failed``, the
# failures in a row, and ``opened``, when it opened on Redis's clock. KEYS: the hash;
# ARGV: failures that open it, seconds it stays. Gives {opened (0: closed), failed, now}.
_FAILED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local failed = redis.call('HINCRBY', KEYS[1], 'failed', 1)
local opened = tonumber(redis.call('HGET', KEYS[1], 'opened') or '0')
if opened > 0 or failed >= tonumber(ARGV[1]) then
  opened = now
  redis.call('HSET', KEYS[1], 'opened', tostring(now))
end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000) * 10)
return {tostring(opened), tostring(failed), tostring(now)}
"""

_STATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local opened = redis.call('HGET', KEYS[1], 'opened') or '0'
local failed = redis.call('HGET', KEYS[1], 'failed') or '0'
return {opened, failed, tostring(now)}
"""


class SharedCircuit:
    """A source's circuit kept in step with every process's through Redis: a failure
    counted here counts for all, the circuit opened by one is open in all (so ``/readyz``
    gives one answer from any worker, and no worker asks a vendor another found down),
    and once it is due to be tried again, one process in all probes it, at most once per
    ``open_seconds`` (a lock that expires with it)."""

    def __init__(
        self, circuit: Circuit, redis: Any, source: str, namespace: str = "fhir-adapter:"
    ) -> None:
        self.circuit = circuit
        self._redis = redis
        self._key = f"{namespace}circuit:{source}"
        self._probe_key = f"{namespace}circuit:{source}:probe"
        self._failed = redis.register_script(_FAILED)
        self._state = redis.register_script(_STATE)

    def _adopt(self, answer: list[Any]) -> None:
        opened, failed, now = (float(v) for v in answer)
        c = self.circuit
        c._failed = int(failed)
        if opened > 0:
            c._opened_at = c.clock() - (now - opened)
        elif c._opened_at is not None:  # closed by another process
            c._opened_at = None
            c._probing = False

    async def sync(self) -> None:
        """Take the circuit's state as Redis has it."""
        self._adopt(await self._state(keys=[self._key]))

    async def before_call(self) -> bool:
        """As :meth:`Circuit.before_call`, for every process: True when this call is the
        probe (the one of all processes that may try the vendor now)."""
        try:
            await self.sync()
        except Exception:  # Redis away: this process's own view stands
            return self.circuit.before_call()
        probe = self.circuit.before_call()
        if probe:
            ms = max(1, math.ceil(self.circuit.open_seconds * 1000))
            if not await self._redis.set(self._probe_key, "1", nx=True, px=ms):
                self.circuit._probing = False
                raise CircuitOpen(1.0)  # another process is trying it
        return probe

    async def failed(self) -> bool:
        """Count a failure for every process; True when it opened the circuit here."""
        was_open = self.circuit._opened_at is not None
        self.circuit._probing = False
        answer = await self._failed(
            keys=[self._key], args=[self.circuit.failures, self.circuit.open_seconds]
        )
        self._adopt(answer)
        return not was_open and self.circuit._opened_at is not None

    async def succeeded(self) -> None:
        self.circuit.succeeded()
        await self._redis.delete(self._key, self._probe_key)
