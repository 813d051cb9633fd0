"""What a source knows about itself, fetched on demand and kept for a while.

A vendor's directory (Leyr's care units, practitioners and services; the doctors and
branches a Nyra hospital's records name) changes seldom and is needed often: to serve
Practitioner, Location, Organization, HealthcareService and Schedule, and to give the
references in Appointments their names. :class:`Kept` holds one such value for
``directory_seconds`` (a source key, 300 by default), fetching it once for all the
requests that need it meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import tzinfo
from typing import Any, Generic, TypeVar

from adapter.connectors.base import Page, ResourceNotFound, offset_page
from adapter.fhir.match import matches
from adapter.fhir.search import SearchRequest
from adapter.transport import scope

__all__ = ["DIRECTORY_TYPES", "Kept", "directory_page", "find", "read_each"]

T = TypeVar("T")

# The directory resource types a connector may serve from what it keeps.
DIRECTORY_TYPES = frozenset(
    {"Practitioner", "Device", "Location", "Organization", "HealthcareService", "Schedule"}
)


class Kept(Generic[T]):
    """A value fetched by ``fetch`` on first use and kept ``seconds`` (0: fetched on every
    use). One fetch at a time: requests arriving meanwhile wait for it and share it. A
    fetch that fails keeps nothing, so the next use tries again."""

    def __init__(
        self,
        seconds: float,
        fetch: Callable[[], Awaitable[T]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self._fetch = fetch
        self._clock = clock
        self._value: T | None = None
        self._until = 0.0
        self._lock = asyncio.Lock()

    def fresh(self) -> T | None:
        """The value if it is still fresh; never fetches."""
        if self._value is not None and self._clock() < self._until:
            return self._value
        return None

    async def get(self) -> T:
        found = self.fresh()
        if found is not None:
            return found
        async with self._lock:
            found = self.fresh()
            if found is not None:
                return found
            with scope.shared():  # kept for every request: not this request's calls
                value = await self._fetch()
            if self.seconds > 0:
                self._value, self._until = value, self._clock() + self.seconds
            return value

    def forget(self) -> None:
        self._value, self._until = None, 0.0


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
