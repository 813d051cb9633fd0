"""What the operator's console shows of the service's own activity, kept per minute.

- vendor calls per source and minute, and the answers the service gave (how many, their
  total and longest time) per minute, over the last :data:`MINUTES` minutes;
- per API client: requests, refusals (401, 403, 429) and tokens issued;
- the last :data:`ERRORS` OperationOutcomes answered with a 5xx or caused by a vendor:
  when, status, issue code, the exception's type, the source and the route template.
  Never a diagnostics text: it may quote what a client or a vendor sent.

Each worker counts in its memory (bounded: a minute older than the window is dropped,
clients are the configured ones plus ``-`` for a request without one). With Redis
configured, :func:`flush` adds what this worker counted since its last flush to shared
hashes (under a prefix, ``fhir-adapter:console`` unless told: the deployment's
``redis_prefix`` followed by ``console``; kept two hours), and :func:`shared` reads every
worker's sum from there; without Redis, :func:`local` is the whole story.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["ERRORS", "MINUTES", "PREFIX", "Activity", "Figures", "activity"]

MINUTES = 60
ERRORS = 200
PREFIX = "fhir-adapter:console"
_KEEP_SECONDS = 2 * 3600
_CLIENT_FIGURES = ("requests", "401", "403", "429", "tokens")


@dataclass
class Figures:
    """Counts as the console reads them: per minute (epoch minute -> field -> value),
    per client (name -> figure -> count) and the recent errors, newest first."""

    minutes: dict[int, dict[str, float]] = field(default_factory=dict)
    clients: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add_minute(self, minute: int, name: str, value: float) -> None:
        row = self.minutes.setdefault(minute, {})
        row[name] = row.get(name, 0) + value

    def add_client(self, client: str, name: str, value: int = 1) -> None:
        row = self.clients.setdefault(client, dict.fromkeys(_CLIENT_FIGURES, 0))
        row[name] = row.get(name, 0) + value


class Activity:
    """This process's counts; every method is a few dictionary updates under a lock and
    never raises."""

    def __init__(self, clock: Callable[[], float] = time.time, prefix: str = PREFIX) -> None:
        self.clock = clock
        self.prefix = prefix
        self._lock = threading.Lock()
        self._total = Figures()
        self._pending = Figures()  # counted since the last flush to Redis
        self._errors: collections.deque[dict[str, Any]] = collections.deque(maxlen=ERRORS)
        self._pending_errors: list[dict[str, Any]] = []

    def _minute(self) -> int:
        return int(self.clock() // 60)

    def _trim(self, figures: Figures, now: int) -> None:
        for minute in [m for m in figures.minutes if m <= now - MINUTES]:
            del figures.minutes[minute]

    def vendor_call(self, source: str) -> None:
        minute = self._minute()
        with self._lock:
            for figures in (self._total, self._pending):
                figures.add_minute(minute, f"calls:{source}", 1)
            if len(self._total.minutes) > MINUTES:
                self._trim(self._total, minute)

    def answered(self, client: str | None, status: int, seconds: float) -> None:
        """A ``/fhir`` request answered (``client``: who, when known)."""
        minute = self._minute()
        name = client or "-"
        ms = round(seconds * 1000, 3)
        with self._lock:
            for figures in (self._total, self._pending):
                figures.add_minute(minute, "answers", 1)
                figures.add_minute(minute, "answer_ms", ms)
                figures.add_client(name, "requests")
                if status in (401, 403, 429):
                    figures.add_client(name, str(status))
            row = self._total.minutes[minute]
            row["answer_max_ms"] = max(row.get("answer_max_ms", 0.0), ms)
            if len(self._total.minutes) > MINUTES:
                self._trim(self._total, minute)

    def token_issued(self, client: str) -> None:
        with self._lock:
            for figures in (self._total, self._pending):
                figures.add_client(client, "tokens")

    def error(self, status: int, code: str, kind: str, source: str | None, where: str) -> None:
        """An OperationOutcome answered with a 5xx, or one a vendor caused."""
        record = {
            "at": self.clock(),
            "status": status,
            "code": code,
            "kind": kind,
            "source": source or "",
            "where": where,
        }
        with self._lock:
            self._errors.appendleft(record)
            self._pending_errors.append(record)
            del self._pending_errors[:-ERRORS]

    def local(self) -> Figures:
        """This process's figures (a copy)."""
        with self._lock:
            self._trim(self._total, self._minute())
            return Figures(
                {m: dict(row) for m, row in self._total.minutes.items()},
                {c: dict(row) for c, row in self._total.clients.items()},
                list(self._errors),
            )

    async def flush(self, redis: Any, prefix: str | None = None) -> None:
        """Add what this worker counted since the last flush to the shared figures
        (under ``prefix``, else this counter's own)."""
        prefix = prefix or self.prefix
        with self._lock:
            pending, self._pending = self._pending, Figures()
            errors, self._pending_errors = self._pending_errors, []
        if not (pending.minutes or pending.clients or errors):
            return
        pipe = redis.pipeline(transaction=False)
        for minute, row in pending.minutes.items():
            key = f"{prefix}:minute:{minute}"
            for name, value in row.items():
                pipe.hincrbyfloat(key, name, value)
            pipe.expire(key, _KEEP_SECONDS)
        for client, counts in pending.clients.items():
            for name, count in counts.items():
                if count:
                    pipe.hincrby(f"{prefix}:clients", f"{client}\0{name}", count)
        if errors:
            pipe.lpush(f"{prefix}:errors", *(orjson.dumps(e) for e in errors))
            pipe.ltrim(f"{prefix}:errors", 0, ERRORS - 1)
        await pipe.execute()

    async def shared(self, redis: Any, prefix: str | None = None) -> Figures:
        """Every worker's figures, as flushed to Redis (this worker's first)."""
        prefix = prefix or self.prefix
        await self.flush(redis, prefix)
        now = self._minute()
        minutes = list(range(now - MINUTES + 1, now + 1))
        pipe = redis.pipeline(transaction=False)
        for minute in minutes:
            pipe.hgetall(f"{prefix}:minute:{minute}")
        pipe.hgetall(f"{prefix}:clients")
        pipe.lrange(f"{prefix}:errors", 0, ERRORS - 1)
        *rows, clients, errors = await pipe.execute()
        figures = Figures()
        for minute, row in zip(minutes, rows, strict=True):
            for name, value in row.items():
                figures.add_minute(minute, _text(name), float(value))
        for name, value in clients.items():
            client, _, figure = _text(name).partition("\0")
            figures.add_client(client, figure, int(value))
        figures.errors = [orjson.loads(e) for e in errors]
        return figures


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


activity = Activity()
"""The process's counts, as the transport's observer, the guard and the token endpoint
report them."""
