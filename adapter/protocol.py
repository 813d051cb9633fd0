"""What a connector is: the protocol every connector implements, and the values and
errors it hands the facade.

This module stands below both sides of the gate: the connectors implement it, and the
facade, the export and the Subscriptions call it through the facade alone, without
importing any connector. A connector owns one configured source: it turns reads and
:class:`SearchRequest`s into vendor calls (through :mod:`adapter.transport`) and vendor
records into FHIR dicts (through :mod:`mappings`). Its :class:`Capabilities` (declared
with the FHIR side, in :mod:`adapter.fhir.declared`) are the single truth for what the
CapabilityStatement advertises: a parameter not declared is refused, never ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import tzinfo
from typing import Any, Protocol, runtime_checkable

from adapter.fhir.declared import Capabilities, ResourceCapability
from adapter.fhir.search import SearchRequest, UnsupportedParameter
from adapter.fhir.versions import with_version

__all__ = [
    "Capabilities",
    "Connector",
    "ConnectorConfigError",
    "Page",
    "PaginationLoop",
    "ReadsMany",
    "ResourceCapability",
    "ResourceNotFound",
    "WriteNotMade",
    "WriteNotSupported",
    "WriteOutcomeUnknown",
    "WriteRefusals",
    "WriteRefused",
    "Written",
    "check_supported",
    "iterate",
    "offset_page",
    "read_rest",
    "remembering",
    "unremembered",
]


@dataclass
class Page:
    """One page of a connector's search.

    ``next_cursor`` is the connector's own opaque position (``None`` on the last page);
    ``total`` is the number of matches of the whole search, set only when it is exact;
    ``left_out`` the vendor ids of records the mapping refused, which the page would
    otherwise have held.
    """

    resources: list[dict[str, Any]]
    next_cursor: str | None = None
    total: int | None = None
    left_out: tuple[str, ...] = ()


@dataclass
class Written:
    """What a write left at the vendor, read back as FHIR; ``created`` is False when the
    vendor returned a record it already held (Leyr's create-or-return-existing). The
    resource carries its ``meta.versionId``, as a read of it would."""

    resource: dict[str, Any]
    created: bool = True

    def __post_init__(self) -> None:
        self.resource = with_version(self.resource)


class WriteRefused(Exception):
    """The vendor cannot make this change: ``expression`` names the element (FHIRPath)."""

    def __init__(self, expression: str, reason: str, status: int = 422) -> None:
        self.expression = expression
        self.reason = reason
        self.status = status
        super().__init__(f"{expression}: {reason}")


class WriteRefusals(Exception):
    """Several things the vendor cannot hold or do, each a :class:`WriteRefused` or a
    mapping's ``InvalidResource``: all of them, so that one answer names every one."""

    def __init__(self, refusals: Sequence[Exception]) -> None:
        self.refusals = list(refusals)
        super().__init__("; ".join(str(r) for r in self.refusals))


class ResourceNotFound(Exception):
    """No such resource at this source (an unknown, malformed or foreign id included)."""

    def __init__(self, resource_type: str, fhir_id: str) -> None:
        self.resource_type = resource_type
        self.fhir_id = fhir_id
        super().__init__(f"{resource_type}/{fhir_id} not found")


class PaginationLoop(Exception):
    """A vendor handed back a page already seen: paging would never end."""


class WriteNotSupported(Exception):
    """The source does not take this write (its capabilities do not declare it)."""

    def __init__(self, source: str, resource_type: str, interaction: str) -> None:
        self.source = source
        self.resource_type = resource_type
        self.interaction = interaction
        super().__init__(f"{source}: {interaction} of {resource_type} is not supported")


class WriteOutcomeUnknown(Exception):
    """A write's answer never came, and asking the vendor whether it was made failed too:
    the client must look before it sends the write again."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__(f"{source}: a write's outcome is unknown")


class WriteNotMade(Exception):
    """A write failed without a clear answer (a 5xx, a lost connection, a timeout), and
    looking at the vendor showed it was not made: the client may send it again."""

    def __init__(self, source: str, retry_after: float | None = None) -> None:
        self.source = source
        self.retry_after = retry_after
        super().__init__(f"{source}: the write was not made")


class ConnectorConfigError(ValueError):
    """A source's configuration is missing or has a wrong key (named, never its value)."""


@runtime_checkable
class Connector(Protocol):
    """One configured source. ``zone`` is the time zone its vendor's local times are in;
    ``country`` the country of phone numbers it holds without a country code (None:
    unknown)."""

    source: str
    capabilities: Capabilities

    @property
    def zone(self) -> tzinfo: ...

    @property
    def country(self) -> str | None: ...

    async def read(self, resource_type: str, fhir_id: str) -> dict[str, Any]: ...

    async def search(self, request: SearchRequest, cursor: str | None = None) -> Page: ...

    async def create(
        self, resource_type: str, resource: dict[str, Any], *, look_first: bool = False
    ) -> Written:
        """Create at the vendor; the stored resource as read back. Only for resource types
        whose capability declares ``create``; otherwise :class:`WriteNotSupported`.
        What the vendor cannot hold or do is :class:`WriteRefused`, before any call.

        A write the vendor may have carried out without a clear answer (the transport's
        ``committed_unknown``) is looked up before answering: found, it is the answer;
        surely absent, :class:`WriteNotMade`; not known, :class:`WriteOutcomeUnknown`.
        ``look_first``: an earlier try of this very write ended so; look before sending
        (found: the answer, and nothing is sent)."""
        ...

    async def update(
        self,
        resource_type: str,
        fhir_id: str,
        resource: dict[str, Any],
        *,
        if_match: str | None = None,
    ) -> Written:
        """Change at the vendor (an Appointment's move or cancel); as for :meth:`create`.
        With ``if_match`` (a version, see :mod:`adapter.fhir.versions`), the record read
        right before the change must be at that version, else a 412 ``FhirError`` before
        any change is sent."""
        ...

    async def aclose(self) -> None: ...

    def health(self) -> str:
        """The source's state for ``/readyz`` (``up``, ``degraded``, ``circuit open``,
        ``credentials refused``, ``budget exhausted``), from what it has seen: it asks no
        vendor."""
        ...

    async def probe(self) -> None:
        """One cheap vendor call that proves the configuration works (``check-config
        --probe``); raises the transport's error when it does not."""
        ...

    def limits(self) -> list[tuple[int, float]]:
        """The vendor's rate limits over all of the source's keys: per limit, the calls
        allowed in a window of that many seconds (none for a vendor without limits)."""
        ...


_PASSING: ContextVar[bool] = ContextVar("fhir_adapter_unremembered", default=False)


@contextmanager
def unremembered() -> Iterator[None]:
    """Within it, a connector maps vendor answers but neither looks them up in its memo
    nor keeps them there: a reader that sees each answer once (an export, a sweep for
    changes) would only push out what interactive reads share, and hold memory growing
    with the data set."""
    token = _PASSING.set(True)
    try:
        yield
    finally:
        _PASSING.reset(token)


def remembering() -> bool:
    """False within :func:`unremembered`."""
    return not _PASSING.get()


@runtime_checkable
class ReadsMany(Protocol):
    """A connector that can read several resources of a type in fewer vendor calls than
    one each (a listing that holds them all, say). The facade uses it for ``_include``."""

    async def read_cost(self, resource_type: str, fhir_ids: Sequence[str]) -> int:
        """At most how many vendor calls :meth:`read_many` makes for these ids (it may
        make one for what every request uses, such as the number of records, which is
        not the request's)."""
        ...

    async def read_many(
        self, resource_type: str, fhir_ids: Sequence[str]
    ) -> dict[str, dict[str, Any] | Exception]:
        """Each id's resource, as :meth:`Connector.read` gives it, or the exception its
        read raised (:class:`ResourceNotFound` for one that is not there)."""
        ...


async def read_rest(
    connector: Connector, resource_type: str, wanted: Sequence[str], listed: dict[str, Any]
) -> dict[str, dict[str, Any] | Exception]:
    """What :meth:`ReadsMany.read_many` answers: each wanted id's resource from
    ``listed`` (FHIR id -> resource, found in a listing), and a read each for the others
    (its exception in its place when the read fails)."""
    out: dict[str, dict[str, Any] | Exception] = {
        i: with_version(listed[i]) for i in wanted if i in listed
    }
    missing = [i for i in wanted if i not in listed]
    answers = await asyncio.gather(
        *(connector.read(resource_type, i) for i in missing), return_exceptions=True
    )
    for fhir_id, answer in zip(missing, answers, strict=True):
        if isinstance(answer, BaseException) and not isinstance(answer, Exception):
            raise answer
        out[fhir_id] = answer
    return out


def check_supported(capabilities: Capabilities, request: SearchRequest) -> None:
    """Raise :class:`UnsupportedParameter` for the first parameter not declared."""
    cap = capabilities.resources.get(request.resource_type)
    if cap is None:
        raise UnsupportedParameter("_type", f"{request.resource_type} is not served")
    for param in request.params:
        if param.name not in cap.search_params:
            raise UnsupportedParameter(param.name, "not supported by this source")


def offset_page(hits: list[dict[str, Any]], count: int, cursor: str | None) -> Page:
    """A page of a list held whole: the cursor is the offset of the next page."""
    try:
        offset = int(cursor) if cursor else 0
    except ValueError:
        offset = -1
    if offset < 0:
        raise PaginationLoop("not a cursor of this search")
    end = offset + count
    return Page(hits[offset:end], str(end) if end < len(hits) else None, total=len(hits))


async def iterate(connector: Connector, request: SearchRequest) -> AsyncIterator[dict[str, Any]]:
    """Every match of ``request``, page by page, lazily; fails loudly on a repeated page."""
    cursor: str | None = None
    seen: set[str] = set()
    request = replace(request, count=max(request.count, 100))
    while True:
        page = await connector.search(request, cursor)
        for resource in page.resources:
            yield resource
        if page.next_cursor is None:
            return
        if page.next_cursor in seen:
            raise PaginationLoop(f"{connector.source}: loop detected in pagination")
        seen.add(page.next_cursor)
        cursor = page.next_cursor
