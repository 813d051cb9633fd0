"""What a source knows about itself, fetched on demand and kept for a while.

A vendor's directory (Leyr's care units, practitioners and services; the doctors and
branches a Nyra hospital's records name) changes seldom and is needed often: to serve
Practitioner, Location, Organization, HealthcareService and Schedule, and to give the
references in Appointments their names. :class:`Kept` holds one such value for
``directory_seconds`` (a source key, 300 by default), fetching it once for all the
requests that need it meanwhile, within ``directory_mb`` of memory (what it holds is
weighed when it is fetched; one larger than that is used by the requests that asked and
then let go, so each use asks again, and the log says so once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import tzinfo
from typing import Any, Generic, TypeVar

from adapter.connectors.base import Page, ResourceNotFound, offset_page
from adapter.fhir.match import matches
from adapter.fhir.search import SearchRequest
from adapter.ops import caches
from adapter.transport import lanes, scope

__all__ = ["DIRECTORY_TYPES", "Kept", "directory_page", "find", "read_each"]

T = TypeVar("T")
log = logging.getLogger("fhir_adapter")

# The directory resource types a connector may serve from what it keeps.
DIRECTORY_TYPES = frozenset(
    {"Practitioner", "Device", "Location", "Organization", "HealthcareService", "Schedule"}
)


class Kept(Generic[T]):
    """A value fetched by ``fetch`` on first use and kept ``seconds`` (0: fetched on every
    use) while it weighs at most ``max_bytes``. One fetch at a time: requests arriving
    meanwhile wait for it and share it. A fetch that fails keeps nothing, so the next use
    tries again. Shown in ``/metrics`` as ``cache_*{cache="directory", source}``."""

    def __init__(
        self,
        seconds: float,
        fetch: Callable[[], Awaitable[T]],
        clock: Callable[[], float] = time.monotonic,
        *,
        max_bytes: int = 8 << 20,
        source: str = "",
    ) -> None:
        self.name = "directory"
        self.source = source
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._fetch = fetch
        self._clock = clock
        self._value: T | None = None
        self._until = 0.0
        self._weight = 0
        self._lock = asyncio.Lock()
        self._said = False
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        caches.register(self)

    @property
    def held_bytes(self) -> int:
        return self._weight if self._value is not None else 0

    def __len__(self) -> int:
        return 0 if self._value is None else 1

    def fresh(self) -> T | None:
        """The value if it is still fresh; never fetches."""
        if self._value is not None and self._clock() < self._until:
            return self._value
        return None

    async def get(self) -> T:
        found = self.fresh()
        if found is not None:
            self.hits += 1
            return found
        async with self._lock:
            found = self.fresh()
            if found is not None:
                self.hits += 1
                return found
            self.misses += 1
            # Kept for every request: not this request's calls, and in the background lane.
            with scope.shared(), lanes.lane("background"):
                value = await self._fetch()
            self.forget()
            if self.seconds > 0:
                weight = caches.weigh(value)
                if weight <= self.max_bytes:
                    self._value, self._weight = value, weight
                    self._until = self._clock() + self.seconds
                elif not self._said:
                    self._said = True
                    log.warning(
                        "source %s: its directory takes about %.1f MB, more than its "
                        "directory_mb (%.1f): it is asked again for each use",
                        self.source,
                        weight / (1 << 20),
                        self.max_bytes / (1 << 20),
                    )
            return value

    def forget(self) -> None:
        if self._value is not None and self._clock() >= self._until:
            self.evictions += 1
        self._value, self._until, self._weight = None, 0.0, 0


def directory_page(
    resources: Iterable[dict[str, Any]], request: SearchRequest, cursor: str | None, zone: tzinfo
) -> Page:
    """A page of the kept resources that match every parameter of ``request``."""
    hits = [r for r in resources if matches(r, request.params, zone)]
    return offset_page(hits, request.count, cursor)


async def read_each(
    request: SearchRequest, read: Callable[[str], Awaitable[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The resources the request's ``_id`` values name, each read once; an id nothing
    answers to is left out (a search finds what there is)."""
    out = []
    for fhir_id in dict.fromkeys(v for p in request.named("_id") for v in p.values):
        try:
            out.append(await read(fhir_id))
        except ResourceNotFound:
            continue
    return out


def find(resources: Iterable[dict[str, Any]], resource_type: str, fhir_id: str) -> dict[str, Any]:
    """The kept resource with this id, or :class:`ResourceNotFound`."""
    for resource in resources:
        if resource.get("id") == fhir_id:
            return resource
    raise ResourceNotFound(resource_type, fhir_id)
