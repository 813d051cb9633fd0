"""A topic-based Subscription's event log keeps its events for ``[subscriptions]
keep_hours``: what is older is never answered by ``$events`` and, once delivered, is cut
from the log, in SQLite and in a Redis stream, with the time given by an injected clock.

The Redis cases use keys of Subscriptions named by a fresh uuid, and delete only those
(other test runs share the server)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st
from services import REDIS_URL, needs_redis

from adapter.settings import SettingsError, load_settings
from adapter.subscriptions.store import FileSubscriptionStore, RedisSubscriptionStore

KEEP = 3600.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _record(sub_id: str) -> dict:
    return {"owner": "crm", "resource": {"resourceType": "Subscription", "id": sub_id}}


def _store(kind: str, where: Path, clock: Clock) -> FileSubscriptionStore | RedisSubscriptionStore:
    if kind == "file":
        return FileSubscriptionStore(where, keep_seconds=KEEP, clock=clock)
    return RedisSubscriptionStore(
        aioredis.Redis.from_url(REDIS_URL), keep_seconds=KEEP, clock=clock
    )


async def _logged(store: FileSubscriptionStore | RedisSubscriptionStore, sub_id: str) -> int:
    """How many events the log holds, as stored (not as answered)."""
    if isinstance(store, FileSubscriptionStore):
        db = sqlite3.connect(store.directory / "events.sqlite3")
        try:
            query = "SELECT count(*) FROM events WHERE subscription = ?"
            return int(db.execute(query, (sub_id,)).fetchone()[0])
        finally:
            db.close()
    return int(await store.redis.xlen(store.stream(sub_id)))


KINDS = pytest.mark.parametrize("kind", ["file", pytest.param("redis", marks=needs_redis)])


@KINDS
def test_events_older_than_keep_hours_leave_the_log(kind, tmp_path):
    clock = Clock(1_000.0)
    store = _store(kind, tmp_path, clock)
    sub_id = f"keep-{uuid.uuid4().hex}"

    async def run() -> None:
        try:
            await store.create(_record(sub_id))
            await store.push_events(sub_id, [{"id": "a"}])  # at 1000
            clock.now = 2_000.0
            await store.push_events(sub_id, [{"id": "b"}, {"id": "c"}])  # at 2000
            clock.now = 1_000.0 + KEEP  # a is exactly keep_seconds old: still kept
            assert [e["number"] for e in await store.events(sub_id, 1, None)] == [1, 2, 3]
            clock.now = 1_000.0 + KEEP + 0.5
            assert await store.events(sub_id, 1, None) == [
                {"number": 2, "resource": {"id": "b"}},
                {"number": 3, "resource": {"id": "c"}},
            ]
            # Its number stays counted, and what was not delivered stays queued (held,
            # never answered by $events).
            assert await _logged(store, sub_id) == 3
            assert await store.counted(sub_id) == 3
            assert [e["number"] for e in await store.peek(sub_id, 10)] == [1, 2, 3]
            await store.drop(sub_id, 3)  # delivered
            assert [e["number"] for e in await store.events(sub_id, 1, None)] == [2, 3]
            assert await _logged(store, sub_id) == 2  # cut from the log, not only hidden
            clock.now = 2_000.0 + KEEP + 1
            await store.push_events(sub_id, [{"id": "d"}])
            assert await _logged(store, sub_id) == 1
            assert await store.events(sub_id, 1, None) == [{"number": 4, "resource": {"id": "d"}}]
            assert await store.events(sub_id, 1, 3) == []
        finally:
            await store.delete(sub_id)
            await store.aclose()

    asyncio.run(run())


@KINDS
@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=2 * KEEP, allow_nan=False),  # time passing
            st.integers(min_value=0, max_value=3),  # events pushed then
        ),
        min_size=1,
        max_size=12,
    )
)
def test_the_log_answers_exactly_the_events_of_the_last_keep_hours(kind, tmp_path_factory, steps):
    """Over any run of pushes spread in time, ``$events`` answers exactly the events
    numbered at most ``keep_seconds`` ago, in order, each with its number: an oracle that
    remembers every event and its time says which."""
    clock = Clock(50_000.0)
    store = _store(kind, tmp_path_factory.mktemp("keep"), clock)
    sub_id = f"keep-{uuid.uuid4().hex}"
    every: list[tuple[int, float]] = []  # (number, time numbered)

    async def run() -> None:
        try:
            await store.create(_record(sub_id))
            for passing, count in steps:
                clock.now += round(passing, 3)
                told = len(every)
                resources = [{"id": f"r{told + i}"} for i in range(count)]
                await store.push_events(sub_id, resources)
                every.extend((told + i + 1, clock.now) for i in range(count))
                kept = [n for n, at in every if at >= clock.now - KEEP]
                answered = await store.events(sub_id, 1, None)
                assert [e["number"] for e in answered] == kept
                assert [e["resource"]["id"] for e in answered] == [f"r{n - 1}" for n in kept]
        finally:
            await store.delete(sub_id)
            await store.aclose()

    asyncio.run(run())


SOURCE = """
[server]
open_access = true

[sources.nyra-demo]
connector = "nyra"
timezone = "Asia/Kolkata"
sandbox = { seed = 7, patients = 5 }
"""


def test_keep_hours_is_read_strictly(tmp_path):
    path = tmp_path / "adapter.toml"
    path.write_text(SOURCE)
    assert load_settings(path, env={}).subscriptions.keep_hours == 24.0
    path.write_text(SOURCE + "[subscriptions]\nkeep_hours = 6\n")
    assert load_settings(path, env={}).subscriptions.keep_hours == 6.0
    for wrong in ("0", "-1", '"six"'):
        path.write_text(SOURCE + f"[subscriptions]\nkeep_hours = {wrong}\n")
        with pytest.raises(SettingsError) as raised:
            load_settings(path, env={})
        assert "keep_hours" in str(raised.value)
    path.write_text(SOURCE + "[subscriptions]\nkeep_hour = 6\n")
    with pytest.raises(SettingsError) as raised:
        load_settings(path, env={})
    assert "keep_hour" in str(raised.value) and "keep_hours" in str(raised.value)
