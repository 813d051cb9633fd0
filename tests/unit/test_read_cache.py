"""The read cache in memory: bounded in bytes, the least recently kept answer first to go,
and what it holds told to /metrics."""

from __future__ import annotations

import asyncio

from adapter.ops import metrics
from adapter.transport import hooks
from adapter.transport.cache import ReadCache


class Seen:
    def __init__(self) -> None:
        self.held: list[tuple[str, int, int]] = []

    def read_cache(self, source: str, entries: int, held: int) -> None:
        self.held.append((source, entries, held))

    def __getattr__(self, name: str):  # the other reports: not looked at here
        return lambda *args: None


def test_the_cache_holds_at_most_its_bytes():
    seen = Seen()
    before = hooks._observer
    hooks.install(seen)
    try:
        cache = ReadCache("src", seconds=60.0, max_bytes=4_000)
        key = lambda i: (f"/patients/{i}", ())  # noqa: E731
        answer = b"a" * 900  # each: 900 bytes and about 270 of bookkeeping

        async def fill() -> None:
            for i in range(10):
                await cache.put(key(i), answer)
                assert cache.held_bytes <= 4_000

        asyncio.run(fill())
        assert len(cache) == 3 and cache.held_bytes == 3 * (256 + 900 + len("/patients/0"))
        assert asyncio.run(cache.get(key(0))) is None  # the oldest went first
        assert asyncio.run(cache.get(key(9))) == answer
        assert seen.held[-1] == ("src", 3, cache.held_bytes)
        asyncio.run(cache.put(("/big", ()), b"b" * 5_000))  # larger than the cache
        assert asyncio.run(cache.get(("/big", ()))) is None and len(cache) == 3
        asyncio.run(cache.clear())
        assert (len(cache), cache.held_bytes, seen.held[-1]) == (0, 0, ("src", 0, 0))
    finally:
        hooks.install(before)


def test_what_it_holds_is_in_the_metrics():
    metrics.set_read_cache("metrics-src", 3, 4096)
    text = metrics.exposition()[0].decode()
    assert 'read_cache_entries{source="metrics-src"} 3.0' in text
    assert 'read_cache_bytes{source="metrics-src"} 4096.0' in text


def test_a_workers_resident_memory_is_in_the_metrics():
    text = metrics.exposition()[0].decode()
    line = next(x for x in text.splitlines() if x.startswith("worker_resident_memory_bytes"))
    assert float(line.split()[-1]) > 10 << 20  # a Python process with this service loaded
