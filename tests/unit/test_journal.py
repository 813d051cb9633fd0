"""The change journal, in a sqlite file and in Redis.

The Redis cases need the Redis server at 127.0.0.1:6379; without it they are skipped,
saying so."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from services import REDIS_URL, forget, namespace, needs_redis

from adapter.journal import FileJournal, RedisJournal, digest_of, journal_for

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)


@pytest.fixture(params=["file", pytest.param("redis", marks=needs_redis)])
async def journal(request, tmp_path):
    prefix = namespace()
    made = FileJournal(tmp_path) if request.param == "file" else RedisJournal(REDIS_URL, prefix)
    yield made
    await made.aclose()
    forget(prefix)


def _appointment(status: str = "booked", rid: str | None = None) -> dict:
    return {
        "resourceType": "Appointment",
        "id": rid or f"leyr-{uuid.uuid4().hex[:12]}",
        "meta": {"source": "leyr"},
        "status": status,
        "participant": [{"actor": {"reference": "Patient/leyr-p1"}, "status": "accepted"}],
    }


def _updated(resource: dict) -> str:
    return resource["meta"]["lastUpdated"]


def test_the_digest_ignores_meta_and_key_order():
    a = {"resourceType": "Patient", "id": "x", "active": True, "meta": {"source": "s"}}
    b = {"active": True, "id": "x", "resourceType": "Patient"}
    assert digest_of(a) == digest_of(b)
    assert digest_of(a) != digest_of({**b, "active": False})


async def test_unchanged_keeps_its_time_and_a_change_gets_a_new_one(journal):
    first = _appointment()
    [stamped] = await journal.stamp("leyr", [first], now=T0)
    assert _updated(stamped) == "2026-03-01T08:00:00.000Z"
    assert stamped["meta"]["source"] == "leyr"
    [again] = await journal.stamp("leyr", [copy.deepcopy(first)], now=T1)
    assert _updated(again) == _updated(stamped)
    changed = {**first, "status": "cancelled"}
    [moved] = await journal.stamp("leyr", [changed], now=T2)
    assert _updated(moved) == "2026-03-01T10:00:00.000Z"


async def test_the_vendors_own_time_wins(journal):
    dated = {**_appointment(), "meta": {"source": "nyra", "lastUpdated": "2025-01-02T03:04:05Z"}}
    undated = _appointment()
    out = await journal.stamp("nyra", [dated, undated], now=T0)
    assert [_updated(r) for r in out] == ["2025-01-02T03:04:05Z", "2026-03-01T08:00:00.000Z"]
    assert [r["id"] for r in out] == [dated["id"], undated["id"]]


async def test_the_inputs_are_not_changed(journal):
    resources = [
        _appointment(),
        {**_appointment(), "meta": {"lastUpdated": "2025-01-01T00:00:00Z"}},
    ]
    before = copy.deepcopy(resources)
    out = await journal.stamp("leyr", resources, now=T0)
    assert resources == before
    out[1]["meta"]["versionId"] = "2"
    assert resources == before
    assert await journal.stamp("leyr", [], now=T0) == []


async def test_sources_and_types_are_kept_apart(journal):
    rid = f"x-{uuid.uuid4().hex[:8]}"
    patient = {"resourceType": "Patient", "id": rid, "active": True}
    await journal.stamp("leyr", [patient], now=T0)
    [other] = await journal.stamp("nyra", [patient], now=T1)
    [appointment] = await journal.stamp("leyr", [_appointment(rid=rid)], now=T2)
    assert _updated(other) == "2026-03-01T09:00:00.000Z"
    assert _updated(appointment) == "2026-03-01T10:00:00.000Z"


async def test_two_instances_on_one_file_agree(tmp_path):
    one, two = FileJournal(tmp_path / "shared"), FileJournal(tmp_path / "shared")
    try:
        resource = _appointment()
        [a] = await one.stamp("leyr", [resource], now=T0)
        [b] = await two.stamp("leyr", [resource], now=T1)
        assert _updated(a) == _updated(b) == "2026-03-01T08:00:00.000Z"
        [c] = await two.stamp("leyr", [{**resource, "status": "cancelled"}], now=T2)
        [d] = await one.stamp("leyr", [{**resource, "status": "cancelled"}], now=T2 + T2.resolution)
        assert _updated(c) == _updated(d) == "2026-03-01T10:00:00.000Z"
    finally:
        await one.aclose()
        await two.aclose()
    assert (tmp_path / "shared" / "journal.sqlite3").is_file()


@needs_redis
async def test_two_redis_clients_agree():
    prefix = namespace()
    one, two = RedisJournal(REDIS_URL, prefix), RedisJournal(REDIS_URL, prefix)
    try:
        resource = _appointment()
        [a] = await one.stamp("leyr", [resource], now=T0)
        [b] = await two.stamp("leyr", [resource], now=T1)
        assert _updated(a) == _updated(b)
    finally:
        await one.aclose()
        await two.aclose()
        forget(prefix)


def test_journal_for_chooses_the_store(tmp_path):
    assert isinstance(journal_for(None, tmp_path), FileJournal)
    assert isinstance(journal_for(REDIS_URL, tmp_path), RedisJournal)


_STATUS = st.sampled_from(["booked", "cancelled", "fulfilled", "noshow"])


@pytest.mark.parametrize("backend", ["file", pytest.param("redis", marks=needs_redis)])
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(statuses=st.lists(_STATUS, min_size=1, max_size=6))
def test_stamping_twice_gives_the_same_times(tmp_path_factory, backend, statuses):
    import asyncio

    prefix = namespace()

    async def run() -> None:
        if backend == "file":
            made: FileJournal | RedisJournal = FileJournal(tmp_path_factory.mktemp("journal"))
        else:
            made = RedisJournal(REDIS_URL, prefix)
        try:
            resources = [_appointment(s) for s in statuses]
            first = await made.stamp("leyr", resources, now=T0)
            second = await made.stamp("leyr", resources, now=T1)
            assert [_updated(r) for r in first] == [_updated(r) for r in second]
        finally:
            await made.aclose()
            if backend == "redis":
                forget(prefix)

    asyncio.run(run())


async def test_a_complete_listing_marks_what_it_did_not_see_deleted(journal):
    source = f"s{uuid.uuid4().hex[:8]}"  # a fresh scope, whatever the store holds
    await journal.seen(source, "Patient", ["a", "b", "c"], T0)
    await journal.sweep(source, "Patient", T0)
    assert await journal.deleted(source, "Patient", T0 - timedelta(days=1)) == []
    await journal.seen(source, "Patient", ["a"], T1)  # a later listing: b and c are gone
    await journal.seen(source, "Appointment", ["b"], T1)  # another type is its own
    await journal.sweep(source, "Patient", T1)
    assert await journal.deleted(source, "Patient", T0) == ["b", "c"]
    assert await journal.deleted(source, "Patient", T1) == []  # noticed at T1, not after
    assert await journal.deleted(source, "Appointment", T0) == []
    # c comes back; an older listing seeing b again does not undo what a newer one found
    await journal.seen(source, "Patient", ["a", "c"], T2)
    await journal.seen(source, "Patient", ["b"], T0)
    await journal.sweep(source, "Patient", T2)
    assert await journal.deleted(source, "Patient", T0) == ["b"]
