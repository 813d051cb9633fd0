"""The memo of mapped answers: each distinct answer mapped once, and an export's pages not
remembered at all (they are read once, and would push out what interactive reads share)."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from harness import FAST, connect

from adapter.connectors.memo import BYTES_PER_BODY_BYTE, ENTRY_BYTES, MappedMemo, unremembered
from adapter.ops import caches
from adapter.sandbox import LeyrSandbox, NyraSandbox


def test_an_answer_seen_twice_is_remembered_and_an_unremembered_one_never():
    memo = MappedMemo(1 << 20)
    built: list[bytes] = []

    def build(body: bytes) -> list[bytes]:
        built.append(body)
        return [body]

    for _ in range(3):
        assert memo.get_or_map("call", b"a", build) == [b"a"]
    assert built == [b"a", b"a"]  # the first seen once, the second kept, the third a hit
    assert memo.get_or_map("call", b"once", build) == [b"once"]
    assert memo.peek("call", b"once") is None  # seen once: only its key is noted
    with unremembered():
        assert memo.peek("call", b"a") is None  # not even looked up
        for _ in range(3):
            memo.get_or_map("call", b"b", build)
    assert built == [b"a", b"a", b"once", b"b", b"b", b"b"]
    assert memo.peek("call", b"b") is None  # nothing kept from within
    assert memo.peek("call", b"a") == [b"a"]  # what was kept before stays


def test_the_memo_holds_at_most_its_bytes_letting_the_least_recent_go():
    """Filled past its cap: the bytes held stay within it, the least recently used answer
    goes first, and what it counts is said (entries, bytes, hits, misses, evictions)."""
    body = b"x" * 1000
    weight = ENTRY_BYTES + len("call-0") + len(body) * BYTES_PER_BODY_BYTE
    memo = MappedMemo(3 * weight + 3 * weight // 15, "src")  # room for three, and a sixteenth

    def twice(i: int) -> None:  # remembered from the second time
        for _ in range(2):
            memo.get_or_map(f"call-{i}", body, lambda b: [b])

    for i in range(3):
        twice(i)
    assert (len(memo), memo._held, memo.evictions) == (3, 3 * weight, 0)
    memo.get_or_map("call-0", body, lambda b: [b])  # used again: the most recent now
    for i in range(3, 10):
        twice(i)
        assert memo.held_bytes <= memo.max_bytes
    assert (len(memo), memo._held, memo.evictions) == (3, 3 * weight, 7)
    assert memo.peek("call-0", body) is None and memo.peek("call-9", body) == [body]
    assert (memo.hits, memo.misses) == (1, 20)


def test_an_answer_larger_than_the_memo_is_mapped_and_not_kept():
    memo = MappedMemo(1000)
    built: list[bytes] = []
    for _ in range(3):
        memo.get_or_map("call", b"y" * 100, lambda b: built.append(b) or [b])
    assert (len(built), len(memo), memo._held) == (3, 0, 0)


def test_a_memo_of_zero_bytes_is_off():
    memo = MappedMemo(0)
    built: list[bytes] = []
    for _ in range(2):
        memo.get_or_map("call", b"z", lambda b: built.append(b) or [b])
    assert (len(built), len(memo)) == (2, 0)


async def _nyra_pages(cap: int):
    """A Nyra connector whose memo holds ``cap`` bytes, and a call that maps page ``i``
    of its patients (each page a distinct answer of 20 mapped Patients)."""
    connector = connect("nyra", NyraSandbox(seed=3, patients=600, limits=FAST))
    await connector._list("Patient", {}, 30, 20)  # the connections and lazy state, warm
    connector.memo = MappedMemo(cap, connector.source)
    return connector, lambda i: connector._list("Patient", {}, i, 20)


async def _leyr_units(cap: int):
    """A Leyr connector whose memo holds ``cap`` bytes, and a call that maps the
    appointments of a care unit listed for a distinct range of days."""
    sandbox = LeyrSandbox(seed=3, patients=40)
    connector = connect("leyr", sandbox)
    cu = connector.care_units[0]
    path = f"{connector._cu(cu)}/appointments"
    ctx, version = await connector._context()
    to_fhir = __import__("adapter.connectors.leyr.connector", fromlist=["_MAPPERS"])._MAPPERS[
        "Appointment"
    ][1]

    async def call(i: int):
        body = await connector.client.get_json(path, decode=bytes)
        # The same unit's answer, as distinct calls: what fills a memo over a day.
        return connector.memo.get_or_map(
            f"{path}?[{i}]#{version}", body, lambda b: connector._map_list(b, cu, to_fhir, ctx)
        )

    await call(-1)
    connector.memo = MappedMemo(cap, connector.source)
    return connector, call


@pytest.mark.anyio
@pytest.mark.parametrize("vendor", ["nyra", "leyr"])
async def test_the_bytes_a_memo_holds_of_real_answers_stay_within_its_cap(vendor):
    """Filled well past its cap with real mapped answers, the memo's count of what it
    holds stays within the cap, and so does what it really holds (``tracemalloc``: the
    memory still allocated once the fill is over). The count never says less than the
    memory held, nor more than two and a half times it (the estimate also counts what the
    allocator keeps as answers come and go, which tracemalloc does not see)."""
    cap = 2 << 20
    made = _nyra_pages if vendor == "nyra" else _leyr_units
    connector, call = await made(cap)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1, 25):
            for _ in range(2):  # remembered from the second time
                await call(i)
            assert connector.memo.held_bytes <= cap
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    memo = connector.memo
    assert memo.evictions > 0 and len(memo) > 1, (memo.evictions, len(memo), memo.held_bytes)
    assert held <= memo.held_bytes <= 2.5 * held, (held, memo.held_bytes)
    assert held <= cap
    await connector.aclose()


def test_every_cache_of_a_memo_is_published_to_the_metrics():
    from adapter.ops import metrics

    memo = MappedMemo(1 << 20, "published-src")
    for _ in range(3):
        memo.get_or_map("call", b"a", lambda b: [b])
    caches.publish()
    text = metrics.exposition()[0].decode()
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if 'source="published-src"' in line and not line.startswith("#")
    }
    labels = 'cache="memo",source="published-src"'
    assert values[f"cache_entries{{{labels}}}"] == 1
    assert values[f"cache_bytes{{{labels}}}"] == memo.held_bytes > 0
    assert values[f"cache_limit_bytes{{{labels}}}"] == 1 << 20
    lookups = 'cache_lookups_total{cache="memo",result="%s",source="published-src"}'
    assert (values[lookups % "hit"], values[lookups % "miss"]) == (1, 2)
