"""``Idempotency-Key``: a repeated write replays its first outcome instead of happening twice.

The first outcome of a key (status, headers, body) is kept for ``ttl`` seconds (24 h by
default) with a fingerprint of the request; the same key with another request is
refused, and a repeat that arrives while the first is still running is told to wait.
Outcomes of 5xx are not kept: the client may try again. But a 5xx may follow a write the
vendor made (a timeout, a lost connection, a vendor's 5xx after its commit): the key
then remembers that its outcome is unknown (:meth:`IdempotencyStore.unknown`), and the
retry looks for what the first try may have made before it sends anything, until a final
answer is kept. Memory by default; a shared store (Redis) for more than one worker
implements the same methods.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import orjson

from adapter.ops import caches

__all__ = ["IdempotencyStore", "MemoryStore", "Outcome", "RedisStore", "fingerprint"]


@dataclass(frozen=True)
class Outcome:
    fingerprint: str
    status: int | None = None  # None while the first request is still running
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


def fingerprint(method: str, path: str, body: bytes, client: str = "") -> str:
    digest = hashlib.sha256()
    for part in (client, method, path):
        digest.update(part.encode() + b"\0")
    digest.update(body)
    return digest.hexdigest()


class IdempotencyStore(Protocol):
    async def claim(self, key: str, print_: str) -> Outcome | None:
        """Claim ``key`` for a new request (None), or the outcome already held for it."""
        ...

    async def finish(self, key: str, outcome: Outcome | None, *, unknown: bool = False) -> None:
        """Record the first outcome of ``key``, or (None) release it for another try;
        ``unknown``: that try ended without knowing whether the vendor made the write."""
        ...

    async def unknown(self, key: str) -> bool:
        """Whether an earlier try of ``key`` ended without knowing whether the vendor made
        the write (and no final outcome is kept since)."""
        ...


class MemoryStore:
    """Outcomes in this process, bounded: at most ``max_entries`` keys and ``max_bytes``
    of outcomes (the oldest go first when either is reached), each kept ``ttl`` seconds.
    Entries are kept in the order they were written, so expiry and eviction look only at
    the oldest: the cost of a request does not grow with the keys held."""

    def __init__(
        self,
        ttl: float = 24 * 3600,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 16 << 20,
    ) -> None:
        self.name = "idempotency"
        self.source = ""
        self.max_bytes = max_bytes
        self.hits = 0  # keys found (a replay, or a write still under way)
        self.misses = 0  # keys first claimed
        self.evictions = 0  # outcomes let go before their time to stay within the limit
        self._ttl = ttl
        self._clock = clock
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Outcome, int]] = OrderedDict()
        self._bytes = 0
        self._lock = asyncio.Lock()
        caches.register(self)
        # Keys whose last try's outcome is unknown, and since when (bounded like entries).
        self._unknown: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def _drop(self, key: str) -> None:
        held = self._entries.pop(key, None)
        if held is not None:
            self._bytes -= held[2]

    def _put(self, key: str, at: float, outcome: Outcome) -> None:
        self._drop(key)
        size = _size(key, outcome)
        self._entries[key] = (at, outcome, size)
        self._bytes += size
        while self._entries and (
            len(self._entries) > self._max_entries or self._bytes > self.max_bytes
        ):
            self._drop(next(iter(self._entries)))
            self.evictions += 1

    def _expire(self, now: float) -> None:
        while self._entries:
            key, (at, _, _) = next(iter(self._entries.items()))
            if at + self._ttl > now:
                return
            self._drop(key)

    async def claim(self, key: str, print_: str) -> Outcome | None:
        async with self._lock:
            now = self._clock()
            self._expire(now)
            held = self._entries.get(key)
            if held is not None:
                self.hits += 1
                return held[1]
            self.misses += 1
            self._put(key, now, Outcome(print_))
            return None

    async def finish(self, key: str, outcome: Outcome | None, *, unknown: bool = False) -> None:
        async with self._lock:
            if outcome is None:
                self._drop(key)
                if unknown:
                    self._unknown.pop(key, None)
                    self._unknown[key] = self._clock()
                    while len(self._unknown) > self._max_entries:
                        self._unknown.popitem(last=False)
            else:
                self._put(key, self._clock(), outcome)
                self._unknown.pop(key, None)

    async def unknown(self, key: str) -> bool:
        async with self._lock:
            since = self._unknown.get(key)
            if since is not None and since + self._ttl <= self._clock():
                del self._unknown[key]
                return False
            return since is not None


def _size(key: str, outcome: Outcome) -> int:
    """About what an entry costs in memory (the body, headers, key and fixed overhead)."""
    headers = sum(len(k) + len(v) for k, v in outcome.headers)
    return len(outcome.body) + headers + len(key) + len(outcome.fingerprint) + 256


class RedisStore:
    """The same, shared by every worker through Redis (``[server] redis_url``). Keys are
    hashed; values expire with the ttl."""

    def __init__(
        self, url: str, ttl: float = 24 * 3600, prefix: str = "fhir-adapter:idem:"
    ) -> None:
        import redis.asyncio

        # Also the client request rate's counter (the guard's), met by every request: a
        # burst waits for a free connection rather than fail for want of one (a plain
        # pool refuses its 101st caller at once).
        self.redis = redis.asyncio.Redis(
            connection_pool=redis.asyncio.BlockingConnectionPool.from_url(
                url, socket_connect_timeout=2, socket_timeout=5, max_connections=100, timeout=20
            )
        )
        self._ttl = int(ttl)
        self._prefix = prefix

    def _key(self, key: str) -> str:
        return self._prefix + hashlib.sha256(key.encode()).hexdigest()

    async def claim(self, key: str, print_: str) -> Outcome | None:
        pending = orjson.dumps({"f": print_})
        if await self.redis.set(self._key(key), pending, nx=True, ex=self._ttl):
            return None
        held = await self.redis.get(self._key(key))
        if held is None:  # expired between the two calls: claim again
            return await self.claim(key, print_)
        data = orjson.loads(held)
        if "s" not in data:
            return Outcome(data["f"])
        return Outcome(
            data["f"],
            data["s"],
            tuple((k, v) for k, v in data["h"]),
            base64.b64decode(data["b"]),
        )

    async def finish(self, key: str, outcome: Outcome | None, *, unknown: bool = False) -> None:
        if outcome is None:
            if unknown:
                await self.redis.set(self._key(key) + ":unknown", b"1", ex=self._ttl)
            await self.redis.delete(self._key(key))
            return
        await self.redis.delete(self._key(key) + ":unknown")
        value = orjson.dumps(
            {
                "f": outcome.fingerprint,
                "s": outcome.status,
                "h": [list(h) for h in outcome.headers],
                "b": base64.b64encode(outcome.body).decode(),
            }
        )
        await self.redis.set(self._key(key), value, ex=self._ttl)

    async def unknown(self, key: str) -> bool:
        return bool(await self.redis.exists(self._key(key) + ":unknown"))

    async def aclose(self) -> None:
        await self.redis.aclose()
