"""Vendor answers already mapped, remembered by the digest of their bytes, within a budget
of memory.

Mappings are pure: the same bytes from the same call map to the same FHIR resources. A
vendor that pages poorly (a Leyr care unit comes whole, on every page) or a record read
again and again is then mapped once while its bytes stay the same; any change in the
answer is a new digest and maps afresh. The resources handed out are shared between
requests: callers must not change them (the facade only wraps them in Bundles).

An answer is remembered the second time it is mapped, not the first: most answers are
seen once (a patient's appointments for ``$everything``, a page of a search that moved on)
and would only push out those asked again and again (a Leyr care unit's whole list).
Until then only its digest is kept, in a small table of answers seen once (a sixteenth
of the memo's bytes).

The memo is bounded in bytes (``memo_mb`` of the source; by default its part of
``[server] cache_mb``), the least recently used answer going first. What an answer holds
in memory is estimated from the JSON of the resources it mapped to:
:data:`BYTES_PER_JSON_BYTE` times it, plus :data:`ENTRY_BYTES`. Measured with
``tracemalloc`` over both sandboxes' answers, Python's dicts and strings beside the JSON
each resource keeps take 6 to 10 times the JSON (the larger figure for the larger pages,
which are what fill a memo); a worker's resident memory grows by about a third more than
that as answers come and go (the allocator keeps what it freed for reuse:
``bench/bench_soak.py``). The estimate counts both, so that the memo's limit bounds the
memory it costs the process. ``tests/unit/connectors/test_memo.py`` holds the estimate to
what ``tracemalloc`` sees. Its entries, bytes, hits, misses and evictions are in ``/metrics``
(``cache_*{cache="memo"}``, by source).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from adapter.fhir.bundle import Serialised
from adapter.fhir.versions import with_version
from adapter.ops import caches
from adapter.protocol import remembering, unremembered
from adapter.transport import MalformedResponse
from mappings import MappingError

__all__ = [
    "BYTES_PER_JSON_BYTE",
    "ENTRY_BYTES",
    "Mapped",
    "MappedMemo",
    "Serialised",
    "map_records",
    "serialised",
    "unremembered",
]

log = logging.getLogger("fhir_adapter")


def serialised(resources: list[dict[str, Any]]) -> Mapped:
    out = Mapped()
    size = 0
    for resource in resources:
        frozen = Serialised(with_version(resource))
        encoded = orjson.dumps(frozen)
        size += len(encoded)
        frozen.fragment = orjson.Fragment(encoded)
        out.append(frozen)
    out.json_bytes = size
    return out


class Mapped(list[dict[str, Any]]):
    """The records of one vendor answer as FHIR, and the vendor ids of those whose mapping
    refused them (left out: one bad record must not break every page that reaches it)."""

    left_out: tuple[str, ...] = ()
    json_bytes: int = 0  # the resources' JSON, in all


def map_records(
    source: str, records: list[Any], to_fhir: Callable[[dict[str, Any]], dict[str, Any]]
) -> Mapped:
    """Each record mapped, pre-serialised; a record the mapping refuses is left out, said
    once in the log (the mapping's message names the field and rule, never a value)."""
    mapped: list[dict[str, Any]] = []
    left_out: list[str] = []
    for record in records:
        if not isinstance(record, dict):
            raise MalformedResponse(source, None, "a record that is not a JSON object")
        try:
            mapped.append(to_fhir(record))
        except MappingError as exc:
            vendor_id = record.get("id")
            shown = str(vendor_id) if isinstance(vendor_id, str | int) else "without an id"
            log.warning("source %s: vendor record %s left out: %s", source, shown, exc)
            left_out.append(shown)
    out = serialised(mapped)
    out.left_out = tuple(left_out)
    return out


# What mapped resources hold in memory, per byte of their JSON; and what an entry costs
# besides (its key, the answer's own list or dict, the LRU's link).
BYTES_PER_JSON_BYTE = 13
ENTRY_BYTES = 1024
# What an answer that holds no mapped resources is taken to hold, per byte of the vendor's.
BYTES_PER_BODY_BYTE = 24
DEFAULT_BYTES = 64 << 20
# What the key of an answer seen once costs (its digest, tuple and the table's link),
# besides the call's text.
_ONCE_BYTES = 250


def _weight(call: str, body: bytes, value: Any) -> int:
    """About what remembering ``value`` holds in memory (see the module's note)."""
    mapped = value.get("results") if isinstance(value, dict) else value
    if isinstance(mapped, Mapped):
        return ENTRY_BYTES + len(call) + 2 * len(body) + mapped.json_bytes * BYTES_PER_JSON_BYTE
    return ENTRY_BYTES + len(call) + len(body) * BYTES_PER_BODY_BYTE


class MappedMemo:
    def __init__(self, max_bytes: int = DEFAULT_BYTES, source: str = "") -> None:
        self.name = "memo"
        self.max_bytes = max_bytes
        self.source = source
        self._entries: OrderedDict[tuple[str, bytes], tuple[Any, int]] = OrderedDict()
        self._held = 0
        # Answers mapped once and not kept: their keys, within a sixteenth of the bytes.
        self._once: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        self._once_held = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        caches.register(self)

    @property
    def held_bytes(self) -> int:
        """About what the remembered answers, and the keys of those seen once, hold in
        memory."""
        return self._held + self._once_held

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, call: str, body: bytes) -> Any | None:
        """What ``(call, body)`` was mapped to, if it is remembered; maps nothing."""
        if self.max_bytes <= 0 or not remembering():
            return None
        found = self._entries.get((call, hashlib.blake2b(body, digest_size=16).digest()))
        return None if found is None else found[0]

    def get_or_map(self, call: str, body: bytes, build: Callable[[bytes], Any]) -> Any:
        """``build(body)``, remembered from the second time a (call, body) is mapped while
        the memo holds it.

        Entries of every call share one memo, so what comes back is typed by the caller."""
        if self.max_bytes <= 0 or not remembering():
            return build(body)
        key = (call, hashlib.blake2b(body, digest_size=16).digest())
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return found[0]
        self.misses += 1
        value = build(body)
        if not self._seen_before(key):
            return value
        weight = _weight(call, body, value)
        if weight > self.max_bytes - self._once_held:
            return value
        self._entries[key] = (value, weight)
        self._held += weight
        while self._entries and self._held + self._once_held > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._held -= dropped
            self.evictions += 1
        return value

    def _seen_before(self, key: tuple[str, bytes]) -> bool:
        """Whether ``key`` was mapped once already (then it leaves the table of those seen
        once, to be remembered); else it is noted there."""
        weight = self._once.pop(key, None)
        if weight is not None:
            self._once_held -= weight
            return True
        weight = _ONCE_BYTES + len(key[0])
        self._once[key] = weight
        self._once_held += weight
        while self._once and self._once_held > self.max_bytes // 16:
            _, dropped = self._once.popitem(last=False)
            self._once_held -= dropped
        return False
