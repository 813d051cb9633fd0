"""Many Subscriptions on one worker: a change is matched once per group of Subscriptions
that listen alike and queued for all of them in one step of the store; a write through
the facade is told after it is answered, in the order written; a round leaves alone the
active criteria Subscriptions with nothing waiting; an endpoint that hangs holds only
its own lanes, however many endpoints hang.

The gate here is a stand-in serving Appointments from one source (each listing empty),
the endpoints an httpx mock transport; nothing waits on a clock: the tests wait for
events the transport and the stores set."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from adapter.fhir.search import SearchParam
from adapter.protocol import Page
from adapter.subscriptions import poller as poller_module
from adapter.subscriptions.poller import PER_ENDPOINT, SubscriptionPoller
from adapter.subscriptions.store import FileSubscriptionStore

pytestmark = pytest.mark.anyio

SOURCE = "nyra-w"
NOW = 1_000_000.0


class Gate:
    """Appointments from one source; every listing empty."""

    def __init__(self) -> None:
        self.sources = {SOURCE: None}
        self.declared = SimpleNamespace(serving=lambda resource_type: (SOURCE,))

    def parse(self, resource_type: str, items: list[tuple[str, str]], *, strict: bool) -> Any:
        named = tuple(v for n, v in items if n == "_source") or None
        params = tuple(SearchParam(n, (v,)) for n, v in items if n != "_source")
        return SimpleNamespace(request=SimpleNamespace(sources=named, params=params))

    def zone(self, source: str) -> ZoneInfo:
        return ZoneInfo("UTC")

    def country(self, source: str) -> None:
        return None

    def pacer(self, source: str, share: float, **kwargs: Any) -> Any:
        from adapter.facade import Pacer

        return Pacer([], kwargs["clock"], kwargs["sleep"])

    async def listing_page(self, *args: Any, **kwargs: Any) -> Page:
        return Page([], next_cursor=None)


class Counting(FileSubscriptionStore):
    """A file store that counts batches pushed and Subscription leases taken, and can
    hold the digest exchange until let go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[list[str]] = []
        self.leased: list[str] = []
        self.hold: asyncio.Event | None = None
        self.exchanging = asyncio.Event()

    async def push_many(self, batch: Any) -> None:
        self.batches.append([sub_id for sub_id, _ in batch])
        await super().push_many(batch)

    async def lease(self, name: str, seconds: float) -> bool:
        if name.startswith("subscription."):
            self.leased.append(name.removeprefix("subscription."))
        return await super().lease(name, seconds)

    async def exchange(self, feed: str, values: Any) -> list[str | None]:
        self.exchanging.set()
        if self.hold is not None:
            await self.hold.wait()
        return await super().exchange(feed, values)


def _poller(store: FileSubscriptionStore, handler: Any = None) -> SubscriptionPoller:
    transport = httpx.MockTransport(handler or (lambda request: httpx.Response(200)))
    return SubscriptionPoller(
        Gate(),  # type: ignore[arg-type]
        store,
        clients={},
        journal=None,
        poll_seconds=5.0,
        max_failures=3,
        budget_share=0.1,
        allowed_endpoints=("http://127.0.0.1:*",),
        base_url="http://fhir.test/fhir",
        transport=transport,
        clock=lambda: NOW,
    )


async def _subscribe(store: FileSubscriptionStore, sub_id: str, criteria: str, port: int) -> None:
    await store.create(
        {
            "owner": None,
            "resource": {
                "resourceType": "Subscription",
                "id": sub_id,
                "status": "active",
                "criteria": criteria,
                "channel": {
                    "type": "rest-hook",
                    "endpoint": f"http://127.0.0.1:{port}/hook/{sub_id}",
                    "payload": "application/fhir+json",
                },
            },
        }
    )


def _appointment(status: str) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": "a1",
        "status": status,
        "meta": {"source": SOURCE},
    }


async def test_a_change_is_matched_once_per_group_and_queued_in_one_batch(tmp_path, monkeypatch):
    store = Counting(tmp_path)
    poller = _poller(store)
    cancelled = [f"c{n:03d}" for n in range(200)]
    booked = [f"b{n:03d}" for n in range(100)]
    for sub_id in cancelled:
        await _subscribe(store, sub_id, f"Appointment?_source={SOURCE}&status=cancelled", 9000)
    for sub_id in booked:
        await _subscribe(store, sub_id, "Appointment?status=booked", 9000)
    matched: list[tuple[str, ...]] = []
    real = poller_module.matches

    def counted(resource: Any, params: Any, *args: Any) -> bool:
        matched.append(tuple(str(p) for p in params))
        return real(resource, params, *args)

    monkeypatch.setattr(poller_module, "matches", counted)
    wanted = await poller._listening()
    told = await poller._found(SOURCE, "Appointment", [_appointment("cancelled")], wanted)
    assert sorted(w.id for w in told) == cancelled
    assert sorted(matched) == [("status=booked",), ("status=cancelled",)]
    assert len(store.batches) == 1
    assert sorted(store.batches[0]) == cancelled
    for sub_id in cancelled:
        [queued] = await store.peek(sub_id, 10)
        assert (queued["id"], queued["status"]) == ("a1", "cancelled")
    for sub_id in booked:
        assert await store.peek(sub_id, 10) == []
    await poller.aclose()


