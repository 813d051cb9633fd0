"""The poller: runs each active Subscription's search and delivers what changed.

Every ``[subscriptions] poll_seconds`` (sooner after a write through the facade:
:meth:`SubscriptionPoller.nudge`) each worker goes through the Subscriptions. For each it
can lease (so that under several workers one polls it at a time, and each change is
delivered once) it:

- turns it ``off`` when its ``end`` has passed;
- runs its criteria through the facade (the first page, as its owner: the sources that
  client may see), stamps the matches with the journal (``meta.lastUpdated``), and
  compares each match's content digest with the one last delivered for that id;
- the first search after a Subscription is made only records what it finds and makes it
  ``active``: a Subscription tells of changes from then on;
- POSTs the changes as one R4 ``history`` Bundle to ``channel.endpoint`` with the
  ``channel.header`` lines (entries with the resources when ``channel.payload`` is
  ``application/fhir+json``, none for ping only). A change counts as delivered once the
  endpoint answers 2xx; until then it is sent again at the next attempt, after a backoff
  that doubles with each failure (up to five minutes). After ``max_failures`` failures in
  a row the Subscription is ``error`` and ``Subscription.error`` says why.

Budget: a round searches for at most ``max(1, int(budget_share * 100))`` Subscriptions
(each search one first page, held to the facade's per-request vendor calls); those not
reached come first in the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from adapter.facade import Caller, Facade
from adapter.journal import Journal, digest_of
from adapter.subscriptions.model import PAYLOAD, check_endpoint, criteria_of
from adapter.subscriptions.store import Store

__all__ = ["SubscriptionPoller", "history_bundle"]

log = logging.getLogger("fhir_adapter.subscriptions")

_MAX_BACKOFF = 300.0
_LEASE_SECONDS = 120.0
_DELIVERY_SECONDS = 10.0


def history_bundle(
    changes: list[dict[str, Any]], base: str | None, with_resources: bool
) -> dict[str, Any]:
    """The notification: an R4 history Bundle of ``changes`` (ping only: no entries).
    ``fullUrl`` needs ``[server] public_base_url`` (``base``); without it, none is given."""
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
    ) -> None:
        self.facade = facade
        self.store = store
        self.clients = clients
        self.journal = journal
        self.poll_seconds = poll_seconds
        self.max_failures = max_failures
        self.per_round = max(1, int(budget_share * 100))
        self.allowed = allowed_endpoints
        self.base_url = base_url
        self.clock = clock
        self._http = httpx.AsyncClient(
            transport=transport, timeout=_DELIVERY_SECONDS, follow_redirects=False
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._skipped: list[str] = []  # not reached last round: first in the next

    def nudge(self) -> None:
        """Poll soon (after a write through the facade), not at the next interval."""
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

    async def aclose(self) -> None:
        await self.stop()
        await self._http.aclose()
        await self.store.aclose()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()
            try:
                await self.round()
            except Exception as exc:  # the next round tries again
                log.warning("subscription round failed: %s", type(exc).__name__)

    async def round(self) -> None:
        """One pass over the Subscriptions this worker can lease."""
        records = [
            r
            for r in await self.store.all()
            if r["resource"].get("status") in ("requested", "active")
        ]
        first = set(self._skipped)
        records.sort(key=lambda r: r["resource"]["id"] not in first)
        now = self.clock()
        due = [r for r in records if float(r.get("next_at") or 0) <= now]
        self._skipped = [r["resource"]["id"] for r in due[self.per_round :]]
        for record in due[: self.per_round]:
            sub_id = record["resource"]["id"]
            if not await self.store.lease(sub_id, _LEASE_SECONDS):
                continue
            try:
                fresh = await self.store.get(sub_id)  # as the last holder left it
                if fresh is not None:
                    await self._poll(fresh)
            finally:
                await self.store.release(sub_id)

    async def _poll(self, record: dict[str, Any]) -> None:
        resource = record["resource"]
        if (
            resource.get("status") not in ("requested", "active")
            or float(record.get("next_at") or 0) > self.clock()
        ):
            return
        end = resource.get("end")
        if (
            end
            and datetime.fromisoformat(str(end).replace("Z", "+00:00")).timestamp() <= self.clock()
        ):
            resource["status"] = "off"
            await self.store.update(record)
            return
        owner = record.get("owner")
        client = self.clients.get(owner) if owner is not None else None
        if owner is not None and client is None:
            self._fail_for_good(record, "the client that made this Subscription is gone")
            await self.store.update(record)
            return
        caller = Caller(owner, client.sources) if client is not None else Caller()
        resource_type, items = criteria_of(str(resource["criteria"]))
        try:
            result = await self.facade.search(resource_type, items, caller, strict=True)
        except Exception as exc:
            self._failed(record, f"the criteria search failed: {type(exc).__name__}")
            await self.store.update(record)
            return
        matches = await self._stamped(result.matches)
        seen: dict[str, str] = record.setdefault("seen", {})
        changed = [m for m in matches if seen.get(str(m.get("id"))) != digest_of(m)]
        if resource.get("status") == "requested":
            resource["status"] = "active"
            seen.update({str(m.get("id")): digest_of(m) for m in matches})
            await self.store.update(record)
            return
        if not changed:
            return
        error = await self._deliver(resource, changed)
        if error is None:
            seen.update({str(m.get("id")): digest_of(m) for m in changed})
            record["failures"] = 0
            record["next_at"] = 0
            resource.pop("error", None)
        else:
            self._failed(record, error)
        await self.store.update(record)

    async def _stamped(self, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.journal is None:
            return resources
        out = list(resources)
        by_source: dict[str, list[int]] = {}
        for index, resource in enumerate(resources):
            if not (resource.get("meta") or {}).get("lastUpdated"):
                source = str((resource.get("meta") or {}).get("source"))
                by_source.setdefault(source, []).append(index)
        for source, indexes in by_source.items():
            stamped = await self.journal.stamp(source, [resources[i] for i in indexes])
            for index, resource in zip(indexes, stamped, strict=True):
                out[index] = resource
        return out

    async def _deliver(self, resource: dict[str, Any], changes: list[dict[str, Any]]) -> str | None:
        """None once the endpoint took the notification, else why not (never a header)."""
        channel = resource.get("channel") or {}
        endpoint = str(channel.get("endpoint"))
        try:
            await check_endpoint(endpoint, self.allowed)  # its name may resolve elsewhere now
        except Exception:
            return "the endpoint now resolves to an address that may not be called"
        bundle = history_bundle(changes, self.base_url, channel.get("payload") == PAYLOAD)
        headers = {"content-type": "application/fhir+json"}
        for line in channel.get("header") or []:
            name, _, value = str(line).partition(":")
            headers[name.strip()] = value.strip()
        try:
            answer = await self._http.post(endpoint, json=bundle, headers=headers)
        except httpx.HTTPError as exc:
            return f"the endpoint could not be reached ({type(exc).__name__})"
        if not answer.is_success:
            return f"the endpoint answered {answer.status_code}"
        return None

    def _failed(self, record: dict[str, Any], why: str) -> None:
        failures = int(record.get("failures") or 0) + 1
        record["failures"] = failures
        if failures >= self.max_failures:
            self._fail_for_good(record, f"{why}; {failures} failures in a row")
            return
        record["next_at"] = self.clock() + min(
            _MAX_BACKOFF, self.poll_seconds * 2 ** (failures - 1)
        )
        log.info("subscription delivery failed (%d of %d)", failures, self.max_failures)

    def _fail_for_good(self, record: dict[str, Any], why: str) -> None:
        record["resource"]["status"] = "error"
        record["resource"]["error"] = why
        log.warning("subscription stopped: %s", why)
