"""A search across sources: who is asked, for how much, and how their pages merge.

Every source serving the type (narrowed by ``_source`` and by what the caller may see)
is asked at once, and the pages are merged:

- with ``_count`` at least the number of sources, each source has a fixed share of the
  page (20 over two sources: 10 each) and is asked concurrently; a source that runs out
  leaves its share empty, so later pages may be shorter than ``_count``;
- with fewer, the sources are served one after another, ``_count`` at a time.

A source that fails, in any way, is named in an OperationOutcome entry and asked again on
the next page; only when every source asked fails is the whole search an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from adapter.facade.failures import all_failed, outcome_of
from adapter.fhir.declared import Declared
from adapter.fhir.match import KINDS
from adapter.fhir.outcome import FhirError, Issue
from adapter.fhir.params import ParsedSearch
from adapter.fhir.search import Position, SearchRequest, SearchState
from adapter.protocol import Connector, Page, PaginationLoop, iterate
from adapter.transport.scope import CallBudgetExceeded
from mappings import MappingError, decode_id

__all__ = ["Merged", "count", "first_state", "left_out_issue", "page"]

T = TypeVar("T")

_COUNTED_RUN = 100  # matches handed to a count's ``kept`` at once
_COUNT_PAGE = 100  # the page size a count reads a source at (as ``iterate`` does)


@dataclass
class Merged:
    """One merged page: the matches of every source asked, and where the search goes."""

    matches: list[dict[str, Any]] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    total: int | None = None
    following: SearchState | None = None  # the next page's state; None on the last
    whole: bool = False  # the first page holds every match of every source


def first_state(
    declared: Declared,
    parsed: ParsedSearch,
    allowed: frozenset[str] | None,
    client: str | None,
) -> tuple[SearchState, list[Issue]]:
    """The state of a search's first page, and issues about sources left out."""
    request = parsed.request
    names = frozenset(p.name for p in request.params)
    narrowed = _named_sources(request)
    order, left_out = declared.routing(request.resource_type, names, narrowed, allowed)
    issues = [
        Issue(
            "warning",
            "not-supported",
            f"source {name} cannot search by {', '.join(missing)}; its results are left out",
            missing,
        )
        for name, missing in left_out
    ]
    count = request.count
    lanes = len(order) if count >= len(order) else 1
    shares = [count] * len(order)
    if lanes > 1:
        shares = [count // lanes + (1 if i < count % lanes else 0) for i in range(len(order))]
    state = SearchState(
        SearchRequest(request.resource_type, request.params, request.count),
        order=tuple(order),
        shares=tuple(shares),
        lanes=lanes,
        includes=parsed.includes,
        revincludes=parsed.revincludes,
        skipped=len(issues),
        client=client,
        shaping=parsed.shaping,
    )
    return state, issues


def _named_sources(request: SearchRequest) -> tuple[str, ...] | None:
    """The sources a search can find anything at: those ``_source`` names, narrowed by
    the ids its ``_id`` and reference parameters name. Every id names its source, and a
    resource references only its own source's resources, so ``schedule.actor=
    Practitioner/leyr-a...`` can match nothing at another source: it is not asked."""
    sources = request.sources
    kinds = KINDS.get(request.resource_type, {})
    for param in request.params:
        kind = kinds.get(param.name)
        if param.name != "_id" and (kind is None or kind[0] != "reference"):
            continue
        named: set[str] = set()
        for value in param.values:
            try:
                named.add(decode_id(value.rstrip("/").rsplit("/", 1)[-1]).source)
            except MappingError:
                break  # not an id of ours: this parameter narrows nothing
        else:
            among = sorted(named) if sources is None else sources
            sources = tuple(s for s in among if s in named)
    return sources


async def page(connectors: Mapping[str, Connector], state: SearchState) -> Merged:
    """One page of ``state``: its pending sources asked (``lanes`` at a time), merged."""
    asked = state.pending()[: state.lanes]
    results = await _gather([_one(connectors[n], n, state) for n in asked])
    merged = Merged(total=state.position.total)
    at = dict(state.position.at)
    done = set(state.position.done)
    failures: list[FhirError] = []
    totals: list[int | None] = []
    for name, result in zip(asked, results, strict=True):
        if isinstance(result, CallBudgetExceeded):
            raise outcome_of(result)  # the request as a whole is too costly
        if isinstance(result, BaseException):
            failures.append(outcome_of(result, name, where=f"search of {name}"))
            totals.append(None)
            continue
        merged.matches.extend(result.resources)
        merged.issues.extend(left_out_issue(name, vendor_id) for vendor_id in result.left_out)
        # A source whose first page is its last has given every match: their number is its
        # total, whether or not its vendor said one.
        whole = state.position.first and result.next_cursor is None
        totals.append(len(result.resources) if whole and result.total is None else result.total)
        if result.next_cursor is None:
            done.add(name)
            at.pop(name, None)
        else:
            at[name] = result.next_cursor
    if failures and len(failures) == len(asked):
        raise all_failed(failures)
    merged.issues.extend(i for f in failures for i in f.issues)
    # A total of the vendors' matches is not one of this search's when _lastUpdated,
    # which the facade applies to each page, leaves some out.
    complete = (
        not failures
        and not state.skipped
        and not state.shaping.updated
        and len(asked) == len(state.order)
    )
    if state.position.first and complete and all(t is not None for t in totals):
        merged.total = sum(t for t in totals if t is not None)
    merged.whole = (
        state.position.first
        and not failures
        and not state.skipped
        and len(done) == len(state.order)
    )
    if any(n not in done for n in state.order):
        following = Position(at, frozenset(done), merged.total, first=False)
        merged.following = state.moved_to(following)
    return merged


def left_out_issue(source: str, vendor_id: str) -> Issue:
    """The warning for a vendor record the mapping refused, left out of a page."""
    return Issue(
        "warning",
        "processing",
        f"source {source}: vendor record {vendor_id} cannot be mapped and is left out; "
        "reading it by id says why",
    )


async def _one(connector: Connector, name: str, state: SearchState) -> Page:
    request = state.request.with_count(state.share(name))
    return await connector.search(request, state.position.at.get(name))


async def count(
    connectors: Mapping[str, Connector],
    state: SearchState,
    kept: Callable[[list[dict[str, Any]]], Awaitable[int]] | None = None,
) -> int:
    """The exact number of matches (pages through sources whose total is not exact).
    ``kept``: how many of a run of matches count, when not all do (the facade's own
    ``_lastUpdated``); every match is then paged through.

    A count with a source missing is not a count: any failure fails it."""
    request = state.request

    async def one(connector: Connector) -> int:
        if kept is None:
            # The first page at the size a count pages at: a source that says its total
            # says it there, and one that does not has its first matches counted, not
            # asked again.
            paged = request.with_count(max(request.count, _COUNT_PAGE))
            page = await connector.search(paged)
            if page.total is not None:
                return page.total
            n, seen = len(page.resources), set()
            while page.next_cursor is not None:
                if page.next_cursor in seen:
                    raise PaginationLoop(f"{connector.source}: loop detected in pagination")
                seen.add(page.next_cursor)
                page = await connector.search(paged, page.next_cursor)
                n += len(page.resources)
            return n
        n, run = 0, []
        async for resource in iterate(connector, request):
            run.append(resource)
            if len(run) == _COUNTED_RUN:
                n, run = n + await kept(run), []
        return n + (await kept(run) if run else 0)

    results = await _gather([one(connectors[n]) for n in state.order])
    failures = [
        outcome_of(r, n, where=f"count at {n}")
        for n, r in zip(state.order, results, strict=True)
        if isinstance(r, BaseException)
    ]
    if failures:
        raise all_failed(failures)
    return sum(r for r in results if isinstance(r, int))


async def _gather(calls: list[Awaitable[T]]) -> list[T | BaseException]:
    """``asyncio.gather(..., return_exceptions=True)``, without a task for a lone call."""
    if len(calls) == 1:
        try:
            return [await calls[0]]
        except Exception as exc:
            return [exc]
    return await asyncio.gather(*calls, return_exceptions=True)
