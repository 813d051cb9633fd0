"""The poller: finds what changed at each source and delivers it to the Subscriptions whose
criteria it matches.

**Finding changes.** Every ``[subscriptions] poll_seconds`` (sooner after a write through
the facade) each worker takes a round. For each source that an active Subscription may
hear from (its owner's sources, narrowed by the criteria's ``_source``) and whose lease it
gets, it sweeps the source's listing of each resource type asked for (Appointment,
Patient), page after page, as far as the budget allows, and goes on from there in the
next round; when a sweep reaches the end, the next starts again from the first page. Each
record's content digest is swapped into the feed's digests (:meth:`Store.swap`, atomic):
a record whose digest changed (or is new) is a change, found once whichever worker sees
it. The first sweep of a feed only records what it finds; a Subscription becomes
``active`` once every feed it hears from has been swept once, and tells of changes from
then on. The digests are kept (Redis, or files): after a restart, or when a source is
listened to again after a time without Subscriptions, what changed meanwhile is told as it
is found.

**Budget.** A source's sweeps make at most ``budget_share`` of each limit of its key pool
(:mod:`adapter.facade.pacing`), counted over the calls of every worker (the counts
live with the sweep's state); a vendor without limits is swept at most
:data:`PAGES_PER_ROUND` pages per type a round. A change is found when the sweep next
reaches its record: at worst one whole sweep later.

**The facade's own writes** (create, book, move, cancel) are swapped into the feeds as
they are answered (:meth:`SubscriptionPoller.written`) and delivered at once.

**Delivery.** A change that matches a Subscription's criteria (evaluated in memory,
:func:`adapter.fhir.match.matches`) goes to the end of its outbox. The holder of the
Subscription's lease POSTs the outbox, oldest first, as one R4 ``history`` Bundle to
``channel.endpoint`` with the ``channel.header`` lines (entries with the resources when
``channel.payload`` is ``application/fhir+json``, none for ping only). The changes leave
the outbox once the endpoint answers 2xx: delivery is at least once, in order per
resource. A failure is tried again after a backoff that doubles (from ``poll_seconds``, up
to five minutes), jittered (between half of it and all of it); after ``max_failures``
in a row the Subscription is ``error`` and ``Subscription.error`` says why. One past its
``end`` is ``off``. Subscriptions are served side by side, one delivery in flight each,
and each endpoint (scheme, host and port) has its own queue: at most
:data:`PER_ENDPOINT` deliveries to it at once, so one that hangs holds only its own
Subscriptions; a round waits for them at most ``poll_seconds``, and one still under way
goes on beside the next rounds.

**Topic-based Subscriptions** (:mod:`adapter.subscriptions.topics`) hear the changes their
topic's trigger calls events, judged against what the feed's digests kept of the record
before; a handshake goes out before one is ``active``, its events are numbered as they
are logged (:meth:`Store.push_events`: a Redis stream read by a consumer group, or
SQLite), the log both ``$events`` and delivery read (:meth:`Store.peek` takes the first
events not acknowledged, :meth:`Store.drop` acknowledges them once the endpoint took
them), and a heartbeat goes out when ``backport-heartbeat-period`` passes with nothing
sent. One in ``error`` still hears its events (its log keeps them); set back to
``requested`` it shakes hands again and delivers from its first event not acknowledged.

**Who hears what.** Everything is read through the gate (:class:`adapter.facade.Facade`),
and every delivery is checked as every answer is: its owner's client must still exist
and may read the criteria's type (the token's read scopes when it was made, narrowed by
the client's scopes now: a configuration reload that takes them away stops it, ``error``
with the reason), and only resources of sources that client may use are sent. Each
delivery writes an audit record (client, Subscription, types and counts; no ids, no
patient data).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlsplit

import httpx

from adapter.facade import Caller, Facade, Pacer, readable_types
from adapter.fhir.dates import parse_instant
from adapter.fhir.match import matches
from adapter.fhir.outcome import FhirError
from adapter.fhir.search import SearchParam
from adapter.fhir.versions import with_version
from adapter.journal import Journal, digest_of
from adapter.ops import redis_watch
from adapter.ops.logs import write_audit
from adapter.subscriptions.model import PAYLOAD, check_endpoint, parsed_criteria
from adapter.subscriptions.store import LEASE_SECONDS, Store
from adapter.subscriptions.topics import TOPICS, Event, Facts, facts_of, notification
from adapter.transport import lanes, tls_context

__all__ = [
    "PAGES_PER_ROUND",
    "SubscriptionPoller",
    "events_bundle",
    "history_bundle",
    "status_bundle",
]

log = logging.getLogger("fhir_adapter.subscriptions")

PAGES_PER_ROUND = 10  # per source and type, for a vendor without limits
PAGE_SIZE = 100
HOT_DAYS = 14  # the hot set: appointments from today to this many days on
HOT_SHARE = 0.25  # at most this share of a feed's sweep pages go to its hot set
BATCH = 100  # changes in one notification at most
_MAX_BACKOFF = 300.0
# A lease's life; a dead worker's pending stream events are taken over as long after.
_LEASE_SECONDS = LEASE_SECONDS
_ROUND_BACKOFF = 60.0  # the longest wait after rounds that failed in a row
_DELIVERY_SECONDS = 10.0
_DELIVERY_LANES = 32  # Subscriptions served at once by one worker
PER_ENDPOINT = 4  # of those, at most this many to one endpoint (scheme, host and port)
_ACTIVE = ("requested", "active")


def history_bundle(
    changes: list[dict[str, Any]], base: str | None, with_resources: bool
) -> dict[str, Any]:
    """The notification: an R4 history Bundle of ``changes`` (ping only: no entries), each
    entry's ``fullUrl`` under ``base`` (``[server] public_base_url``, else the base URL
    the Subscription was made through)."""
    entries = []
    if with_resources:
        for resource in changes:
            path = f"{resource['resourceType']}/{resource['id']}"
            entry: dict[str, Any] = {"fullUrl": f"{base}/{path}"} if base else {}
            entry["resource"] = resource
            entry["request"] = {"method": "PUT", "url": path}
            entry["response"] = {"status": "200"}
            entries.append(entry)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if entries:
        bundle["entry"] = entries
    return bundle


def status_bundle(record: dict[str, Any], base: str, told: int) -> dict[str, Any]:
    """The answer to ``$status``: a searchset Bundle of the Subscription's
    subscription-status ``Parameters`` (type ``query-status``; ``told``: the number of
    its last event); a criteria Subscription's has no topic and no event count (its
    changes are not numbered)."""
    parameters = notification(
        kind="query-status",
        subscription=record["resource"],
        base=base,
        since_start=told,
        timestamp=_instant(time.time()),
    )["entry"][0]["resource"]
    if not record.get("topic"):
        parameters["parameter"] = [
            p
            for p in parameters["parameter"]
            if p["name"] not in ("topic", "events-since-subscription-start")
        ]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [{"resource": parameters, "search": {"mode": "match"}}],
    }


def events_bundle(
    record: dict[str, Any], base: str, told: int, events: Sequence[Event], content: str
) -> dict[str, Any]:
    """The answer to ``$events``: a history Bundle of type ``query-event`` holding
    ``events`` as a notification would (``content``: empty, id-only or full-resource)."""
    return notification(
        kind="query-event",
        subscription=record["resource"],
        base=base,
        since_start=told,
        events=events,
        content=content,
        timestamp=_instant(time.time()),
    )


class _EndpointLanes:
    """One endpoint's queue: at most ``size`` deliveries to it at once; ``users``, the
    Subscriptions holding or waiting for a lane."""

    def __init__(self, size: int) -> None:
        self.semaphore = asyncio.Semaphore(size)
        self.users = 0


def _origin(endpoint: str) -> str:
    """An endpoint's scheme, host and port: what its queue is known by."""
    try:
        parts = urlsplit(endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return endpoint
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


class _Wanted:
    """What one Subscription listens to: its resource type, the sources it hears from
    (those serving the type that its owner may use, narrowed by ``_source``), and the
    parameters a change must match; ``caller``: its owner, as the gate sees it."""

    def __init__(self, record: dict[str, Any], facade: Facade, caller: Caller) -> None:
        self.record = record
        self.caller = caller
        self.id = str(record["resource"]["id"])
        self.endpoint = _origin(str((record["resource"].get("channel") or {}).get("endpoint")))
        chosen: dict[str, Any] = record.get("topic") or {}
        self.topic = TOPICS[chosen["name"]] if chosen else None
        named: tuple[str, ...] | None
        if self.topic is not None:  # a topic's filters: _source narrows, the rest match
            resource_type = self.topic.resource_type
            filters = [(str(n), str(v)) for n, v in chosen["filters"]]
            sources = [v for n, value in filters if n == "_source" for v in value.split(",")]
            named = tuple(sources) if sources else None
            params = tuple(
                SearchParam(n, tuple(v.split(","))) for n, v in filters if n != "_source"
            )
        else:
            resource_type, request = parsed_criteria(facade, str(record["resource"]["criteria"]))
            named, params = request.sources, request.params
        self.resource_type = resource_type
        self.sources = tuple(
            s
            for s in facade.declared.serving(resource_type)
            if caller.sees(s) and (named is None or s in named)
        )
        self.params: tuple[SearchParam, ...] = params

    def hears(
        self,
        resource: dict[str, Any],
        source: str,
        zone: tzinfo,
        country: str | None = None,
        before: Facts | None = None,
    ) -> bool:
        """Whether a change is told to this Subscription: ``before``, what was known of
        the resource before it (None: nothing), for a topic's trigger."""
        return (
            resource.get("resourceType") == self.resource_type
            and source in self.sources
            and (self.topic is None or self.topic.trigger(before, resource))
            and matches(resource, self.params, zone, country)
        )


class SubscriptionPoller:
    def __init__(
        self,
        facade: Facade,
        store: Store,
        *,
        clients: Mapping[str, Any],
        journal: Journal | None,
        poll_seconds: float,
        max_failures: int,
        budget_share: float,
        allowed_endpoints: tuple[str, ...],
        base_url: str | None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        audit_file: Any = None,
        jitter: Callable[[], float] = random.random,
        per_endpoint: int = PER_ENDPOINT,
    ) -> None:
        self.facade = facade
        self.audit_file = audit_file  # the AuditEvent NDJSON file, when one is kept
        self.store = store
        self.clients = clients
        self.journal = journal
        self.poll_seconds = poll_seconds
        self.max_failures = max_failures
        self.budget_share = budget_share
        self.allowed = allowed_endpoints
        self.base_url = base_url
        self.clock = clock
        # No connection is kept between deliveries: each goes to the address judged for
        # it, with its own TLS name, never over a connection made for another name.
        self._http = httpx.AsyncClient(
            transport=transport,
            verify=tls_context(),
            timeout=_DELIVERY_SECONDS,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lanes = asyncio.Semaphore(_DELIVERY_LANES)
        # Each endpoint's own queue: its Subscriptions wait for one of its few lanes, so
        # an endpoint that hangs holds at most ``per_endpoint`` of the worker's lanes.
        self.per_endpoint = per_endpoint
        self._endpoints: dict[str, _EndpointLanes] = {}
        self.jitter = jitter  # in [0, 1): how much of a retry's backoff is waited
        self._delivering: dict[str, asyncio.Task[None]] = {}  # by Subscription
        self.rounds = 0  # rounds this worker has begun
        # Called with the number of rounds ended so far as each one ends, failed or not
        # (what waits for the poller to have looked again: tests, a console).
        self.on_round_end: Callable[[int], None] | None = None
        self._ended = 0

    # -- running ---------------------------------------------------------------------------

    def nudge(self) -> None:
        """Take a round soon, not at the next interval."""
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="subscriptions")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        deliveries = list(self._delivering.values())
        for task in deliveries:  # tried again from the outbox after a restart
            task.cancel()
        await asyncio.gather(*deliveries, return_exceptions=True)

    async def aclose(self) -> None:
        await self.stop()
        await self._http.aclose()
        await self.store.aclose()

    async def _run(self) -> None:
        failed = 0  # rounds failed in a row: the wait before the next one doubles
        redis = getattr(self.store, "redis", None)  # a store shared through Redis
        place = None if redis is None else redis_watch.where(redis)
        while True:
            wait = min(self.poll_seconds * 2**failed, max(self.poll_seconds, _ROUND_BACKOFF))
            await self._between_rounds(wait)
            self._wake.clear()
            try:
                await self.round()
            except Exception as exc:  # the next round tries again, later
                failed = min(failed + 1, 16)
                if place is not None and redis_watch.is_outage(exc):
                    redis_watch.unreachable(place, exc)  # once per outage, not every round
                else:
                    log.warning(
                        "subscription round failed: %s (%d in a row)", type(exc).__name__, failed
                    )
            else:
                failed = 0
                if place is not None:
                    redis_watch.answers(place)
            self._ended += 1
            if self.on_round_end is not None:
                self.on_round_end(self._ended)

    async def _between_rounds(self, seconds: float) -> None:
        """Until nudged, or ``seconds`` pass (a test of the backoff replaces it on the
        poller, so that the intervals it is asked for can be seen without waiting them)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    # -- a round ---------------------------------------------------------------------------

    async def round(self) -> None:
        """Sweep the sources this worker can lease, then deliver for the Subscriptions it
        can lease."""
        self.rounds += 1
        wanted = await self._listening()
        feeds: dict[str, set[str]] = {}
        for want in wanted:
            for source in want.sources:
                feeds.setdefault(source, set()).add(want.resource_type)
        for source, types in sorted(feeds.items()):
            if await self.store.lease(f"source.{source}", _LEASE_SECONDS):
                try:
                    await self._sweep(source, sorted(types), wanted)
                finally:
                    await self.store.release(f"source.{source}")
        ready = {source: await self._ready_types(source) for source in feeds}

        async def tend(want: _Wanted) -> None:
            async with self._endpoint_lane(want.endpoint), self._lanes:
                if not await self.store.lease(f"subscription.{want.id}", _LEASE_SECONDS):
                    return
                try:
                    await self._tend(want, ready)
                except Exception as exc:  # its own failure, never the round's
                    await self._broken(want.id, f"it could not be served ({type(exc).__name__})")
                finally:
                    await self.store.release(f"subscription.{want.id}")

        # Each Subscription on its own, one delivery in flight each: the round waits for
        # them at most one poll interval, and one still under way then (an endpoint that
        # hangs) goes on beside the next rounds, which serve every other Subscription.
        started = []
        for want in wanted:
            if want.id not in self._delivering:
                task = asyncio.create_task(tend(want), name=f"subscription {want.id}")
                self._delivering[want.id] = task
                task.add_done_callback(functools.partial(self._delivered, want.id))
                started.append(task)
        if started:
            await asyncio.wait(started, timeout=self.poll_seconds)

    def _delivered(self, sub_id: str, _: asyncio.Task[None]) -> None:
        self._delivering.pop(sub_id, None)

    @contextlib.asynccontextmanager
    async def _endpoint_lane(self, endpoint: str) -> AsyncIterator[None]:
        """One of the lanes of ``endpoint`` (an origin), waited for in its own queue; an
        endpoint's lanes are let go when no Subscription holds or waits for one, so the
        table holds only the endpoints in use."""
        lanes = self._endpoints.get(endpoint)
        if lanes is None:
            lanes = self._endpoints[endpoint] = _EndpointLanes(self.per_endpoint)
        lanes.users += 1
        try:
            async with lanes.semaphore:
                yield
        finally:
            lanes.users -= 1
            if lanes.users == 0:
                self._endpoints.pop(endpoint, None)

    async def _listening(self) -> list[_Wanted]:
        """The Subscriptions that listen (``requested`` or ``active``), with what they
        hear; those past their ``end``, or whose client is gone, are stopped here."""
        out = []
        for record in await self.store.all():
            try:
                want = await self._listens(record)
            except Exception as exc:  # a record this service cannot read: its own error
                why = f"it could not be read ({type(exc).__name__})"
                try:
                    await self._stop(record, "error", why)
                except Exception:  # not even its id: left for an operator
                    log.warning("a subscription record cannot be read: %s", type(exc).__name__)
                continue
            if want is not None:
                out.append(want)
        return out

    async def _listens(self, record: dict[str, Any]) -> _Wanted | None:
        """What ``record`` listens to, or None (not listening, or stopped here)."""
        resource = record["resource"]
        status = resource.get("status")
        # A topic-based one in error still hears its events (kept for $events and for
        # delivery once it is set back to requested); only delivery waits.
        if status not in _ACTIVE and not (status == "error" and record.get("topic")):
            return None
        owner = record.get("owner")
        client = self.clients.get(owner) if owner is not None else None
        if owner is not None and client is None:
            await self._stop(record, "error", "the client that made this Subscription is gone")
            return None
        end = resource.get("end")
        if end is not None:
            try:
                ends = parse_instant(end).timestamp()
            except ValueError as exc:
                await self._stop(record, "error", f"Subscription.end {exc}")
                return None
            if ends <= self.clock():
                await self._stop(record, "off", None)
                return None
        caller = _owner(record, client)
        try:
            want = _Wanted(record, self.facade, caller)
        except Exception:  # the criteria no longer parses (a source was removed)
            await self._stop(record, "error", "the criteria is no longer a search served here")
            return None
        if not caller.may_read(want.resource_type):
            why = f"the client's scopes no longer allow read of {want.resource_type}"
            await self._stop(record, "error", why)
            return None
        return want

    async def _stop(self, record: dict[str, Any], status: str, why: str | None) -> None:
        sub_id = str(record["resource"]["id"])
        if not await self.store.lease(f"subscription.{sub_id}", _LEASE_SECONDS):
            return
        try:
            fresh = await self.store.get(sub_id)
            if fresh is not None and fresh["resource"].get("status") in _ACTIVE:
                fresh["resource"]["status"] = status
                if why is not None:
                    fresh["resource"]["error"] = why
                    log.warning("subscription stopped: %s", why)
                await self.store.update(fresh)
        finally:
            await self.store.release(f"subscription.{sub_id}")

    # -- finding changes -------------------------------------------------------------------

    async def _sweep(self, source: str, types: list[str], wanted: list[_Wanted]) -> None:
        state = await self.store.sweep(source)
        pacer = self.facade.pacer(
            source,
            self.budget_share,
            clock=self.clock,
            sleep=asyncio.sleep,
            calls=state.get("calls") or (),
        )
        feeds: dict[str, Any] = state.setdefault("feeds", {})
        try:
            for resource_type in types:
                feed = feeds.setdefault(resource_type, {"cursor": None, "ready": False})
                await self._sweep_feed(source, resource_type, feed, pacer, wanted)
                feed["swept_at"] = self.clock()
        finally:
            state["calls"] = list(pacer.calls)
            await self.store.save_sweep(source, state)

    def _hot(self, source: str, resource_type: str) -> tuple[str, tuple[SearchParam, ...]] | None:
        """The hot set of a feed: for Appointments, those from today (the source's day)
        to :data:`HOT_DAYS` days on, a window both vendors filter by date; named by its
        first day (a new day is a new listing). None for another type."""
        if resource_type != "Appointment":
            return None
        today = datetime.fromtimestamp(self.clock(), self.facade.zone(source)).date()
        last = today + timedelta(days=HOT_DAYS)
        items = [("date", f"ge{today.isoformat()}"), ("date", f"lt{last.isoformat()}")]
        try:
            params = self.facade.parse(resource_type, items, strict=True).request.params
        except FhirError:  # no source here takes a date: no hot set
            return None
        return today.isoformat(), params

    async def _sweep_feed(
        self,
        source: str,
        resource_type: str,
        feed: dict[str, Any],
        pacer: Pacer,
        wanted: list[_Wanted],
    ) -> None:
        """The next pages of the feed's listing, as far as the budget allows. Once the
        feed knows its records (a whole sweep done), its hot set (:meth:`_hot`) is swept
        beside it, from its own cursor, at most once a round and with at most
        :data:`HOT_SHARE` of the pages both have taken (counted across rounds, from the
        start of the day): the upcoming appointments are looked at many times as often
        as the rest, which slows by at most that share."""
        hot = self._hot(source, resource_type) if feed.get("ready") else None
        heat: dict[str, Any] = {}
        if hot is not None:
            heat = feed.setdefault("hot", {})
            if heat.get("day") != hot[0]:  # a new day: its own listing, from the start
                heat.clear()
                heat.update(day=hot[0], pages=0, whole_pages=0)
        hot_left = hot is not None  # the hot set may still be swept this round
        whole_left = True
        for _ in range(PAGES_PER_ROUND if not pacer.limits else 1_000):
            if pacer.delay() > 0 or not (hot_left or whole_left):
                return
            due = hot_left and (
                not whole_left or heat["pages"] <= HOT_SHARE * (heat["pages"] + heat["whole_pages"])
            )
            if hot is not None and due:
                heat["pages"] += 1
                ended = await self._sweep_page(source, resource_type, heat, pacer, wanted, hot[1])
                if ended is not None:  # swept whole (True) or failed: again next round
                    hot_left = False
                    if ended:
                        heat["swept_at"] = self.clock()
                continue
            if not whole_left:
                return
            if hot is not None:
                heat["whole_pages"] += 1
            tell = wanted if feed.get("ready") else None
            ended = await self._sweep_page(source, resource_type, feed, pacer, tell, ())
            if ended is not None:
                whole_left = False
                if ended:  # a whole sweep: the feed knows its records
                    feed["ready"] = True

    async def _sweep_page(
        self,
        source: str,
        resource_type: str,
        position: dict[str, Any],
        pacer: Pacer,
        tell: list[_Wanted] | None,
        params: tuple[SearchParam, ...],
    ) -> bool | None:
        """The page of a listing at ``position["cursor"]``, its changes told to ``tell``;
        ``position`` moves on. None: more to come; True: the listing's end was reached
        (the next starts again from its first page); False: it failed (tried again next
        round)."""
        try:
            with lanes.lane("background"), lanes.client(lanes.ANONYMOUS):
                page = await self.facade.listing_page(
                    source,
                    resource_type,
                    position.get("cursor"),
                    count=PAGE_SIZE,
                    pacer=pacer,
                    params=params,
                )
        except Exception as exc:  # the next round tries again
            log.info("subscription sweep of %s failed: %s", source, type(exc).__name__)
            return False
        await self._found(source, resource_type, page.resources, tell)
        position["cursor"] = page.next_cursor
        return True if page.next_cursor is None else None

    async def written(self, resource: dict[str, Any]) -> None:
        """A resource as a write through the facade left it: told at once."""
        source = str((resource.get("meta") or {}).get("source"))
        if source not in self.facade.sources:
            return
        await self._found(
            source, str(resource.get("resourceType")), [resource], await self._listening()
        )
        self.nudge()

    async def _found(
        self,
        source: str,
        resource_type: str,
        resources: list[dict[str, Any]],
        tell: list[_Wanted] | None,
    ) -> None:
        """Swap the digests of what was seen in; what changed goes to the outboxes of the
        Subscriptions of ``tell`` that hear it (none while a feed's first sweep runs)."""
        resources = [with_version(r) for r in resources if r.get("id")]
        digests = [digest_of(r) for r in resources]
        olds = await self.store.exchange(
            f"{source}.{resource_type}",
            [
                (str(r["id"]), f"{digest}|{facts_of(r).packed()}")
                for r, digest in zip(resources, digests, strict=True)
            ],
        )
        news, befores = [], []
        for resource, digest, old in zip(resources, digests, olds, strict=True):
            if old is None or old.partition("|")[0] != digest:
                news.append(resource)
                # What was known before: nothing (first seen), or facts (none kept by a
                # version of the service before topics).
                befores.append(None if old is None else Facts.unpacked(old.partition("|")[2]))
        if tell is None or not news:
            return
        if self.journal is not None:
            news = await self.journal.stamp(source, news)
        zone = self.facade.zone(source)
        country = self.facade.country(source)  # of phone numbers without a code
        for want in tell:
            try:
                heard = [
                    r
                    for r, before in zip(news, befores, strict=True)
                    if want.hears(r, source, zone, country, before)
                ]
            except Exception as exc:  # this Subscription's criteria, not the others'
                await self._broken(want.id, f"a change could not be matched ({type(exc).__name__})")
                continue
            if heard:
                if want.topic is not None:
                    await self.store.push_events(want.id, heard)
                else:
                    await self.store.push(want.id, heard)

    async def _ready_types(self, source: str) -> set[str]:
        feeds = (await self.store.sweep(source)).get("feeds") or {}
        return {t for t, feed in feeds.items() if feed.get("ready")}

    # -- delivery --------------------------------------------------------------------------

    async def _tend(self, want: _Wanted, ready: Mapping[str, set[str]]) -> None:
        record = await self.store.get(want.id)  # as the last holder left it
        if record is None:
            return
        resource = record["resource"]
        waiting = float(record.get("next_at") or 0) > self.clock()
        if resource.get("status") == "requested":
            if not all(want.resource_type in ready.get(s, set()) for s in want.sources):
                return
            if want.topic is not None:  # the IG's handshake, before it is active
                if waiting:
                    return
                told = await self.store.counted(want.id)
                handshake = self._status_bundle(record, "handshake", told)
                error = await self._deliver(record, handshake)
                if error is not None:
                    self._failed(record, error)
                    await self.store.update(record)
                    return
                self._audit(want, [], "handshake")
                record["sent_at"] = self.clock()
            resource["status"] = "active"
            record["failures"] = 0
            record["next_at"] = 0
            resource.pop("error", None)
            await self.store.update(record)
        if resource.get("status") != "active" or float(record.get("next_at") or 0) > self.clock():
            return
        chosen = record.get("topic") or {}
        changes = await self.store.peek(want.id, int(chosen.get("max_count") or BATCH))
        if not changes:
            await self._heartbeat(want, record)
            return
        # Where resources leave: only what the owner may see now.
        if want.topic is None:
            shown = [r for r in changes if want.caller.may_see(r)]
            numbers: list[int] = []
            base = self.base_url or record.get("base")
            bundle = history_bundle(
                shown, base, (resource.get("channel") or {}).get("payload") == PAYLOAD
            )
        else:  # numbered events
            events = [
                Event(int(e["number"]), e["resource"])
                for e in changes
                if want.caller.may_see(e["resource"])
            ]
            shown = [e.resource for e in events]
            numbers = [e.number for e in events]
            told = await self.store.counted(want.id)
            bundle = self._status_bundle(record, "event-notification", told, events)
        error = await self._deliver(record, bundle) if shown else None
        if error is None:
            await self.store.drop(want.id, len(changes))
            if shown:
                self._audit(want, shown, "event-notification", numbers)
            record["sent_at"] = self.clock()
            record["failures"] = 0
            record["next_at"] = 0
            resource.pop("error", None)
            await self.store.update(record)
            return
        self._failed(record, error)
        await self.store.update(record)

    async def _heartbeat(self, want: _Wanted, record: dict[str, Any]) -> None:
        """A heartbeat once ``backport-heartbeat-period`` has passed with nothing sent."""
        period = (record.get("topic") or {}).get("heartbeat")
        if not period or self.clock() - float(record.get("sent_at") or 0) < float(period):
            return
        told = await self.store.counted(want.id)
        error = await self._deliver(record, self._status_bundle(record, "heartbeat", told))
        if error is not None:
            self._failed(record, error)
        else:
            self._audit(want, [], "heartbeat")
            record["sent_at"] = self.clock()
            record["failures"] = 0
        await self.store.update(record)

    def _status_bundle(
        self, record: dict[str, Any], kind: str, told: int, events: Sequence[Event] = ()
    ) -> dict[str, Any]:
        """A topic-based notification of ``kind``: ``told``, the number of its last event."""
        return notification(
            kind=kind,
            subscription=record["resource"],
            base=str(self.base_url or record.get("base")),
            since_start=told,
            events=events,
            content=str((record.get("topic") or {}).get("content")),
            timestamp=_instant(self.clock()),
        )

    async def _deliver(self, record: dict[str, Any], bundle: dict[str, Any]) -> str | None:
        """None once the endpoint took the notification, else why not (never a header)."""
        channel = record["resource"].get("channel") or {}
        endpoint = str(channel.get("endpoint"))
        try:  # judged again: its name may resolve elsewhere now
            target = await check_endpoint(endpoint, self.allowed)
        except FhirError:
            return "the endpoint now resolves to an address that may not be called"
        headers = {"content-type": "application/fhir+json"}
        for line in channel.get("header") or []:
            name, _, value = str(line).partition(":")
            headers[name.strip()] = value.strip()
        extensions: dict[str, Any] = {}
        if target.host is not None:  # to the address judged, under its name
            headers["host"] = target.host
            extensions["sni_hostname"] = target.server_name
        timeout = float((record.get("topic") or {}).get("timeout") or _DELIVERY_SECONDS)
        try:
            answer = await self._http.post(
                target.url, json=bundle, headers=headers, extensions=extensions, timeout=timeout
            )
        except httpx.HTTPError as exc:
            return f"the endpoint could not be reached ({type(exc).__name__})"
        except Exception as exc:  # a header httpx will not send, say: its own failure
            return f"the notification could not be sent ({type(exc).__name__})"
        if not answer.is_success:
            return f"the endpoint answered {answer.status_code}"
        return None

    def _audit(
        self, want: _Wanted, sent: list[dict[str, Any]], kind: str, numbers: Sequence[int] = ()
    ) -> None:
        """The audit record of one delivery: who, which Subscription, the notification's
        type, how many of each type from which sources (and, topic-based, the first and
        last event numbers); no ids, nothing of a patient."""
        counts: dict[str, int] = {}
        for resource in sent:
            kind = str(resource.get("resourceType"))
            counts[kind] = counts.get(kind, 0) + 1
        sources = {str((r.get("meta") or {}).get("source")) for r in sent}
        told = {"event_numbers": [min(numbers), max(numbers)]} if numbers else {}
        write_audit(
            {
                "event": "subscription.notify",
                "at": _instant(self.clock()),
                "client": want.caller.name,
                "interaction": "notify",
                "type": want.resource_type,
                "subscription": want.id,
                "notification": kind,
                **told,
                "counts": counts,
                "sources": sorted(sources),
                "ids": [],
                "status": 200,
                "outcome": "success",
            },
            self.audit_file,
        )

    async def _broken(self, sub_id: str, why: str) -> None:
        """Something went wrong while serving this Subscription: a failure of its own,
        counted toward ``max_failures`` like a delivery's."""
        log.warning("subscription failed: %s", why)
        record = await self.store.get(sub_id)
        if record is None:
            return
        try:
            self._failed(record, why)
            await self.store.update(record)
        except Exception as exc:
            log.warning("subscription could not be marked failed: %s", type(exc).__name__)

    def _failed(self, record: dict[str, Any], why: str) -> None:
        failures = int(record.get("failures") or 0) + 1
        record["failures"] = failures
        if failures >= self.max_failures:
            record["resource"]["status"] = "error"
            record["resource"]["error"] = f"{why}; {failures} failures in a row"
            log.warning("subscription stopped after %d failed deliveries", failures)
            return
        # Jittered: between half the backoff and all of it, so that Subscriptions that
        # failed together (one endpoint down) are not all tried again at one moment.
        backoff = min(_MAX_BACKOFF, self.poll_seconds * 2 ** (failures - 1))
        record["next_at"] = self.clock() + backoff * (1 + self.jitter()) / 2
        log.info("subscription delivery failed (%d of %d): %s", failures, self.max_failures, why)


def _instant(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _owner(record: dict[str, Any], client: Any) -> Caller:
    """A Subscription's owner as the gate sees it: the sources its client may use now, and
    the types it may read: those its token could read when the Subscription was made
    (``types`` in the record), narrowed by the client's scopes now."""
    if client is None:  # made under open access
        return Caller()
    now = readable_types(client.scopes)
    then = record.get("types")
    if then is not None:
        now = frozenset(then) if now is None else now & frozenset(then)
    return Caller(client.name, client.sources, now)
