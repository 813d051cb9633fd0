"""Where export jobs are kept (a file per job, or Redis), who holds a job (leases), and the
pacing that keeps an export within its share of a vendor key's rate, and a resumed run
that writes nothing twice."""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis
from services import REDIS_URL, aforget, namespace, need_redis

from adapter.export.engine import (
    ExportState,
    _changed_after,
    parse_instant,
    run_export,
)
from adapter.export.store import FileJobStore, RedisJobStore
from adapter.facade import Facade
from adapter.facade.pacing import Pacer, share_limits
from adapter.fhir.cursor import CursorCodec
from adapter.fhir.declared import Capabilities, ResourceCapability
from adapter.protocol import Page
from adapter.transport.client import VendorClient
from adapter.transport.ratelimit import KeyPool

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["file", "redis"])
async def store(request, tmp_path):
    if request.param == "file":
        now = [1000.0]
        made = FileJobStore(tmp_path, clock=lambda: now[0])
        made.advance = lambda seconds: now.__setitem__(0, now[0] + seconds)
        yield made
        return
    need_redis(REDIS_URL)
    client = aioredis.Redis.from_url(REDIS_URL)
    prefix = namespace()
    made = RedisJobStore(client, tmp_path, prefix)
    made.advance = None
    yield made
    await aforget(client, prefix)
    await made.aclose()


async def test_jobs_are_kept_listed_and_deleted(store, tmp_path):
    assert await store.ids() == []
    await store.put({"id": "a", "status": "running"})
    await store.put({"id": "b", "status": "done"})
    assert await store.ids() == ["a", "b"]
    assert (await store.get("a"))["status"] == "running"
    (tmp_path / "files" / "a").mkdir(parents=True)
    await store.delete("a")
    assert await store.get("a") is None
    assert await store.ids() == ["b"]
    assert not (tmp_path / "files" / "a").exists()


async def test_one_owner_holds_a_job_until_it_releases_it(store):
    await store.put({"id": "a"})
    assert await store.claim("a", "one", 60)
    assert await store.claim("a", "one", 60)  # renewed
    assert not await store.claim("a", "two", 60)
    await store.release("a", "two")  # not its lease: nothing happens
    assert not await store.claim("a", "two", 60)
    await store.release("a", "one")
    assert await store.claim("a", "two", 60)


async def test_a_lease_nobody_renews_runs_out(store):
    if store.advance is None:
        pytest.skip("Redis expires leases on its own clock")
    await store.put({"id": "a"})
    assert await store.claim("a", "one", 60)
    store.advance(61)
    assert await store.claim("a", "two", 60)


def test_the_export_takes_its_share_of_each_keys_limits():
    limits = VendorClient.limits(_WithPool(KeyPool.nyra(["k1", "k2", "k3"])))
    assert limits == [(36, 1.0), (180, 60.0)]  # 12 a second and 60 a minute, per key
    assert share_limits(limits, 0.5) == [(18, 1.0), (90, 60.0)]
    assert share_limits([], 0.5) == []  # a vendor without limits is not paced


class _WithPool:
    def __init__(self, pool: KeyPool) -> None:
        self.pool = pool


async def test_pages_wait_until_the_window_has_room():
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer([(4, 10.0)], lambda: now[0], sleep)
    await pacer.wait()
    pacer.record(3)
    now[0] = 2.0
    await pacer.wait()  # 3 of 4 used: room
    pacer.record(2)
    now[0] = 3.0
    await pacer.wait()  # 5 in the window: until the first page's calls leave it
    assert slept == [7.0]
    assert now[0] == 10.0


async def test_a_resumed_run_drops_what_came_after_its_checkpoint(tmp_path):
    """A page that spilled into a new file before the run stopped is written once."""
    pages = {None: ("p2", 3), "p2": ("p3", 3), "p3": (None, 2)}

    class Listing:
        source = "s"
        stop_at: str | None = "p2"
        capabilities = Capabilities({"Patient": ResourceCapability(frozenset())})

        def limits(self):
            return []

        async def aclose(self):
            return None

        async def search(self, request, cursor=None):
            if cursor == self.stop_at:
                raise KeyboardInterrupt  # stopped between a write and its checkpoint
            following, size = pages[cursor]
            start = {None: 0, "p2": 3, "p3": 6}[cursor]
            ids = [f"x{i}" for i in range(start, start + size)]
            return Page([{"resourceType": "Patient", "id": i} for i in ids], following)

    saved: list[dict] = []

    async def save(state: ExportState) -> None:
        saved.append(state.to_json())

    listing = Listing()
    gate = Facade({"s": listing}, CursorCodec(b"k" * 32))
    state = ExportState.plan([("s", "Patient")])
    with pytest.raises(KeyboardInterrupt):
        await run_export(gate, state, tmp_path, save, file_max_records=4)
    # What a crash leaves past the checkpoint: the next file, begun.
    (tmp_path / "Patient.s.002.ndjson").write_bytes(b'{"resourceType": "Patient", "id": "x6"}\n')
    listing.stop_at = None
    resumed = ExportState.from_json(saved[-1])
    done = await run_export(gate, resumed, tmp_path, save, file_max_records=4)
    ids = [
        orjson.loads(line)["id"]
        for f in done.parts[0].files
        for line in (tmp_path / f.name).read_bytes().splitlines()
    ]
    assert ids == [f"x{i}" for i in range(8)]
    assert [f.count for f in done.parts[0].files] == [4, 4]


def test_a_vendor_time_in_whole_seconds_counts_as_any_moment_of_it():
    since = parse_instant("2026-03-01T10:00:00.400Z")

    def after(stamp: str, coarse: bool) -> bool:
        return _changed_after({"meta": {"lastUpdated": stamp}}, since, coarse=coarse)

    assert after("2026-03-01T10:00:00.000Z", coarse=True)  # may be 10:00:00.900
    assert not after("2026-03-01T09:59:59.000Z", coarse=True)
    assert not after("2026-03-01T10:00:00.000Z", coarse=False)  # the journal's: exact
    assert after("2026-03-01T10:00:00.401Z", coarse=False)
    assert not after("2026-03-01T10:00:00.400Z", coarse=True)
    assert _changed_after({}, since, coarse=True)  # no time: kept


async def test_in_redis_a_finished_job_expires_after_its_keeping(tmp_path):
    """A finished job's record carries an expiry: its keeping and an hour's grace after it
    finished, so that Redis drops it even if no process sweeps; a running job has none."""
    need_redis(REDIS_URL)
    client = aioredis.Redis.from_url(REDIS_URL)
    prefix = namespace()
    now = [10_000.0]
    made = RedisJobStore(client, tmp_path, prefix, keep_seconds=7200, clock=lambda: now[0])
    try:
        await made.put({"id": "running", "finished": None})
        assert await client.ttl(f"{prefix}export:job:running") == -1
        await made.put({"id": "done", "finished": now[0] - 600})
        # 2 h of keeping and 1 h of grace, 10 min of which have passed (Redis's own clock
        # may pass a second boundary between the put and the read).
        left = await client.ttl(f"{prefix}export:job:done")
        assert 3 * 3600 - 600 - 1 <= left <= 3 * 3600 - 600
        await made.put({"id": "old", "finished": now[0] - 4 * 3600})
        assert await client.ttl(f"{prefix}export:job:old") == 1
    finally:
        await aforget(client, prefix)
        await made.aclose()
