"""The sources behind the gate: the connectors, what they declare, the read-only ones, a
request's limits and the change journal, held once (:class:`Sources`, the base of
:class:`~adapter.facade.service.Facade`); and what background readers (the export, the
Subscriptions' sweeps) and operations ask of them. Only through these does anything
outside the gate learn of a source: never by holding its connector."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any

from adapter.facade.access import Caller
from adapter.facade.pacing import Pacer, share_limits
from adapter.fhir.cursor import CursorCodec
from adapter.fhir.declared import Declared
from adapter.fhir.outcome import FhirError
from adapter.fhir.search import SearchParam, SearchRequest
from adapter.fhir.versions import with_version
from adapter.journal import Journal, RecentStamps
from adapter.protocol import Connector, Page, unremembered
from adapter.transport import scope
from mappings import MappingError, decode_id

__all__ = ["RequestLimits", "Sources", "versioned"]


@dataclass(frozen=True)
class RequestLimits:
    """What one request may ask for: page sizes, its time (``request_seconds``) and the
    vendor calls it may make (``max_vendor_calls``)."""

    default_count: int = 20
    max_count: int = 100
    request_seconds: float | None = 30.0
    max_vendor_calls: int | None = 20


class Sources:
    def __init__(
        self,
        connectors: Mapping[str, Connector],
        cursors: CursorCodec,
        *,
        read_only: frozenset[str] = frozenset(),
        limits: RequestLimits = RequestLimits(),
        journal: Journal | None = None,
    ) -> None:
        self.connectors = dict(connectors)
        self.source_names = frozenset(self.connectors)
        self.cursors = cursors
        self.limits = limits
        self.journal = journal  # meta.lastUpdated for what the vendor does not date
        self.recent_stamps = RecentStamps()  # what it told this worker lately
        self.declared = Declared(
            {name: c.capabilities for name, c in self.connectors.items()}, read_only
        )

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.connectors.values()))

    def require_served(self, resource_type: str) -> None:
        if resource_type not in self.declared.types:
            raise FhirError.one(
                404, "not-supported", f"resource type {resource_type!r} is not served here"
            )

    def owner(self, fhir_id: str, caller: Caller = Caller()) -> str | None:
        """The configured source an id names, if the caller may see it."""
        try:
            source = decode_id(fhir_id).source
        except MappingError:
            return None
        if not caller.sees(source):
            return None
        return source if source in self.connectors else None

    async def stamped(self, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The resources with ``meta.lastUpdated`` from the journal where the vendor gave
        none (one journal call per source), in their order."""
        resources = versioned(resources)
        if self.journal is None or not resources:
            return resources
        by_source: dict[str, list[int]] = {}
        for index, resource in enumerate(resources):
            if not (resource.get("meta") or {}).get("lastUpdated"):
                source = str((resource.get("meta") or {}).get("source"))
                by_source.setdefault(source, []).append(index)
        out = list(resources)
        for source, indexes in by_source.items():
            stamped = await self.recent_stamps.stamp(
                self.journal, source, [resources[i] for i in indexes]
            )
            for index, resource in zip(indexes, stamped, strict=True):
                out[index] = resource
        return out

    # -- background readers: the export, the Subscriptions' sweeps ------------------------

    @property
    def sources(self) -> tuple[str, ...]:
        """The configured sources' names."""
        return tuple(self.connectors)

    def zone(self, source: str) -> tzinfo:
        """The time zone of ``source``'s local times."""
        return self.connectors[source].zone

    def zone_of(self, resource: dict[str, Any]) -> tzinfo:
        """The time zone of the source ``resource`` is from (``meta.source``); UTC for one
        of no source configured here."""
        connector = self.connectors.get(str((resource.get("meta") or {}).get("source")))
        return connector.zone if connector is not None else UTC

    def country(self, source: str) -> str | None:
        """The country of ``source``'s phone numbers held without a country code."""
        return self.connectors[source].country

    def pacer(
        self,
        source: str,
        share: float,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Any],
        calls: Sequence[tuple[float, int]] = (),
    ) -> Pacer:
        """A pacer for a background reader of ``source``: ``share`` of each of its vendor
        limits (:mod:`adapter.facade.pacing`)."""
        return Pacer(share_limits(self.connectors[source].limits(), share), clock, sleep, calls)

    async def listing_page(
        self,
        source: str,
        resource_type: str,
        cursor: str | None,
        *,
        count: int,
        pacer: Pacer,
        params: tuple[SearchParam, ...] = (),
    ) -> Page:
        """One page of every ``resource_type`` at ``source`` (from ``cursor``, its own
        opaque position), as a background reader takes it: the vendor calls it makes are
        counted into ``pacer`` (at least one, a failure's included), and the answers are
        mapped without the memo of interactive reads; ``params`` narrow the listing (the
        Subscriptions' hot set: upcoming appointments), as parsed by ``parse``. Raises
        what the connector raises; it does not wait for the pacer (the caller decides)."""
        request = SearchRequest(resource_type, params, count)
        with scope.spending(None, None) as spent, unremembered():
            try:
                return await self.connectors[source].search(request, cursor)
            finally:
                pacer.record(max(1, spent.calls))

    async def probe(self, source: str) -> None:
        """One cheap call to ``source`` that proves its configuration works."""
        await self.connectors[source].probe()

    # -- operations -----------------------------------------------------------------------

    def readiness(self) -> dict[str, str]:
        """Each source's state for ``/readyz``, as its connector's ``health()`` tells it
        (``up``, ``degraded``, ``circuit open``, ``credentials refused``, ``budget
        exhausted``); ``up`` for a connector that keeps no such state. Asks no vendor: a
        probe must stay cheap and must not spend rate limits."""
        return {name: connector.health() for name, connector in self.connectors.items()}


def versioned(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each resource with ``meta.versionId`` (most have it from their mapping already)."""
    if all((r.get("meta") or {}).get("versionId") for r in resources):
        return resources
    return [with_version(r) for r in resources]
