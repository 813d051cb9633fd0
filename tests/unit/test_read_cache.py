"""The read cache in memory: bounded in bytes, the least recently kept answer first to go,
and what it holds told to /metrics."""

from __future__ import annotations

import asyncio

from adapter.ops import caches, metrics
from adapter.transport.cache import ReadCache


def test_the_cache_holds_at_most_its_bytes():
    cache = ReadCache("src", seconds=60.0, max_bytes=4_000)
    key = lambda i: (f"/patients/{i}", ())  # noqa: E731
    answer = b"a" * 900  # each: 900 bytes and about 270 of bookkeeping

    async def fill() -> None:
        for i in range(10):
            await cache.put(key(i), answer)
            assert cache.held_bytes <= 4_000

    asyncio.run(fill())
    assert len(cache) == 3 and cache.held_bytes == 3 * (256 + 900 + len("/patients/0"))
    assert cache.evictions == 7
    assert asyncio.run(cache.get(key(0))) is None  # the oldest went first
    assert asyncio.run(cache.get(key(9))) == answer
    assert (cache.hits, cache.misses) == (1, 1)
    asyncio.run(cache.put(("/big", ()), b"b" * 5_000))  # larger than the cache
    assert asyncio.run(cache.get(("/big", ()))) is None and len(cache) == 3
    asyncio.run(cache.clear())
    assert (len(cache), cache.held_bytes) == (0, 0)


def test_what_it_holds_is_in_the_metrics():
    cache = ReadCache("metrics-src", seconds=60.0, max_bytes=1 << 20)
    asyncio.run(cache.put(("/patients", ()), b"x" * 100))
    caches.publish()
    text = metrics.exposition()[0].decode()
    assert 'cache_entries{cache="read",source="metrics-src"} 1.0' in text
    assert f'cache_bytes{{cache="read",source="metrics-src"}} {float(cache.held_bytes)}' in text


def test_with_redis_or_no_seconds_it_holds_nothing_in_memory():
    assert ReadCache("off", seconds=0.0, max_bytes=1 << 20).max_bytes == 0
    assert ReadCache("shared", seconds=5.0, redis=object(), max_bytes=1 << 20).max_bytes == 0


def test_a_workers_resident_memory_is_in_the_metrics():
    text = metrics.exposition()[0].decode()
    line = next(x for x in text.splitlines() if x.startswith("worker_resident_memory_bytes"))
    assert float(line.split()[-1]) > 10 << 20  # a Python process with this service loaded
