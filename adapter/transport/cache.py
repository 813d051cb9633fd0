"""A short cache of vendor reads, per source (``cache_seconds``; off by default).

Only successful answers are kept, for ``seconds``; errors never. A write through the
source empties its cache, since it may change what was read. In memory, or in Redis
(``[server] redis_url``) so that every worker sees one cache and one write empties it for
all: there a generation number per source is part of every key, and a write moves it on.
In memory it holds at most ``max_bytes`` of answers (the source's ``cache_mb``), the
least recently kept going first, and tells what it holds (``cache_*{cache="read"}`` in
``/metrics``, :mod:`adapter.ops.caches`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from adapter.ops import caches

__all__ = ["DEFAULT_BYTES", "ReadCache", "SharedFlights"]

Key = tuple[str, tuple[tuple[str, str], ...]]
DEFAULT_BYTES = 16 << 20
_OVERHEAD = 256  # bytes an entry costs besides its answer (key, tuple, list node)


class ReadCache:
    def __init__(
        self,
        source: str,
        seconds: float = 0.0,
        redis: Any = None,
        max_bytes: int = DEFAULT_BYTES,
        namespace: str = "fhir-adapter:",
    ) -> None:
        self.name = "read"
        self.source = source
        self.seconds = seconds
        self._redis = redis
        # Kept in memory only without Redis: the limit is what this worker may hold.
        self.max_bytes = max_bytes if seconds > 0 and redis is None else 0
        self._local: OrderedDict[Key, tuple[float, bytes]] = OrderedDict()
        self._held = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        caches.register(self)
        self._keys = f"{namespace}cache:{source}"
        self._generation = f"{self._keys}:generation"

    @property
    def held_bytes(self) -> int:
        return self._held

    def __len__(self) -> int:
        return len(self._local)

    def _drop(self, key: Key) -> None:
        held = self._local.pop(key, None)
        if held is not None:
            self._held -= _weight(key, held[1])

    async def get(self, key: Key) -> bytes | None:
        if self.seconds <= 0:
            return None
        if self._redis is not None:
            generation = await self._redis.get(self._generation) or b"0"
            found = await self._redis.get(self._name(key, generation))
            return bytes(found) if found is not None else None
        held = self._local.get(key)
        if held is None or held[0] <= time.monotonic():
            if held is not None:
                self._drop(key)
            self.misses += 1
            return None
        self.hits += 1
        return held[1]

    async def put(self, key: Key, content: bytes) -> None:
        if self.seconds <= 0:
            return
        if self._redis is not None:
            generation = await self._redis.get(self._generation) or b"0"
            await self._redis.set(self._name(key, generation), content, px=int(self.seconds * 1000))
            return
        weight = _weight(key, content)
        if weight > self.max_bytes:
            return  # larger than the whole cache: not kept
        self._drop(key)
        self._local[key] = (time.monotonic() + self.seconds, content)
        self._held += weight
        while self._held > self.max_bytes:
            self._drop(next(iter(self._local)))
            self.evictions += 1

    async def clear(self) -> None:
        if self.seconds <= 0:
            return
        if self._redis is not None:
            await self._redis.incr(self._generation)
            return
        self._local.clear()
        self._held = 0

    def _name(self, key: Key, generation: bytes | str) -> str:
        generation = generation.decode() if isinstance(generation, bytes) else generation
        return f"{self._keys}:{generation}:{_digest(key)}"


class SharedFlights:
    """Identical reads in flight in several processes at once share one vendor call.

    The first process to ask takes a short lease on the read in Redis and makes the call;
    the others wait for its answer, which it leaves for a moment beside the lease. When
    the one asking fails or goes, the others ask the vendor themselves (a failure is not
    shared: it would be an error cached)."""

    LEASE = 30.0  # seconds: the longest a lease outlives a process that died holding it
    KEEP = 2.0  # seconds the answer stays for those who waited for it
    POLL = 0.01

    def __init__(self, source: str, redis: Any, namespace: str = "fhir-adapter:") -> None:
        self._redis = redis
        self._prefix = f"{namespace}flight:{source}"

    async def share(self, key: Key, call: Callable[[], Awaitable[bytes]]) -> bytes:
        name = f"{self._prefix}:{_digest(key)}"
        answer = f"{name}:answer"
        if await self._redis.set(name, b"1", nx=True, px=int(self.LEASE * 1000)):
            try:
                content = await call()
                await self._redis.set(answer, content, px=int(self.KEEP * 1000))
                return content
            finally:
                await self._redis.delete(name)
        while True:
            found = await self._redis.get(answer)
            if found is not None:
                return bytes(found)
            if not await self._redis.exists(name):
                return await call()  # the one asking failed or went: ask ourselves
            await asyncio.sleep(self.POLL)


def _digest(key: Key) -> str:
    """A read's key as a short Redis key part (the URL path and parameters may be long)."""
    return hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()


def _weight(key: Key, content: bytes) -> int:
    """About what one kept answer costs in memory."""
    return _OVERHEAD + len(content) + len(key[0]) + sum(len(k) + len(v) for k, v in key[1])
