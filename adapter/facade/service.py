"""The facade: the one gate between every consumer and the vendors.

Everything that calls a vendor goes through a :class:`Facade`: the routes (reads,
searches, writes, Groups, ``$everything``), the export engine and the Subscriptions'
poller. It owns the connectors, what they declare (:class:`~adapter.fhir.declared.Declared`),
the read-only sources, a request's limits and the change journal; it is built once from
the settings (:func:`adapter.assembly.build_facade`), the same way by the server and by
the ``export`` command. What may leave it for whom is decided here, through one
:class:`~adapter.facade.access.Caller`: the sources a client may use and the types its
token may read.

By job: reads and searches here; ``_include``/``_revinclude`` in
:mod:`adapter.facade.related`; writes in :mod:`adapter.facade.writes`; Groups in
:mod:`adapter.facade.groups`; ``$everything`` in :mod:`adapter.facade.everything`; the
paced listings of background readers in :mod:`adapter.facade.pacing`. Every failure
leaves as a :class:`~adapter.fhir.outcome.FhirError` made by
:func:`~adapter.facade.failures.outcome_of`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import urlencode

from adapter.facade import everything as _everything
from adapter.facade import fanout
from adapter.facade import groups as _groups
from adapter.facade import writes as _writes
from adapter.facade.access import Caller, suppressed
from adapter.facade.failures import not_found, outcome_of, too_costly
from adapter.facade.related import related
from adapter.facade.sources import RequestLimits, Sources, versioned
from adapter.fhir.cursor import InvalidCursor
from adapter.fhir.outcome import FhirError, Issue
from adapter.fhir.params import ParsedSearch, parse_search
from adapter.fhir.search import SearchState
from adapter.fhir.shaping import keeps, kept_and_sorted, subset
from adapter.fhir.versions import with_version
from adapter.protocol import Written
from adapter.transport import lanes, scope

__all__ = ["Caller", "Facade", "RequestLimits", "SearchResult", "forbidden"]

T = TypeVar("T")


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


# The transport's deadline falls this much before the request's: a source that hangs is
# then that source's outcome, and the others are still served within the request's time.
_GRACE = 0.5


class Facade(Sources):
    """The gate: reads, searches, writes, Groups and ``$everything`` for a :class:`Caller`
    (see the module's description)."""

    # -- read -----------------------------------------------------------------------------

    async def read(
        self, resource_type: str, fhir_id: str, caller: Caller = Caller()
    ) -> dict[str, Any]:
        """One resource, from the source its id names. A source the caller may not see is
        as unknown as one that is not configured; a type it may not read is a 403."""
        self.require_served(resource_type)
        if not caller.may_read(resource_type):
            raise forbidden(resource_type)
        source = self.owner(fhir_id, caller)
        if source is None or self.declared.capability(source, resource_type) is None:
            raise not_found(resource_type, fhir_id)
        return await self.within_deadline(self.read_at(source, resource_type, fhir_id))

    async def read_at(self, source: str, resource_type: str, fhir_id: str) -> dict[str, Any]:
        """The resource with ``meta.versionId`` and ``meta.lastUpdated`` (the vendor's, or
        the journal's where the vendor gives none)."""
        try:
            found = await self.connectors[source].read(resource_type, fhir_id)
        except Exception as exc:
            raise outcome_of(exc, source, where=f"read at {source}") from None
        return (await self.stamped([with_version(found)]))[0]

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
        parsed = self.parse(resource_type, items, strict=strict)
        self._check_cost(parsed)
        result = await self.within_deadline(self._search(parsed, resource_type, caller))
        # Where resources leave: none of a source the caller may not use, and no included
        # one of a type it may not read (the includes asked for none; this holds it).
        matches = result.matches
        if caller.sources is not None:
            matches = [r for r in matches if _seen_by(caller, r)]
        result.matches = versioned(matches)
        if result.includes:
            includes, left_out = caller.admit(result.includes)
            result.includes = versioned(includes)
            result.issues.extend(suppressed(t, "_include") for t in left_out)
        if result.elements:  # after the version is taken of the whole resource
            result.matches = [subset(resource_type, r, result.elements) for r in result.matches]
        return result

    async def search_page(
        self, resource_type: str, items: Sequence[tuple[str, str]], caller: Caller
    ) -> SearchResult:
        """A page of a search as :meth:`search` finds it, for a caller inside the gate
        (``$everything``): not yet versioned, subset or checked for what may leave."""
        return await self._search(
            self.parse(resource_type, items, strict=False), resource_type, caller
        )

    async def _search(
        self, parsed: ParsedSearch, resource_type: str, caller: Caller
    ) -> SearchResult:
        if parsed.cursor is not None:
            state = self._resume(parsed.cursor, resource_type, caller)
            return await self._page(state, [], f"_cursor={parsed.cursor}", caller, shows_total=True)
        if parsed.nothing is not None:  # no source fills what it asks: no vendor is asked
            issues = [*parsed.ignored, parsed.nothing]
            empty = SearchResult(resource_type, _first_query(parsed), issues=issues, total=0)
            if parsed.total == "none" and not parsed.count_only:
                empty.total = None
            return empty
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

    def parse(
        self, resource_type: str, items: Sequence[tuple[str, str]], *, strict: bool
    ) -> ParsedSearch:
        """A search's parameters as this server takes them (what the sources declare,
        the configured sources for ``_source``, the page sizes): the one parser of every
        search, a Subscription's criteria included. ``strict``: what cannot be honoured
        is a 400, not an ignored parameter."""
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
            raise too_costly(cap, f"_id lists {ids} ids", "_id")

    async def within_deadline(self, work: Coroutine[Any, Any, T]) -> T:
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

    @contextmanager
    def write_deadline(self) -> Iterator[scope.Spending]:
        """A write's time: its vendor calls are cut off at 70% of ``request_seconds``, and
        a quarter more is kept to look whether a write that timed out was made. Nothing
        cancels a write from outside: half a write is worse than a late answer. Its calls
        (the look-ups included) draw on the writes lane of each budget."""
        seconds = self.limits.request_seconds
        with lanes.lane("writes"):
            if seconds is None:
                with scope.spending(None, self.limits.max_vendor_calls) as spent:
                    yield spent
                return
            with scope.spending(
                seconds * 0.7, self.limits.max_vendor_calls, seconds * 0.25
            ) as spent:
                yield spent

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
        # Dated as a read is (the vendor's time, else the journal's): what _lastUpdated
        # filters on is what the page shows.
        matches = await self.stamped(merged.matches)
        if shaping:
            matches = kept_and_sorted(shaping, state.resource_type, matches, self.zone_of)
        total = merged.total
        if total is None and merged.whole:
            total = len(matches)  # every match is on this page: the count is exact
        result = SearchResult(
            state.resource_type,
            self_query,
            matches=matches,
            issues=[*issues, *merged.issues],
            total=total if shows_total else None,
            elements=shaping.elements,
        )
        if merged.following is not None:
            result.next_cursor = self.cursors.encode_state(merged.following)
        back = state.moved_back()
        if back is not None:
            result.previous_cursor = self.cursors.encode_state(back)
        if shaping.sort and (result.next_cursor or result.previous_cursor):
            result.issues.append(_SORTED_PER_PAGE)
        if state.includes or state.revincludes:
            # what the page's own matches reference: those _lastUpdated kept
            included, more = await related(self, state, result.matches, caller)
            result.includes = await self.stamped(included)  # the _revincluded not yet
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
            return sum(keeps(shaping, r, self.zone_of(r)) for r in await self.stamped(resources))

        return await fanout.count(self.connectors, state, kept)

    # -- writes, Groups, $everything: each in its own module -------------------------------

    async def create(
        self,
        resource_type: str,
        resource: dict[str, Any],
        caller: Caller = Caller(),
        *,
        if_none_exist: str | None = None,
        look_first: bool = False,
    ) -> Written:
        """See :func:`adapter.facade.writes.create`."""
        return await _writes.create(
            self, resource_type, resource, caller, if_none_exist, look_first
        )

    async def update(
        self,
        resource_type: str,
        fhir_id: str,
        resource: dict[str, Any],
        caller: Caller = Caller(),
        *,
        if_match: str | None = None,
    ) -> Written:
        """See :func:`adapter.facade.writes.update`."""
        return await _writes.update(self, resource_type, fhir_id, resource, caller, if_match)

    async def groups(
        self,
        caller: Caller = Caller(),
        items: Sequence[tuple[str, str]] = (),
        *,
        strict: bool = False,
    ) -> SearchResult:
        """See :func:`adapter.facade.groups.groups`."""
        return await _groups.groups(self, caller, items, strict=strict)

    async def group(self, group_id: str, caller: Caller = Caller()) -> dict[str, Any]:
        """See :func:`adapter.facade.groups.group`."""
        return await _groups.group(self, group_id, caller)

    async def everything(
        self,
        patient_id: str | None,
        items: Sequence[tuple[str, str]],
        caller: Caller = Caller(),
        *,
        strict: bool = False,
    ) -> SearchResult:
        """See :func:`adapter.facade.everything.everything`."""
        return await _everything.everything(self, patient_id, items, caller, strict=strict)


def _seen_by(caller: Caller, resource: dict[str, Any]) -> bool:
    """Whether ``resource`` is of a source ``caller`` may use."""
    return caller.sees(str((resource.get("meta") or {}).get("source")))


def forbidden(resource_type: str) -> FhirError:
    return FhirError.one(
        403,
        "forbidden",
        f"the token's scopes do not allow read of {resource_type}",
        **{"WWW-Authenticate": 'Bearer realm="fhir-adapter", error="insufficient_scope"'},
    )


# The vendors give no order: a result of more than one page is sorted page by page
# (adapter.fhir.shaping), which a client must be told, since R4 means the whole set.
_SORTED_PER_PAGE = Issue(
    "information",
    "informational",
    "_sort: the order holds within each page, not across pages (the vendors give no order "
    "to sort by); for one order over every match, ask for them on one page (_count)",
    ("_sort",),
)


def _waited(source: str, seconds: float) -> Issue:
    """The information that a page waited for a source's rate-limit budget."""
    return Issue(
        "information",
        "throttled",
        f"source {source}: this page waited {seconds:.1f} s for the vendor's rate limit "
        "(calls a key may make per second and per minute)",
    )


def _first_query(parsed: ParsedSearch) -> str:
    """The query of a first page's ``self`` link: the parameters honoured, and the page
    size used (a count gives none, unless it was asked for)."""
    used = list(parsed.used)
    if parsed.count_asked or not parsed.summary_count:
        used.append(("_count", str(parsed.request.count)))
    return urlencode(used)
