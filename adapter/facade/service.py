"""The facade: the only way from a route to a connector.

A route parses HTTP into plain values, calls one method here, and renders what comes
back: :meth:`Facade.read`, :meth:`Facade.search` (the first page, a page by cursor, or a
count; Slots are searched like any type), :meth:`Facade.create` and :meth:`Facade.update`.
Choosing the source, checking what the caller may see and what a source may be asked
(read-only sources take no writes) happen here. Every failure leaves as a
:class:`~adapter.fhir.outcome.FhirError` made by :func:`~adapter.facade.failures.outcome_of`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from adapter.connectors.base import Connector, Written
from adapter.facade import fanout
from adapter.facade.failures import outcome_of
from adapter.fhir.cursor import CursorCodec, InvalidCursor
from adapter.fhir.declared import Declared
from adapter.fhir.match import actor_references
from adapter.fhir.outcome import FhirError, Issue
from adapter.fhir.params import ParsedSearch, parse_search
from adapter.fhir.search import SearchState
from adapter.transport import scope
from mappings import MappingError, decode_id

__all__ = ["Caller", "Facade", "RequestLimits", "SearchResult"]

T = TypeVar("T")

# _include -> (the type searched, the type its references name)
_INCLUDES = {"Appointment:patient": ("Appointment", "Patient")}


@dataclass(frozen=True)
class Caller:
    """Who asks: the API client's name (None under open access) and the sources it may
    use (None: every source)."""

    name: str | None = None
    sources: frozenset[str] | None = None


@dataclass
class SearchResult:
    """One page of a search, ready to be rendered as a searchset Bundle."""

    resource_type: str
    self_query: str  # the query of the page's own link
    matches: list[dict[str, Any]] = field(default_factory=list)
    includes: list[dict[str, Any]] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None
    previous_cursor: str | None = None


@dataclass(frozen=True)
class RequestLimits:
    """What one request may ask for: page sizes, its time (``request_seconds``) and the
    vendor calls it may make (``max_vendor_calls``)."""

    default_count: int = 20
    max_count: int = 100
    request_seconds: float | None = 30.0
    max_vendor_calls: int | None = 20


# The transport's deadline falls this much before the request's: a source that hangs is
# then that source's outcome, and the others are still served within the request's time.
_GRACE = 0.5


class Facade:
    def __init__(
        self,
        connectors: Mapping[str, Connector],
        cursors: CursorCodec,
        *,
        read_only: frozenset[str] = frozenset(),
        limits: RequestLimits = RequestLimits(),
    ) -> None:
        self.connectors = dict(connectors)
        self.cursors = cursors
        self.limits = limits
        self.declared = Declared(
            {name: c.capabilities for name, c in self.connectors.items()},
            read_only,
            frozenset(_INCLUDES),
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
        if caller.sources is not None and source not in caller.sources:
            return None
        return source if source in self.connectors else None

    # -- read -----------------------------------------------------------------------------

    async def read(
        self, resource_type: str, fhir_id: str, caller: Caller = Caller()
    ) -> dict[str, Any]:
        """One resource, from the source its id names. A source the caller may not see is
        as unknown as one that is not configured."""
        self.require_served(resource_type)
        source = self.owner(fhir_id, caller)
        if source is None or self.declared.capability(source, resource_type) is None:
            raise _not_found(resource_type, fhir_id)
        return await self._within_deadline(self._read(source, resource_type, fhir_id))

    async def _read(self, source: str, resource_type: str, fhir_id: str) -> dict[str, Any]:
        try:
            return await self.connectors[source].read(resource_type, fhir_id)
        except Exception as exc:
            raise outcome_of(exc, source, where=f"read at {source}") from None

    # -- search ---------------------------------------------------------------------------

    async def search(
        self,
        resource_type: str,
        items: Sequence[tuple[str, str]],
        caller: Caller = Caller(),
        *,
        strict: bool = False,
    ) -> SearchResult:
        """A page of a search: the first one from its parameters, a later one from the
        ``_cursor`` among them, or only the total (``_summary=count``, ``_count=0``)."""
        self.require_served(resource_type)
        parsed = self._parse(resource_type, items, strict=strict)
        self._check_cost(parsed)
        return await self._within_deadline(self._search(parsed, resource_type, caller))

    async def _search(
        self, parsed: ParsedSearch, resource_type: str, caller: Caller
    ) -> SearchResult:
        if parsed.cursor is not None:
            state = self._resume(parsed.cursor, resource_type, caller)
            return await self._page(state, [], f"_cursor={parsed.cursor}", shows_total=True)
        state, issues = fanout.first_state(self.declared, parsed, caller.sources, caller.name)
        if parsed.count_only:
            total = await fanout.count(self.connectors, state)
            return SearchResult(resource_type, _first_query(parsed), issues=issues, total=total)
        if parsed.total == "accurate":
            total = await fanout.count(self.connectors, state)
            state = replace(state, position=replace(state.position, total=total))
        return await self._page(
            state, issues, _first_query(parsed), shows_total=parsed.total != "none"
        )

    def _parse(
        self, resource_type: str, items: Sequence[tuple[str, str]], *, strict: bool
    ) -> ParsedSearch:
        return parse_search(
            resource_type,
            items,
            supported=self.declared.supported_params(resource_type),
            includes=self.declared.includes(resource_type),
            sources=self.connectors,
            strict=strict,
            default_count=self.limits.default_count,
            max_count=self.limits.max_count,
        )

    def _check_cost(self, parsed: ParsedSearch) -> None:
        """Refuse up front what would surely need more vendor calls than a request may
        make (one read per id)."""
        cap = self.limits.max_vendor_calls
        ids = sum(len(p.values) for p in parsed.request.named("_id"))
        if cap is not None and ids > cap:
            raise _too_costly(cap, f"_id lists {ids} ids", "_id")

    async def _within_deadline(self, work: Coroutine[Any, Any, T]) -> T:
        """``work`` within the request's time and call budget (one scope: a read inside a
        search shares the search's). Past the deadline: 503, or 504 when a vendor call was
        cut off."""
        if scope.current() is not None:
            return await work
        seconds = self.limits.request_seconds
        token = scope.enter(
            None if seconds is None else max(0.1, seconds - _GRACE), self.limits.max_vendor_calls
        )
        try:
            if seconds is None:
                return await work
            async with asyncio.timeout(seconds):
                return await work
        except TimeoutError:
            raise FhirError.one(
                503,
                "timeout",
                f"the request did not finish within {seconds:g} s; try again later",
                **{"Retry-After": "5"},
            ) from None
        finally:
            scope.leave(token)

    def _write_deadline(self) -> AbstractContextManager[scope.Spending]:
        """A write's time: its vendor calls are cut off at 70% of ``request_seconds``, and
        a quarter more is kept to look whether a write that timed out was made. Nothing
        cancels a write from outside: half a write is worse than a late answer."""
        seconds = self.limits.request_seconds
        if seconds is None:
            return scope.spending(None, self.limits.max_vendor_calls)
        return scope.spending(seconds * 0.7, self.limits.max_vendor_calls, seconds * 0.25)

    def _resume(self, cursor: str, resource_type: str, caller: Caller) -> SearchState:
        try:
            state = self.cursors.decode_state(cursor)
        except InvalidCursor as exc:
            raise FhirError.one(400, "invalid", f"_cursor: {exc}", "_cursor") from None
        if state.resource_type != resource_type or state.client != caller.name:
            raise FhirError.one(400, "invalid", "_cursor: belongs to another search", "_cursor")
        return state

    async def _page(
        self, state: SearchState, issues: list[Issue], self_query: str, *, shows_total: bool
    ) -> SearchResult:
        merged = await fanout.page(self.connectors, state)
        result = SearchResult(
            state.resource_type,
            self_query,
            matches=merged.matches,
            issues=[*issues, *merged.issues],
            total=merged.total if shows_total else None,
        )
        if merged.following is not None:
            result.next_cursor = self.cursors.encode_state(merged.following)
        back = state.moved_back()
        if back is not None:
            result.previous_cursor = self.cursors.encode_state(back)
        if state.includes:
            result.includes, more = await self._included(state.includes, merged.matches)
            result.issues.extend(more)
        return result

    async def _included(
        self, includes: Sequence[str], matches: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[Issue]]:
        wanted: dict[str, tuple[str, str]] = {}
        for include in includes:
            _, target = _INCLUDES[include]
            for resource in matches:
                for ref in actor_references(resource, target):
                    wanted[ref] = (target, ref.rpartition("/")[2])
        spent = scope.current()
        left = spent.calls_left() if spent is not None else None
        if left is not None and len(wanted) > left and spent is not None:
            what = f"_include needs {len(wanted)} reads after the page's own calls"
            raise _too_costly(spent.max_calls or 0, what, "_include")
        found = await asyncio.gather(
            *(self.read(kind, fhir_id) for kind, fhir_id in wanted.values()),
            return_exceptions=True,
        )
        out, issues = [], []
        for ref, result in zip(wanted, found, strict=True):
            if isinstance(result, BaseException):
                error = outcome_of(result, where="include")
                if error.status != 404:
                    issues.append(Issue("warning", "incomplete", f"{ref} could not be included"))
                continue
            out.append(result)
        return out, issues

    # -- writes ---------------------------------------------------------------------------

    async def create(
        self,
        resource_type: str,
        resource: dict[str, Any],
        caller: Caller = Caller(),
        *,
        if_none_exist: str | None = None,
    ) -> Written:
        """Create at the source the resource belongs to; with ``if_none_exist`` (a search),
        the one match instead, if there is one (412 for more)."""
        self.require_served(resource_type)
        with self._write_deadline():
            return await self._create(resource_type, resource, caller, if_none_exist)

    async def _create(
        self,
        resource_type: str,
        resource: dict[str, Any],
        caller: Caller,
        if_none_exist: str | None,
    ) -> Written:
        source = await self._source_for_create(resource_type, resource, caller)
        if if_none_exist is not None:
            found = await self._matching(resource_type, source, if_none_exist)
            if len(found) > 1:
                raise FhirError.one(
                    412, "duplicate", "If-None-Exist matches more than one resource"
                )
            if found:
                return Written(found[0], created=False)
        try:
            return await self.connectors[source].create(resource_type, resource)
        except Exception as exc:
            raise outcome_of(exc, source, writing=True, where=f"create at {source}") from None

    async def update(
        self, resource_type: str, fhir_id: str, resource: dict[str, Any], caller: Caller = Caller()
    ) -> Written:
        """Change a resource at the source its id names (an Appointment's move or cancel)."""
        self.require_served(resource_type)
        if resource.get("id") != fhir_id:
            raise FhirError.one(
                400, "invalid", "the body's id must be the id in the URL", f"{resource_type}.id"
            )
        source = self.owner(fhir_id, caller)
        if source is None:
            raise _not_found(resource_type, fhir_id)
        if source in self.declared.read_only:
            raise FhirError.one(422, "not-supported", f"source {source} is read-only")
        try:
            with self._write_deadline():
                return await self.connectors[source].update(resource_type, fhir_id, resource)
        except Exception as exc:
            raise outcome_of(exc, source, writing=True, where=f"update at {source}") from None

    async def _source_for_create(
        self, resource_type: str, resource: dict[str, Any], caller: Caller
    ) -> str:
        """Where a new resource goes: an Appointment to its Patient's source; a Patient to
        ``meta.source``, else the one source that takes it, else a 422 saying how to choose."""
        writable = [
            n
            for n in self.declared.writable(resource_type)
            if caller.sources is None or n in caller.sources
        ]
        if not writable:
            raise FhirError.one(405, "not-supported", f"no source takes new {resource_type}s")
        if resource_type == "Appointment":
            return await self._patients_source(resource, writable, caller)
        wanted = (resource.get("meta") or {}).get("source")
        where = f"{resource_type}.meta.source"
        if wanted is not None:
            if wanted not in self.connectors or (
                caller.sources is not None and wanted not in caller.sources
            ):
                choices = ", ".join(writable)
                raise FhirError.one(
                    422,
                    "not-found",
                    f"meta.source names no configured source; use one of: {choices}",
                    where,
                )
            if wanted not in writable:
                raise FhirError.one(
                    422,
                    "not-supported",
                    f"source {wanted} does not take new {resource_type}s",
                    where,
                )
            return str(wanted)
        if len(writable) == 1:
            return writable[0]
        raise FhirError.one(
            422,
            "required",
            f"set meta.source to the source to create in: one of {', '.join(writable)}",
            where,
        )

    async def _patients_source(
        self, appointment: dict[str, Any], writable: list[str], caller: Caller
    ) -> str:
        refs = list(actor_references(appointment, "Patient"))
        if len(refs) != 1:
            raise FhirError.one(
                422,
                "required",
                "an Appointment names exactly one Patient",
                "Appointment.participant",
            )
        patient_id = refs[0].split("/", 1)[1]
        source = self.owner(patient_id, caller)
        if source is not None:
            try:
                await self.read("Patient", patient_id, caller)
            except FhirError as exc:
                if exc.status != 404:
                    raise
                source = None
        if source is None:
            raise FhirError.one(
                422, "not-found", f"{refs[0]} is not a known patient", "Appointment.participant"
            )
        if source not in writable:
            raise FhirError.one(422, "not-supported", f"source {source} takes no bookings")
        return source

    async def _matching(
        self, resource_type: str, source: str, condition: str
    ) -> list[dict[str, Any]]:
        """What an ``If-None-Exist`` search finds at the target source (two at the most)."""
        items = parse_qsl(condition.lstrip("?"), keep_blank_values=True)
        if not items:
            raise FhirError.one(400, "invalid", "If-None-Exist holds no search", "If-None-Exist")
        parsed = parse_search(
            resource_type,
            [*items, ("_count", "2")],
            supported=self.declared.supported_params(resource_type),
            includes=(),
            sources=self.connectors,
            strict=True,  # a condition that cannot be checked must not create blindly
            default_count=2,
            max_count=2,
        )
        state, issues = fanout.first_state(self.declared, parsed, frozenset({source}), None)
        if issues:
            refused = [Issue("error", "not-supported", i.diagnostics, i.expression) for i in issues]
            raise FhirError(400, refused)
        return (await fanout.page(self.connectors, state)).matches

    # -- operations -----------------------------------------------------------------------

    def readiness(self) -> dict[str, str]:
        """Each source's state for ``/readyz``, as its connector's ``health()`` tells it
        (``up``, ``degraded``, ``circuit open``, ``credentials refused``, ``budget
        exhausted``); ``up`` for a connector that keeps no such state. Asks no vendor: a
        probe must stay cheap and must not spend rate limits."""
        states = {}
        for name, connector in self.connectors.items():
            health = getattr(connector, "health", None)
            states[name] = str(health()) if callable(health) else "up"
        return states


def _too_costly(cap: int, what: str, parameter: str) -> FhirError:
    return FhirError.one(
        400,
        "too-costly",
        f"{what}; a request may make at most {cap} vendor calls ([server] max_vendor_calls): "
        "narrow the search or ask for fewer at a time",
        parameter,
    )


def _not_found(resource_type: str, fhir_id: str) -> FhirError:
    return FhirError.one(404, "not-found", f"{resource_type}/{fhir_id} is not known here")


def _first_query(parsed: ParsedSearch) -> str:
    count = f"_count={parsed.request.count}"
    return f"{urlencode(parsed.used)}&{count}" if parsed.used else count
