"""Idempotency stores: first outcome kept and replayed, in memory or shared through Redis.

The Redis cases need the Redis server at 127.0.0.1:6379; without it they are skipped,
saying so."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from harness import FAST
from services import REDIS_URL, forget, namespace, needs_redis

from adapter.app import create_app
from adapter.idempotency import MemoryStore, Outcome, RedisStore
from adapter.sandbox import NyraSandbox
from adapter.settings import Settings
from mappings import encode_id

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
async def store(request):
    if request.param == "memory":
        yield MemoryStore()
        return
    prefix = namespace()
    s = RedisStore(REDIS_URL, prefix=prefix)
    yield s
    await s.aclose()
    forget(prefix)


async def test_claim_finish_replay(store):
    key = f"k-{uuid.uuid4()}"
    assert await store.claim(key, "print-1") is None
    running = await store.claim(key, "print-1")
    assert running == Outcome("print-1")  # still running: no status yet
    done = Outcome("print-1", 201, (("location", "http://x/fhir/Patient/a"),), b'{"id":"a"}')
    await store.finish(key, done)
    assert await store.claim(key, "print-1") == done
    assert (await store.claim(key, "print-2")).fingerprint == "print-1"


async def test_a_released_key_can_be_claimed_again(store):
    key = f"k-{uuid.uuid4()}"
    assert await store.claim(key, "p") is None
    await store.finish(key, None)
    assert await store.claim(key, "p") is None


async def test_memory_outcomes_expire():
    now = [0.0]
    store = MemoryStore(ttl=10, clock=lambda: now[0])
    await store.claim("k", "p")
    await store.finish("k", Outcome("p", 201))
    now[0] = 9.9
    assert (await store.claim("k", "p")).status == 201
    now[0] = 20.0
    assert await store.claim("k", "p") is None


class Held(httpx.AsyncBaseTransport):
    """The vendor's transport, holding each booking (POST) until ``release`` is set."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.release = asyncio.Event()
        self.booking = asyncio.Event()  # a booking reached the vendor

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.booking.set()
            await self.release.wait()
        return await self.inner.handle_async_request(request)


@needs_redis
async def test_two_workers_sharing_redis_book_once():
    """The same key sent to two workers at once: the second arrives while the first's
    booking is at the vendor, and is told the first is still running (409), not sent.
    Asked again once the first is done, the key replays its outcome."""
    sandbox = NyraSandbox(seed=4, patients=3, limits=FAST)
    source = {"connector": "nyra", **sandbox.defaults()}
    vendor = Held(sandbox.transport())

    prefix = namespace()

    def worker():
        settings = Settings(
            open_access=True,
            sources={"nyra-r": source},
            cursor_key=b"r" * 32,
            redis_url=REDIS_URL,
            redis_prefix=prefix,
        )
        return create_app(settings, transports={"nyra-r": vendor})

    patient = next(iter(sandbox.patients))
    doctor = next(iter(sandbox.doctors))
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": "2031-03-04T10:00:00+05:30",
        "participant": [
            {
                "actor": {"reference": f"Patient/{encode_id('nyra-r', patient['id'])}"},
                "status": "accepted",
            },
            {
                "actor": {"reference": f"Practitioner/{encode_id('nyra-r', doctor['id'])}"},
                "status": "accepted",
            },
        ],
    }
    headers = {"content-type": "application/fhir+json", "Idempotency-Key": f"two-{uuid.uuid4()}"}
    apps = [worker(), worker()]
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w")
        for app in apps
    ]

    async def first() -> httpx.Response:
        return await clients[0].post("/fhir/Appointment", json=body, headers=headers)

    async def second() -> httpx.Response:
        await vendor.booking.wait()  # the first's booking is at the vendor, held
        try:
            return await clients[1].post("/fhir/Appointment", json=body, headers=headers)
        finally:
            vendor.release.set()

    made, running = await asyncio.gather(first(), second())
    assert made.status_code == 201, made.text
    assert running.status_code == 409
    assert running.json()["issue"][0]["diagnostics"] == (
        "a request with this Idempotency-Key is still running"
    )
    again = await clients[1].post("/fhir/Appointment", json=body, headers=headers)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == made.json()
    booked = [
        a for a in sandbox.appointments if a["appointment_time"].startswith("2031-03-04T10:00")
    ]
    assert len(booked) == 1
    for client, app in zip(clients, apps, strict=True):
        await client.aclose()
        await app.state.idempotency.aclose()
    forget(prefix)


@needs_redis
async def test_client_rate_limits_are_shared_through_redis():
    from adapter.api.guard import RedisLimiter

    prefix = namespace()
    store = RedisStore(REDIS_URL, prefix=f"{prefix}idem:")
    clock = [1_900_000_000.0]
    first, second = (
        RedisLimiter(store.redis, lambda: clock[0], namespace=prefix),
        RedisLimiter(store.redis, lambda: clock[0], namespace=prefix),
    )
    client = f"client-{uuid.uuid4()}"
    counts = [await limiter.hit(client, 3) for limiter in (first, second, first, second)]
    assert [c for c, _ in counts] == [1, 2, 3, 4]
    assert counts[0][1] == (1_900_000_000 // 60 + 1) * 60
    clock[0] += 60
    assert (await second.hit(client, 3))[0] == 1
    await store.aclose()
    assert forget(prefix) == 2  # the two windows, under this test's prefix only


async def test_a_hundred_thousand_keys_stay_under_the_bound():
    store = MemoryStore(max_entries=10_000, max_bytes=4 << 20)
    body = b"x" * 500
    for n in range(100_000):
        key = f"client\0key-{n}"
        assert await store.claim(key, "p") is None
        await store.finish(key, Outcome("p", 201, (("location", f"/fhir/Patient/{n}"),), body))
    assert len(store) <= 10_000 and store.held_bytes <= 4 << 20
    # the newest are kept and replayed; the oldest were let go
    assert (await store.claim("client\0key-99999", "p")).status == 201
    assert await store.claim("client\0key-0", "p") is None


async def test_the_oldest_outcomes_expire_first_whatever_their_number():
    now = [0.0]
    store = MemoryStore(ttl=10, clock=lambda: now[0])
    for n in range(1000):
        now[0] = n / 100  # ten seconds of writes
        await store.claim(f"k{n}", "p")
        await store.finish(f"k{n}", Outcome("p", 201))
    now[0] = 15.0  # the first half is older than ten seconds
    await store.claim("new", "p")
    assert 499 <= len(store) <= 502
