"""Every in-process cache: filled past its cap, it holds at most its bytes, lets the least
recently used go first, and counts what it did. The weights are held to what the
entries really take in memory (``tracemalloc``)."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import httpx
import pytest

from adapter.api.guard import HOSTS_BYTES, HostPolicy
from adapter.auth.clients import Client
from adapter.auth.scopes import parse_scopes
from adapter.auth.tokens import TOKENS_BYTES, TokenService
from adapter.connectors.directory import Kept
from adapter.fhir import phones
from adapter.idempotency import MemoryStore, Outcome
from adapter.ops import caches
from adapter.ops.caches import ENTRY_OVERHEAD, Table, weigh
from adapter.transport.client import URLS_BYTES, VendorHTTP


def test_a_table_holds_at_most_its_bytes_the_least_recent_going_first():
    table: Table[str, str] = Table("test", 1_000, weight=lambda k, v: 100)
    entry = ENTRY_OVERHEAD + 100
    for i in range(4):
        table.put(f"k{i}", "v")
    assert (len(table), table.held_bytes) == (3, 3 * entry)  # 1,000 bytes hold three
    assert table.get("k0") is None and table.evictions == 1
    assert table.get("k1") == "v"  # used: now the most recent
    table.put("k4", "v")
    assert table.get("k2") is None and table.get("k1") == "v"
    assert (table.hits, table.misses, table.evictions) == (2, 2, 2)
    table.put("k1", "w")  # replaced, not counted twice
    assert (len(table), table.held_bytes) == (3, 3 * entry)
    assert table.pop("k1") == "w" and table.held_bytes == 2 * entry
    table.clear()
    assert (len(table), table.held_bytes) == (0, 0)


def test_an_entry_heavier_than_the_table_is_not_kept_and_zero_keeps_nothing():
    table: Table[str, str] = Table("test", 300)
    assert table.put("k", "x" * 1_000) == "x" * 1_000
    assert (len(table), table.held_bytes) == (0, 0)
    off: Table[str, str] = Table("test", 0)
    off.put("k", "v")
    assert len(off) == 0


def test_weigh_counts_what_a_value_holds_as_tracemalloc_sees_it():
    """A record as the caches hold them: dicts, lists and strings, one string shared."""
    shared = "shared-" * 100

    def make() -> object:
        return {
            "resourceType": "Patient",
            "name": [{"family": f"Family{i}", "given": ["Given", shared]} for i in range(50)],
            "telecom": [{"system": "phone", "value": f"+4670{i:07d}"} for i in range(50)],
        }

    make()  # interned names and the like, made before counting
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        value = make()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held <= weigh(value) <= 1.5 * held


def test_the_host_table_is_bounded_in_bytes():
    policy = HostPolicy(["api.example.org:*"])
    for i in range(20_000):
        assert policy.allows(f"h{i}.example.net".encode()) is False
        assert policy._seen.held_bytes <= HOSTS_BYTES
    assert policy._seen.evictions > 0
    assert policy.allows(b"api.example.org:443") is True


def test_the_table_of_verified_tokens_is_bounded_in_bytes():
    service = TokenService(b"k" * 32, "http://x/fhir", minutes=5)
    client = Client(name="c", scopes=parse_scopes("system/*.rs"), sources=frozenset())
    for _ in range(3_000):
        token, _ = service.issue(client, client.scopes)
        assert service.verify(token)[0] == "c"
        assert service._verified.held_bytes <= TOKENS_BYTES
    assert service._verified.evictions > 0


def test_the_tables_of_vendor_urls_and_requests_are_bounded_in_bytes():
    http = VendorHTTP("http://vendor/", httpx.Timeout(1.0), httpx.MockTransport(lambda r: None))
    http.serving("src")
    headers = {"accept": "application/json"}
    for i in range(10_000):
        http._get(httpx.URL(f"http://vendor/patients?name={'x' * 200}{i}"), headers)
        assert http._gets.held_bytes <= http._gets.max_bytes
    assert http._gets.evictions > 0 and http._gets.source == "src"
    assert URLS_BYTES > 0


def test_the_table_of_phone_numbers_read_is_bounded_in_bytes():
    for i in range(20_000):
        phones.search_number(f"+46 70 {i:07d}")
        phones._read(f"+46 70 {i:07d}", "SE")
        assert phones._READ.held_bytes <= phones._READ.max_bytes
    assert phones._READ.evictions > 0


def test_the_idempotency_store_is_bounded_in_bytes():
    store = MemoryStore(max_bytes=50_000)

    async def fill() -> None:
        for i in range(500):
            await store.claim(f"key-{i}", "print")
            await store.finish(f"key-{i}", Outcome("print", 201, (), b"x" * 1_000))
            assert store.held_bytes <= 50_000

    asyncio.run(fill())
    assert store.evictions > 0 and store.misses == 500
    assert store in set(caches.registered())


@pytest.mark.anyio
async def test_a_directory_within_its_bytes_is_kept_and_one_larger_is_asked_again():
    calls: list[int] = []
    size = [10]

    async def fetch() -> list[str]:
        calls.append(1)
        return ["practitioner " * 10] * size[0]

    kept = Kept(300.0, fetch, max_bytes=20_000, source="dir-src")
    await kept.get()
    await kept.get()
    assert len(calls) == 1 and 0 < kept.held_bytes <= 20_000 and len(kept) == 1
    assert (kept.hits, kept.misses) == (1, 1)
    kept.forget()
    size[0] = 10_000  # a directory that outgrew its memory
    for _ in range(2):
        assert len(await kept.get()) == 10_000
    assert len(calls) == 3 and kept.held_bytes == 0 and len(kept) == 0