class Hook:
    """Endpoints that answer 200, each notification's statuses noted by path; while
    ``gate`` is set to an unset event, a delivery waits for it."""

    def __init__(self) -> None:
        self.got: list[tuple[str, list[str]]] = []
        self.gate: asyncio.Event | None = None
        self.arrived = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        import orjson

        body = orjson.loads(request.content)
        self.got.append((request.url.path, [e["resource"]["status"] for e in body["entry"]]))
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        return httpx.Response(200)


async def _delivered(poller: SubscriptionPoller) -> None:
    """Until no delivery is under way or due again."""
    while poller._delivering:
        await asyncio.gather(*poller._delivering.values())


async def test_a_write_is_told_after_it_returns_and_in_the_order_written(tmp_path):
    store = Counting(tmp_path)
    hook = Hook()
    poller = _poller(store, hook)
    await _subscribe(store, "s1", "Appointment", 9000)
    store.hold = asyncio.Event()
    poller.tell_soon(_appointment("booked"))  # returns at once: nothing is told yet
    poller.tell_soon(_appointment("cancelled"))
    assert await store.peek("s1", 10) == []
    await store.exchanging.wait()  # the first is being told, held at the digests
    assert await store.peek("s1", 10) == []
    assert hook.got == []
    store.hold.set()
    await poller.told()
    await _delivered(poller)
    told = [status for _, statuses in hook.got for status in statuses]
    assert told == ["booked", "cancelled"]
    assert {path for path, _ in hook.got} == {"/hook/s1"}
    assert await store.peek("s1", 10) == []
    assert poller.rounds == 0  # delivered without a round
    await poller.aclose()


async def test_a_change_queued_while_a_delivery_is_under_way_follows_it_at_once(tmp_path):
    store = Counting(tmp_path)
    hook = Hook()
    hook.gate = asyncio.Event()
    poller = _poller(store, hook)
    await _subscribe(store, "s1", "Appointment", 9000)
    await poller.written(_appointment("booked"))
    await hook.arrived.wait()  # its delivery is under way, held at the endpoint
    await poller.written(_appointment("cancelled"))
    assert [r["status"] for r in await store.peek("s1", 10)] == ["booked", "cancelled"]
    hook.gate.set()
    await _delivered(poller)
    assert hook.got == [("/hook/s1", ["booked"]), ("/hook/s1", ["cancelled"])]
    assert await store.peek("s1", 10) == []
    assert poller.rounds == 0
    await poller.aclose()


async def test_a_round_leaves_alone_the_active_subscriptions_with_nothing_waiting(tmp_path):
    store = Counting(tmp_path)
    got: list[tuple[str, list[str]]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        import orjson

        body = orjson.loads(request.content)
        got.append((request.url.path, [e["resource"]["status"] for e in body["entry"]]))
        return httpx.Response(200)

    poller = _poller(store, answer)
    for n in range(50):
        await _subscribe(store, f"s{n:02d}", "Appointment?status=booked", 9000)
    await _subscribe(store, "told", "Appointment?status=cancelled", 9001)
    await store.push_many([("told", [_appointment("cancelled")])])
    await poller.round()
    assert store.leased == ["told"]
    assert got == [("/hook/told", ["cancelled"])]
    assert await store.peek("told", 10) == []
    store.leased.clear()
    await poller.round()  # nothing waits now: no Subscription is leased
    assert store.leased == []
    await poller.aclose()


async def test_endpoints_that_hang_hold_only_their_own_lanes(tmp_path):
    """Ten endpoints that never answer, eight Subscriptions each with a change waiting:
    each endpoint has its four lanes taken (forty deliveries hang, more than the lanes a
    worker used to have in all), and a Subscription at an endpoint that answers is told
    beside them in the same round."""
    store = Counting(tmp_path)
    hanging = 0
    all_hang = asyncio.Event()
    told = asyncio.Event()
    never = asyncio.Event()

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal hanging
        if request.url.port == 9100:
            told.set()
            return httpx.Response(200)
        hanging += 1
        if hanging == 10 * PER_ENDPOINT:
            all_hang.set()
        await never.wait()
        return httpx.Response(200)

    poller = _poller(store, answer)
    for port in range(9001, 9011):
        for n in range(8):
            await _subscribe(store, f"h{port}-{n}", "Appointment", port)
    await _subscribe(store, "zz-answers", "Appointment", 9100)  # served after the others
    ids = [f"h{port}-{n}" for port in range(9001, 9011) for n in range(8)] + ["zz-answers"]
    await store.push_many([(sub_id, [_appointment("booked")]) for sub_id in ids])
    round_ = asyncio.create_task(poller.round())
    await all_hang.wait()
    await told.wait()
    delivering = poller._delivering.get("zz-answers")
    if delivering is not None:
        await delivering
    assert hanging == 10 * PER_ENDPOINT  # each hanging endpoint holds its own four lanes
    assert await store.peek("zz-answers", 10) == []
    round_.cancel()
    with pytest.raises(asyncio.CancelledError):
        await round_
    await poller.aclose()
