"""The facade: the only way from a route to a connector.

A route parses HTTP into plain values, calls one method here, and renders what comes
back: :meth:`Facade.read`, :meth:`Facade.search` (the first page, a page by cursor, or a
count; Slots are searched like any type), :meth:`Facade.create` and :meth:`Facade.update`;
:meth:`Facade.groups` and :meth:`Facade.group` (one Group per source) and
:meth:`Facade.everything` (``Patient/$everything``, its resources dated by the change
journal, :mod:`adapter.journal`).
Choosing the source, checking what the caller may see and what a source may be asked
(read-only sources take no writes) happen here, and so does gathering what a page's
``_include`` and ``_revinclude`` add (:mod:`adapter.fhir.includes`). Every failure
leaves as a :class:`~adapter.fhir.outcome.FhirError` made by
:func:`~adapter.facade.failures.outcome_of`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from adapter.connectors.base import Connector, Page, ReadsMany, Written, read_rest
from adapter.facade import fanout
from adapter.facade.failures import outcome_of
from adapter.fhir.cursor import CursorCodec, InvalidCursor
from adapter.fhir.declared import Declared
from adapter.fhir.everything import EverythingQuery, parse_everything, references_in, since_keeps
from adapter.fhir.groups import group_matches, group_resource, parse_group_search
from adapter.fhir.includes import INCLUDES, Include, referenced, reverse_include
from adapter.fhir.match import actor_references
from adapter.fhir.outcome import FhirError, Issue
from adapter.fhir.params import ParsedSearch, parse_search
from adapter.fhir.search import SearchParam, SearchRequest, SearchState
from adapter.fhir.shaping import keeps, kept_and_sorted, subset
from adapter.fhir.versions import with_version
from adapter.journal import Journal
from adapter.transport import scope
from mappings import MappingError, decode_id

__all__ = ["Caller", "Facade", "RequestLimits", "SearchResult"]

T = TypeVar("T")


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
    elements: tuple[str, ...] = ()  # _elements: what each match keeps


@dataclass(frozen=True)
class _Referencing:
    """One ``_revinclude`` search: the ``include.searched`` resources at ``source`` whose
    ``include.param`` references ``ref`` (a match of the page)."""

    include: Include
    source: str
    ref: str


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
        journal: Journal | None = None,
    ) -> None:
        self.connectors = dict(connectors)
        self.cursors = cursors
        self.limits = limits
        self.journal = journal  # meta.lastUpdated for what the vendor does not date
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
        """The resource with ``meta.versionId`` and ``meta.lastUpdated`` (the vendor's, or
        the journal's where the vendor gives none)."""
        try:
            found = await self.connectors[source].read(resource_type, fhir_id)
        except Exception as exc:
            raise outcome_of(exc, source, where=f"read at {source}") from None
        return (await self._stamped([with_version(found)]))[0]

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
        result = await self._within_deadline(self._search(parsed, resource_type, caller))
        result.matches = _versioned(result.matches)
        result.includes = _versioned(result.includes)
        if result.elements:  # after the version is taken of the whole resource
            result.matches = [subset(resource_type, r, result.elements) for r in result.matches]
        return result

    async def _search(
        self, parsed: ParsedSearch, resource_type: str, caller: Caller
    ) -> SearchResult:
        if parsed.cursor is not None:
            state = self._resume(parsed.cursor, resource_type, caller)
            return await self._page(state, [], f"_cursor={parsed.cursor}", caller, shows_total=True)
        state, issues = fanout.first_state(self.declared, parsed, caller.sources, caller.name)
        issues = [*parsed.ignored, *issues]
        if parsed.count_only:
            total = await self._count(state)
            return SearchResult(resource_type, _first_query(parsed), issues=issues, total=total)
        if parsed.total == "accurate":
            total = await self._count(state)
            state = replace(state, position=replace(state.position, total=total))
        return await self._page(
            state, issues, _first_query(parsed), caller, shows_total=parsed.total != "none"
        )

    def _parse(
        self, resource_type: str, items: Sequence[tuple[str, str]], *, strict: bool
    ) -> ParsedSearch:
        return parse_search(
            resource_type,
            items,
            supported=self.declared.supported_params(resource_type),
            includes=self.declared.includes(resource_type),
            revincludes=self.declared.revincludes(resource_type),
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
        self,
        state: SearchState,
        issues: list[Issue],
        self_query: str,
        caller: Caller,
        *,
        shows_total: bool,
    ) -> SearchResult:
        merged = await fanout.page(self.connectors, state)
        shaping = state.shaping
        matches = merged.matches
        if shaping.needs_times:
            matches = await self._stamped(matches)
        if shaping:
            matches = kept_and_sorted(shaping, state.resource_type, matches)
        result = SearchResult(
            state.resource_type,
            self_query,
            matches=matches,
            issues=[*issues, *merged.issues],
            total=merged.total if shows_total else None,
            elements=shaping.elements,
        )
        if merged.following is not None:
            result.next_cursor = self.cursors.encode_state(merged.following)
        back = state.moved_back()
        if back is not None:
            result.previous_cursor = self.cursors.encode_state(back)
        if state.includes or state.revincludes:
            # what the page's own matches reference: those _lastUpdated kept
            result.includes, more = await self._related(state, result.matches, caller)
            result.issues.extend(more)
        spent = scope.current()
        if spent is not None:
            result.issues.extend(_waited(source, s) for source, s in sorted(spent.waited.items()))
        return result

    async def _count(self, state: SearchState) -> int:
        """The exact number of matches; under ``_lastUpdated``, every match is read (and
        dated by the journal where its vendor gives no time) and counted if it is kept."""
        shaping = state.shaping
        if not shaping.updated:
            return await fanout.count(self.connectors, state)

        async def kept(resources: list[dict[str, Any]]) -> int:
            return sum(keeps(shaping, r) for r in await self._stamped(resources))

        return await fanout.count(self.connectors, state, kept)

    # -- _include and _revinclude ---------------------------------------------------------

    async def _related(
        self, state: SearchState, matches: list[dict[str, Any]], caller: Caller
    ) -> tuple[list[dict[str, Any]], list[Issue]]:
        """What a page's ``_include`` and ``_revinclude`` add: each resource once and none
        that is a match, read (searched) concurrently within the request's calls; and a
        warning for each that could not be had (one that is not there is no warning)."""
        resource_type = state.resource_type
        # A cursor's values are checked again: the sources may have changed since.
        known = self.declared.includes(resource_type)
        held = {f"{m.get('resourceType')}/{m.get('id')}" for m in matches}
        reads = referenced(
            matches, [v for v in state.includes if v in known], self.declared.readable, held
        )
        searches, issues = self._referencing(state, matches, caller)
        batches = self._batches(reads.values(), caller)
        costs = [
            await self._read_cost(source, kind, ids) for (source, kind), ids in batches.items()
        ]
        self._check_related_cost(sum(costs), len(searches))
        found = await asyncio.gather(
            *(self._read_batch(source, kind, ids) for (source, kind), ids in batches.items()),
            *(self._referencing_page(s) for s in searches),
            return_exceptions=True,
        )
        read: dict[tuple[str, str], Any] = {}
        for (_, kind), batch in zip(batches, found[: len(batches)], strict=True):
            if isinstance(batch, BaseException):
                raise batch  # a batch answers each id's failure in its place
            read.update(((kind, i), r) for i, r in batch.items())
        out: list[dict[str, Any]] = []
        failed: dict[str, tuple[FhirError, list[str]]] = {}  # one warning per reason
        for ref, wanted in reads.items():
            result = read.get(wanted)
            if result is None:
                continue  # not of a source the caller sees: as if not there
            if isinstance(result, FhirError):
                if result.status != 404:
                    why = result.issues[0].diagnostics if result.issues else ""
                    failed.setdefault(why, (result, []))[1].append(ref)
                continue
            held.add(ref)
            out.append(result)
        for error, refs in failed.values():
            shown = ", ".join(refs[:3]) + (f" and {len(refs) - 3} more" if len(refs) > 3 else "")
            issues.append(_incomplete(f"{shown} could not be included", error))
        for search, page in zip(searches, found[len(batches) :], strict=True):
            include = search.include
            if isinstance(page, BaseException):
                error = outcome_of(page, search.source, where="_revinclude")
                what = f"the {include.searched}s referencing {search.ref} could not be included"
                issues.append(_incomplete(what, error))
                continue
            assert isinstance(page, Page)
            for resource in page.resources:
                key = f"{resource.get('resourceType')}/{resource.get('id')}"
                if key not in held:
                    held.add(key)
                    out.append(resource)
            issues.extend(fanout.left_out_issue(search.source, v) for v in page.left_out)
            if page.next_cursor is not None:
                issues.append(_cut(search, len(page.resources)))
        return out, issues

    def _batches(
        self, reads: Iterable[tuple[str, str]], caller: Caller
    ) -> dict[tuple[str, str], list[str]]:
        """The ids to read, by source and type; none of a source the caller may not see
        or that does not hold the type (they are as unknown as to a read)."""
        out: dict[tuple[str, str], list[str]] = {}
        for kind, fhir_id in reads:
            source = self.owner(fhir_id, caller)
            if source is not None and self.declared.capability(source, kind) is not None:
                out.setdefault((source, kind), []).append(fhir_id)
        return out

    async def _read_cost(self, source: str, kind: str, ids: list[str]) -> int:
        connector = self.connectors[source]
        if isinstance(connector, ReadsMany):
            try:
                return await connector.read_cost(kind, ids)
            except Exception:  # the reads will meet the same failure, each in its place
                return len(ids)
        return len(ids)

    async def _read_batch(self, source: str, kind: str, ids: list[str]) -> dict[str, Any]:
        """Each id's resource, stamped as a read's, or the ``FhirError`` its read gives:
        in as few vendor calls as the connector can (:class:`ReadsMany`)."""
        connector = self.connectors[source]
        where = f"read at {source}"
        if isinstance(connector, ReadsMany) and len(ids) > 1:
            try:
                found = await connector.read_many(kind, ids)
            except Exception as exc:
                error = outcome_of(exc, source, where=where)
                return dict.fromkeys(ids, error)
        else:
            found = await read_rest(connector, kind, ids, {})  # a read each
        out: dict[str, Any] = {
            i: outcome_of(r, source, where=where)
            for i, r in found.items()
            if isinstance(r, Exception)
        }
        good = [(i, r) for i, r in found.items() if not isinstance(r, Exception)]
        stamped = await self._stamped([r for _, r in good])  # versioned there too
        out.update((i, r) for (i, _), r in zip(good, stamped, strict=True))
        return out

    def _referencing(
        self, state: SearchState, matches: list[dict[str, Any]], caller: Caller
    ) -> tuple[list[_Referencing], list[Issue]]:
        """The ``_revinclude`` searches of a page: one per match and revinclude, asked of
        the source the match came from; and warnings for sources that cannot be asked."""
        resource_type = state.resource_type
        known = self.declared.revincludes(resource_type)
        wanted: dict[str, Include] = {}
        for value in state.revincludes:
            include = reverse_include(value, resource_type) if value in known else None
            if include is not None:
                wanted.setdefault(include.name, include)
        searches: list[_Referencing] = []
        unable: dict[tuple[str, str], Include] = {}
        for include in wanted.values():
            for match in matches:
                source = (match.get("meta") or {}).get("source")
                if source not in self.connectors or (
                    caller.sources is not None and source not in caller.sources
                ):
                    continue
                capability = self.declared.capability(source, include.searched)
                if capability is None:
                    continue  # the source holds none of the type
                if include.param not in capability.search_params:
                    unable.setdefault((source, include.name), include)
                    continue
                searches.append(_Referencing(include, source, f"{resource_type}/{match['id']}"))
        issues = [
            Issue(
                "warning",
                "not-supported",
                f"source {source} cannot search {include.searched} by {include.param}: "
                f"the {include.searched}s referencing its matches are left out",
                ("_revinclude",),
            )
            for (source, _), include in unable.items()
        ]
        return searches, issues

    async def _referencing_page(self, search: _Referencing) -> Page:
        """The first page (``max_count``) of the resources referencing a match."""
        include = search.include
        param = SearchParam(include.param, (search.ref,))
        request = SearchRequest(include.searched, (param,), count=self.limits.max_count)
        return await self.connectors[search.source].search(request)

    def _check_related_cost(self, reads: int, searches: int) -> None:
        """Refuse what would surely pass the request's call cap: the calls that read the
        included resources, at least a call per ``_revinclude`` search, after the page's
        own."""
        spent = scope.current()
        left = spent.calls_left() if spent is not None else None
        if spent is None or left is None:
            return
        cap = spent.max_calls or 0
        if reads > left:
            calls = "1 vendor call" if reads == 1 else f"{reads} vendor calls"
            what = f"_include needs {calls} after the page's own"
            raise _too_costly(cap, what, "_include")
        if reads + searches > left:
            what = f"_revinclude needs {searches} searches (one per match) after the page's calls"
            if reads:
                what += f" and {reads} calls for _include"
            raise _too_costly(cap, what, "_revinclude")

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
            written = await self._create(resource_type, resource, caller, if_none_exist)
        return await self._versioned_write(written)

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
        self,
        resource_type: str,
        fhir_id: str,
        resource: dict[str, Any],
        caller: Caller = Caller(),
        *,
        if_match: str | None = None,
    ) -> Written:
        """Change a resource at the source its id names (an Appointment's move or cancel).
        With ``if_match`` (a version), only if the vendor still holds that version when the
        connector reads it right before the change; else 412, and the vendor is not called
        to change anything."""
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
                connector = self.connectors[source]
                if if_match is None:
                    written = await connector.update(resource_type, fhir_id, resource)
                else:
                    written = await connector.update(
                        resource_type, fhir_id, resource, if_match=if_match
                    )
        except Exception as exc:
            raise outcome_of(exc, source, writing=True, where=f"update at {source}") from None
        return await self._versioned_write(written)

    async def _versioned_write(self, written: Written) -> Written:
        """What a write left, as a read would give it (``meta.versionId``, and
        ``meta.lastUpdated`` from the journal where the vendor gives none)."""
        return replace(written, resource=(await self._stamped([written.resource]))[0])

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

    # -- Groups: one per source ------------------------------------------------------------

    async def groups(
        self,
        caller: Caller = Caller(),
        items: Sequence[tuple[str, str]] = (),
        *,
        strict: bool = False,
    ) -> SearchResult:
        """The Groups the caller may see (one per source, its id the source's name) that
        match ``items`` (``_id``, ``name``), each with its ``quantity`` where known."""
        search = parse_group_search(items, strict=strict)
        names = [n for n in self.connectors if self._sees(n, caller)]
        found = [n for n in names if group_matches(group_resource(n), search.params)]
        self_query = urlencode(list(items)) if items else ""
        if search.count_only:
            return SearchResult("Group", self_query, total=len(found))
        quantities = await self._within_deadline(self._quantities(found))
        matches = [group_resource(n, q) for n, q in zip(found, quantities, strict=True)]
        return SearchResult("Group", self_query, matches=matches, total=len(matches))

    async def group(self, group_id: str, caller: Caller = Caller()) -> dict[str, Any]:
        """The Group of the source named ``group_id``; 404 for a source the caller may not
        see, as for one that is not configured."""
        if group_id not in self.connectors or not self._sees(group_id, caller):
            raise _not_found("Group", group_id)
        [quantity] = await self._within_deadline(self._quantities([group_id]))
        return group_resource(group_id, quantity)

    def _sees(self, source: str, caller: Caller) -> bool:
        return caller.sources is None or source in caller.sources

    async def _quantities(self, sources: Sequence[str]) -> list[int | None]:
        """Each source's number of patients, where one search of a single Patient tells
        it exactly (the vendor's total); None where it does not, or the search fails: a
        Group is served without its quantity rather than not at all."""

        async def one(source: str) -> int | None:
            if self.declared.capability(source, "Patient") is None:
                return None
            request = SearchRequest("Patient", (), count=1)
            try:
                return (await self.connectors[source].search(request)).total
            except Exception:
                return None

        return list(await asyncio.gather(*(one(s) for s in sources)))

    # -- Patient/$everything ----------------------------------------------------------------

    async def everything(
        self,
        patient_id: str | None,
        items: Sequence[tuple[str, str]],
        caller: Caller = Caller(),
        *,
        readable: Callable[[str], bool] = lambda _: True,
        strict: bool = False,
    ) -> SearchResult:
        """``Patient/{id}/$everything`` (``patient_id``), or the caller's patients a page at
        a time (``patient_id`` None): the Patients as matches; their Appointments and what
        these reference, each once, as includes. Only types ``readable`` allows (the
        caller's scopes) and ``_type`` lists are returned; with ``_since``, only resources
        changed after it (stamped by the journal first: see :mod:`adapter.journal`)."""
        self.require_served("Patient")
        query = parse_everything(items, served=self.declared.types, strict=strict)
        allowed = frozenset(t for t in self.declared.types if readable(t))
        if patient_id is not None:
            if self.owner(patient_id, caller) is None:
                raise _not_found("Patient", patient_id)
            return await self._within_deadline(
                self._everything_of(patient_id, query, allowed, caller)
            )
        return await self._within_deadline(self._everyone(query, allowed, caller))

    async def _everything_of(
        self, patient_id: str, query: EverythingQuery, allowed: frozenset[str], caller: Caller
    ) -> SearchResult:
        patient = await self.read("Patient", patient_id, caller)
        result = SearchResult("Patient", urlencode(query.used))
        await self._gather_everything(result, [patient], query, allowed, caller)
        result.total = len(result.matches)
        return result

    async def _everyone(
        self, query: EverythingQuery, allowed: frozenset[str], caller: Caller
    ) -> SearchResult:
        cap = self.limits.max_vendor_calls
        sources = sum(1 for n in self.declared.serving("Patient") if self._sees(n, caller))
        if query.cursor is not None:
            page = await self._search(
                self._parse("Patient", [("_cursor", query.cursor)], strict=False),
                "Patient",
                caller,
            )
        else:
            count = query.count
            if count is None:
                # Room for the page's own calls (two a source, say), and for each patient
                # a search of its Appointments and a few reads of what they reference.
                fits = self.limits.default_count if cap is None else (cap - 2 * sources) // 4
                count = max(1, min(self.limits.default_count, fits))
            elif cap is not None and sources + count > cap:
                what = f"_count={count} needs a search of Appointments for each patient"
                raise _too_costly(cap, what, "_count")
            parsed = self._parse("Patient", [("_count", str(count))], strict=False)
            page = await self._search(parsed, "Patient", caller)
        result = SearchResult(
            "Patient",
            urlencode(query.used),
            issues=list(page.issues),
            next_cursor=page.next_cursor,
            previous_cursor=page.previous_cursor,
        )
        await self._gather_everything(result, page.matches, query, allowed, caller)
        return result

    async def _gather_everything(
        self,
        result: SearchResult,
        patients: list[dict[str, Any]],
        query: EverythingQuery,
        allowed: frozenset[str],
        caller: Caller,
    ) -> None:
        """Into ``result``: the patients, their Appointments (one search each, at the
        patient's source), and what all of them reference, read once each (and what those
        reference in turn). Only types the caller may read (``allowed``) are asked for;
        ``_type`` and ``_since`` filter what is returned. What they reference is read only
        when ``_type`` wants more than Patients and Appointments."""
        wanted = allowed if query.types is None else allowed & query.types
        include = INCLUDES["Appointment:patient"]
        searches: list[_Referencing] = []
        if "Appointment" in allowed and wanted - {"Patient"}:
            for patient in patients:
                source = (patient.get("meta") or {}).get("source")
                capability = self.declared.capability(str(source), "Appointment")
                if source not in self.connectors or capability is None:
                    continue
                if include.param not in capability.search_params:
                    result.issues.append(
                        Issue(
                            "warning",
                            "not-supported",
                            f"source {source} cannot search Appointments by patient: "
                            "its patients' Appointments are left out",
                        )
                    )
                    continue
                searches.append(_Referencing(include, str(source), f"Patient/{patient['id']}"))
        _check_everything_cost(len(searches), "searches of Appointments (one a patient)")
        pages = await asyncio.gather(
            *(self._referencing_page(s) for s in searches), return_exceptions=True
        )
        held = {f"Patient/{p.get('id')}" for p in patients}
        found: list[dict[str, Any]] = []
        for search, page in zip(searches, pages, strict=True):
            if isinstance(page, BaseException):
                error = outcome_of(page, search.source, where="$everything")
                what = f"the Appointments of {search.ref} could not be included"
                result.issues.append(_incomplete(what, error))
                continue
            for resource in page.resources:
                key = f"{resource.get('resourceType')}/{resource.get('id')}"
                if key not in held:
                    held.add(key)
                    found.append(resource)
            result.issues.extend(fanout.left_out_issue(search.source, v) for v in page.left_out)
            if page.next_cursor is not None:
                result.issues.append(_cut(search, len(page.resources)))
        # What they reference, and what that references (a Location's Organization).
        readable = frozenset(t for t in self.declared.readable if t in allowed)
        layer = [*patients, *found]
        for _ in range(3 if wanted - {"Patient", "Appointment"} else 0):
            reads = {k: v for k, v in references_in(layer, readable).items() if k not in held}
            if not reads:
                break
            _check_everything_cost(len(reads), "reads of what they reference")
            answers = await asyncio.gather(
                *(self.read(kind, fhir_id, caller) for kind, fhir_id in reads.values()),
                return_exceptions=True,
            )
            layer = []
            for ref, answer in zip(reads, answers, strict=True):
                held.add(ref)
                if isinstance(answer, BaseException):
                    error = outcome_of(answer, where="$everything")
                    if error.status != 404:
                        result.issues.append(_incomplete(f"{ref} could not be included", error))
                    continue
                layer.append(answer)
            found.extend(layer)
        kept_patients = [p for p in await self._stamped(patients) if "Patient" in wanted]
        kept = [r for r in await self._stamped(found) if r.get("resourceType") in wanted]
        result.matches = [p for p in kept_patients if since_keeps(p, query.since)]
        result.includes = [r for r in kept if since_keeps(r, query.since)]

    async def _stamped(self, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The resources with ``meta.lastUpdated`` from the journal where the vendor gave
        none (one journal call per source), in their order."""
        resources = _versioned(resources)
        if self.journal is None or not resources:
            return resources
        by_source: dict[str, list[int]] = {}
        for index, resource in enumerate(resources):
            if not (resource.get("meta") or {}).get("lastUpdated"):
                source = str((resource.get("meta") or {}).get("source"))
                by_source.setdefault(source, []).append(index)
        out = list(resources)
        for source, indexes in by_source.items():
            stamped = await self.journal.stamp(source, [resources[i] for i in indexes])
            for index, resource in zip(indexes, stamped, strict=True):
                out[index] = resource
        return out

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


def _versioned(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each resource with ``meta.versionId`` (most have it from their mapping already)."""
    if all((r.get("meta") or {}).get("versionId") for r in resources):
        return resources
    return [with_version(r) for r in resources]


def _too_costly(cap: int, what: str, parameter: str) -> FhirError:
    return FhirError.one(
        400,
        "too-costly",
        f"{what}; a request may make at most {cap} vendor calls ([server] max_vendor_calls): "
        "narrow the search or ask for fewer at a time",
        parameter,
    )


def _check_everything_cost(needed: int, what: str) -> None:
    """Refuse ``needed`` calls (``what``) that would surely pass the request's call cap
    after the calls already made."""
    spent = scope.current()
    left = spent.calls_left() if spent is not None else None
    if spent is None or left is None or needed <= left:
        return
    why = f"$everything needs {needed} {what} after {spent.calls} vendor calls"
    raise _too_costly(spent.max_calls or 0, why, "_count")


def _waited(source: str, seconds: float) -> Issue:
    """The information that a page waited for a source's rate-limit budget."""
    return Issue(
        "information",
        "throttled",
        f"source {source}: this page waited {seconds:.1f} s for the vendor's rate limit "
        "(calls a key may make per second and per minute)",
    )


def _incomplete(what: str, error: FhirError) -> Issue:
    """A warning that ``what`` failed, with the first reason ``error`` gives."""
    why = error.issues[0].diagnostics if error.issues else ""
    return Issue("warning", "incomplete", f"{what}: {why}" if why else what)


def _cut(search: _Referencing, included: int) -> Issue:
    """The warning for a match whose referencing resources fill more than one page."""
    include = search.include
    return Issue(
        "warning",
        "incomplete",
        f"{search.ref} has more {include.searched}s than the {included} included; search "
        f"{include.searched}?{include.param}={search.ref} (_source={search.source}) "
        "for all of them",
        ("_revinclude",),
    )


def _not_found(resource_type: str, fhir_id: str) -> FhirError:
    return FhirError.one(404, "not-found", f"{resource_type}/{fhir_id} is not known here")


def _first_query(parsed: ParsedSearch) -> str:
    count = f"_count={parsed.request.count}"
    return f"{urlencode(parsed.used)}&{count}" if parsed.used else count
