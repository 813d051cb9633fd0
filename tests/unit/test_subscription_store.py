"""The Subscriptions' stores, on files and on Redis: a change is found once (the digest
swap), the outbox keeps its order and goes with its Subscription, leases have one holder.

The Redis cases need the Redis server at 127.0.0.1:6379 (their keys under a prefix of
their own, deleted after); without it they are skipped, saying so (under ``CI=true`` they
fail)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st
from services import REDIS_URL, aforget, namespace, need_redis

from adapter.subscriptions.store import FileSubscriptionStore, RedisSubscriptionStore

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["file", "redis"])
async def store(request, tmp_path):
    if request.param == "file":
        yield FileSubscriptionStore(tmp_path / "subscriptions")
        return
    need_redis(REDIS_URL)
    client = aioredis.Redis.from_url(REDIS_URL)
    prefix = namespace()
    made = RedisSubscriptionStore(client, prefix)
    made.namespace = prefix
    yield made
    await aforget(client, prefix)
    await made.aclose()


def _record(sub_id: str) -> dict:
    return {"owner": "crm", "resource": {"resourceType": "Subscription", "id": sub_id}}


async def test_a_digest_swap_says_what_changed(store):
    assert await store.swap("s.Patient", [("a", "1"), ("b", "1")]) == [True, True]
    assert await store.swap("s.Patient", [("a", "1"), ("b", "2"), ("c", "1")]) == [
        False,
        True,
        True,
    ]
    assert await store.swap("s.Appointment", [("a", "1")]) == [True]  # feeds are apart
    assert await store.swap("s.Patient", []) == []


async def test_two_workers_seeing_one_change_find_it_once(store, tmp_path):
    """Two stores over the same place (two workers) swap the same new digest at once:
    exactly one of them is told it changed."""
    if isinstance(store, FileSubscriptionStore):
        other = FileSubscriptionStore(store.directory)
    else:
        other = RedisSubscriptionStore(aioredis.Redis.from_url(REDIS_URL), store.namespace)
    try:
        for round_ in range(20):
            digest = f"v{round_}"
            answers = await asyncio.gather(
                store.swap("s.Appointment", [("x", digest)]),
                other.swap("s.Appointment", [("x", digest)]),
            )
            assert sorted(a[0] for a in answers) == [False, True]
    finally:
        await other.aclose()


async def test_the_outbox_keeps_order_and_goes_with_its_subscription(store):
    await store.push("nobody", [{"id": "1"}])  # no such Subscription: nothing is kept
    assert await store.peek("nobody", 10) == []
    await store.create(_record("s1"))
    await store.push("s1", [{"id": "1"}, {"id": "2"}])
    await store.push("s1", [{"id": "3"}])
    assert [r["id"] for r in await store.peek("s1", 2)] == ["1", "2"]
    await store.drop("s1", 2)
    await store.push("s1", [{"id": "4"}])
    assert [r["id"] for r in await store.peek("s1", 10)] == ["3", "4"]
    assert await store.delete("s1")
    assert await store.peek("s1", 10) == []
    assert await store.get("s1") is None
    assert not await store.update(_record("s1"))  # a deleted one stays deleted


async def test_a_lease_has_one_holder_until_released(store):
    assert await store.lease("source.a", 60)
    assert not await store.lease("source.a", 60)
    assert await store.lease("subscription.b", 60)
    await store.release("source.a")
    assert await store.lease("source.a", 60)


async def test_a_sweep_state_is_kept(store):
    assert await store.sweep("nyra") == {}
    state = {"calls": [[1.5, 2]], "feeds": {"Patient": {"cursor": "p2", "ready": False}}}
    await store.save_sweep("nyra", state)
    assert await store.sweep("nyra") == state


def test_the_file_store_keeps_secrets_to_its_owner(tmp_path: Path):
    store = FileSubscriptionStore(tmp_path)

    async def run() -> None:
        await store.create(_record("s1"))
        await store.push("s1", [{"id": "1"}])

    asyncio.run(run())
    assert (tmp_path / "s1.json").stat().st_mode & 0o077 == 0
    assert (tmp_path / "s1.outbox").stat().st_mode & 0o077 == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(st.sampled_from("abcde"), st.sampled_from(["1", "2", "3"])),
            max_size=6,
            unique_by=lambda pair: pair[0],
        ),
        max_size=8,
    )
)
def test_swaps_tell_exactly_the_digests_that_differ_from_the_last(tmp_path_factory, batches):
    """Over any run of swaps, a record is told changed exactly when its digest differs
    from the one last swapped in (or it is new)."""
    store = FileSubscriptionStore(tmp_path_factory.mktemp("feeds"))
    held: dict[str, str] = {}

    async def run() -> None:
        for batch in batches:
            told = await store.swap("s.Patient", batch)
            assert told == [held.get(key) != digest for key, digest in batch]
            held.update(batch)

    asyncio.run(run())


async def test_events_are_numbered_on_and_kept_in_the_log(store):
    await store.create(_record("s1"))
    assert await store.counted("s1") == 0
    await store.push_events("s1", [{"id": "a"}, {"id": "b"}])
    await store.push_events("s1", [{"id": "c"}])
    assert await store.counted("s1") == 3
    assert await store.peek("s1", 10) == [
        {"number": 1, "resource": {"id": "a"}},
        {"number": 2, "resource": {"id": "b"}},
        {"number": 3, "resource": {"id": "c"}},
    ]
    await store.drop("s1", 3)  # delivered: the log keeps them
    assert [e["number"] for e in await store.events("s1", 2, None)] == [2, 3]
    assert [e["number"] for e in await store.events("s1", 1, 1)] == [1]
    await store.push_events("gone", [{"id": "x"}])  # no such Subscription: nothing kept
    assert await store.counted("gone") == 0
    assert await store.delete("s1")
    assert await store.events("s1", 1, None) == [] and await store.counted("s1") == 0


async def test_two_workers_number_events_without_gaps_or_repeats(store, tmp_path):
    """Two stores over the same Redis database or directory (two workers), pushing at
    once: every number from 1 to the count, once, and the outbox in number order."""
    if isinstance(store, FileSubscriptionStore):
        other: FileSubscriptionStore | RedisSubscriptionStore = FileSubscriptionStore(
            store.directory
        )
    else:
        other = RedisSubscriptionStore(aioredis.Redis.from_url(REDIS_URL), store.namespace)
    await store.create(_record("s1"))

    async def push(worker, name: str) -> None:
        for i in range(20):
            await worker.push_events("s1", [{"id": f"{name}{i}a"}, {"id": f"{name}{i}b"}])

    await asyncio.gather(push(store, "x"), push(other, "y"))
    queued = await store.peek("s1", 1000)
    assert [e["number"] for e in queued] == list(range(1, 81))
    assert await other.counted("s1") == 80
    assert len({e["resource"]["id"] for e in queued}) == 80
    for name in ("x", "y"):  # each worker's own in the order it pushed them
        mine = [e["resource"]["id"] for e in queued if e["resource"]["id"].startswith(name)]
        assert mine == [f"{name}{i}{s}" for i in range(20) for s in "ab"]
    await other.aclose()


async def test_a_delete_during_updates_stays_deleted(tmp_path):
    """Updates racing a delete (a delivery writing back its Subscription while its
    client deletes it): once the delete has answered, no update brings it back. (On
    Redis an update is one ``SET XX``.)"""
    store = FileSubscriptionStore(tmp_path)
    for round_ in range(20):
        sub_id = f"race{round_}"
        await store.create(_record(sub_id))
        results = await asyncio.gather(
            *(store.update(_record(sub_id)) for _ in range(5)),
            store.delete(sub_id),
            *(store.update(_record(sub_id)) for _ in range(5)),
        )
        assert results[5] is True
        assert await store.get(sub_id) is None
        assert not await store.update(_record(sub_id))
