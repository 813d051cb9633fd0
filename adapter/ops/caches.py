"""Every in-process cache, bounded in bytes and shown in ``/metrics``.

A cache here is anything a worker keeps to avoid work it has done before: the mapped
vendor answers (``memo``), the short read cache (``read``), each source's directory
(``directory``) and the small lookup tables on the request path (routes, Host values,
tokens, vendor URLs and requests, phone numbers). Each has a limit in bytes, holds at
most that, lets the least recently used entry go first, and registers here, so that its
entries, bytes, limit, hits, misses and evictions reach the metrics
(``cache_*{cache, source}``).

Caches count in plain integers; :func:`publish` turns the counts into metrics. It runs
with each worker's memory sample and at each scrape, never on the request path, so a
lookup costs a dict access and an addition, not a metrics call.

What an entry weighs is an estimate of what it holds in memory (its key and value as
Python objects, not as bytes on the wire). :class:`Table` weighs with :func:`weigh`; the
memo and the directory weigh with their own calibrated estimates (see their modules).
"""

from __future__ import annotations

import sys
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, Protocol, TypeVar

import orjson

from adapter.ops import metrics

__all__ = ["Cache", "Table", "publish", "register", "registered", "weigh"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# What a table entry costs besides its key and value: the OrderedDict's slot and link,
# the (value, weight) tuple.
ENTRY_OVERHEAD = 160


class Cache(Protocol):
    """What a cache tells about itself."""

    name: str
    source: str
    max_bytes: int
    hits: int
    misses: int
    evictions: int

    @property
    def held_bytes(self) -> int: ...

    def __len__(self) -> int: ...


_caches: weakref.WeakSet[Any] = weakref.WeakSet()
# What was last published of the counters, per (cache, source): counters only go up, by
# what each cache counted since.
_published: dict[tuple[str, str], tuple[int, int, int]] = {}


def register(cache: Cache) -> None:
    """Show ``cache`` in the metrics while it lives (held weakly: a cache of an app that
    is gone leaves them)."""
    _caches.add(cache)


def registered() -> Iterator[Cache]:
    yield from list(_caches)


def publish() -> None:
    """Every live cache's figures into the metrics, summed over caches of the same name
    and source (several apps in one process, as in tests)."""
    totals: dict[tuple[str, str], list[int]] = {}
    for cache in registered():
        row = totals.setdefault((cache.name, cache.source), [0, 0, 0, 0, 0, 0])
        row[0] += len(cache)
        row[1] += cache.held_bytes
        row[2] += cache.max_bytes
        row[3] += cache.hits
        row[4] += cache.misses
        row[5] += cache.evictions
    for gone in _published.keys() - totals.keys():  # every cache of that name went away
        totals[gone] = [0, 0, 0, 0, 0, 0]
    for (name, source), (entries, held, limit, hits, misses, evictions) in totals.items():
        before = _published.get((name, source), (0, 0, 0))
        counts = (hits, misses, evictions)
        # Counted since last told. A cache that went away took its counts with it: those
        # of the others count on from there, and the counters never go back.
        hits, misses, evictions = (
            max(0, now - then) for now, then in zip(counts, before, strict=True)
        )
        metrics.set_cache(
            name,
            source,
            entries=entries,
            held=held,
            limit=limit,
            hits=hits,
            misses=misses,
            evictions=evictions,
        )
        _published[(name, source)] = counts


def weigh(value: object) -> int:
    """About what ``value`` holds in memory: its own size and, through tuples, lists,
    sets and dicts, what it holds (strings, bytes and numbers counted once each)."""
    seen: set[int] = set()
    stack = [value]
    total = 0
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        fragment = getattr(item, "fragment", None)  # a resource's own JSON, kept beside it
        if isinstance(fragment, orjson.Fragment):
            total += sys.getsizeof(orjson.dumps(fragment))
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif not isinstance(item, str | bytes | int | float | bool | type(None)):
            held = getattr(item, "__dict__", None)  # an object's attributes
            if isinstance(held, dict):
                stack.append(held)
            for slot in getattr(type(item), "__slots__", ()):
                stack.append(getattr(item, slot, None))
    return total


class Table(Generic[K, V]):
    """A least-recently-used map within ``max_bytes``, each entry weighed by ``weight``
    (default :func:`weigh` of key and value). An entry heavier than the whole table is not
    kept. ``max_bytes`` 0: nothing kept."""

    def __init__(
        self,
        name: str,
        max_bytes: int,
        *,
        source: str = "",
        weight: Callable[[K, V], int] | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.max_bytes = max_bytes
        self._weight = weight or (lambda key, value: weigh(key) + weigh(value))
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._held = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        register(self)

    @property
    def held_bytes(self) -> int:
        return self._held

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return found[0]

    def peek(self, key: K) -> V | None:
        """The value under ``key``, neither counted as a lookup nor made recent."""
        found = self._entries.get(key)
        return None if found is None else found[0]

    def put(self, key: K, value: V) -> V:
        """Keep ``value`` under ``key`` (the least recently used going to make room);
        returns it."""
        self.pop(key)
        weight = ENTRY_OVERHEAD + self._weight(key, value)
        if weight > self.max_bytes:
            return value
        self._entries[key] = (value, weight)
        self._held += weight
        while self._held > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._held -= dropped
            self.evictions += 1
        return value

    def pop(self, key: K) -> V | None:
        found = self._entries.pop(key, None)
        if found is None:
            return None
        self._held -= found[1]
        return found[0]

    def clear(self) -> None:
        self._entries.clear()
        self._held = 0
