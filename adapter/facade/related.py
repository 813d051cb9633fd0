"""What a page brings along: ``_include`` (what its matches reference) and ``_revinclude``
(the Appointments referencing them), and the reads of referenced resources that
``Patient/$everything`` shares.

Only types the caller may read are asked for: an include or revinclude of any other type
is left out before a vendor is called, and said in an ``information`` issue
(:func:`adapter.facade.access.suppressed`). What is read comes from the source its id
names, several of a type at once through a connector's ``read_many`` when it offers one
(:class:`adapter.protocol.ReadsMany`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapter.facade import fanout
from adapter.facade.access import Caller, suppressed
from adapter.facade.failures import outcome_of, too_costly
from adapter.fhir.includes import Include, included, referenced, reverse_include
from adapter.fhir.outcome import FhirError, Issue
from adapter.fhir.search import SearchParam, SearchRequest, SearchState
from adapter.protocol import Page, ReadsMany, read_rest
from adapter.transport import scope

if TYPE_CHECKING:
    from adapter.facade.service import Facade

__all__ = ["Referencing", "cut", "incomplete", "read_references", "referencing_page", "related"]


@dataclass(frozen=True)
class Referencing:
    """One ``_revinclude`` search: the ``include.searched`` resources at ``source`` whose
    ``include.param`` references ``ref`` (a match of the page)."""

    include: Include
    source: str
    ref: str


async def related(
    facade: Facade, state: SearchState, matches: list[dict[str, Any]], caller: Caller
) -> tuple[list[dict[str, Any]], list[Issue]]:
    """What a page's ``_include`` and ``_revinclude`` add: each resource once and none
    that is a match, read (searched) concurrently within the request's calls; a warning
    for each that could not be had (one that is not there is no warning), and an
    information issue for each type left out because the caller may not read it."""
    resource_type = state.resource_type
    # A cursor's values are checked again: the sources may have changed since.
    known = facade.declared.includes(resource_type)
    values = [v for v in state.includes if v in known]
    issues = [suppressed(t, "_include") for t in _unreadable_targets(values, caller)]
    held = {f"{m.get('resourceType')}/{m.get('id')}" for m in matches}
    readable = caller.readable(facade.declared.readable)
    reads = referenced(matches, values, readable, held)
    searches, more = _referencing(facade, state, matches, caller)
    issues.extend(more)
    batches = _batches(facade, reads.values(), caller)
    costs = [await _read_cost(facade, source, kind, ids) for (source, kind), ids in batches.items()]
    _check_related_cost(sum(costs), len(searches))
    found = await asyncio.gather(
        _read_batches(facade, batches),
        *(referencing_page(facade, s) for s in searches),
        return_exceptions=True,
    )
    batch_answers = found[0]
    if isinstance(batch_answers, BaseException):
        raise batch_answers  # a batch answers each id's failure in its place
    out, failures = _kept(reads, batch_answers, held)
    issues.extend(failures)
    for search, page in zip(searches, found[1:], strict=True):
        include = search.include
        if isinstance(page, BaseException):
            error = outcome_of(page, search.source, where="_revinclude")
            what = f"the {include.searched}s referencing {search.ref} could not be included"
            issues.append(incomplete(what, error))
            continue
        assert isinstance(page, Page)
        for resource in page.resources:
            key = f"{resource.get('resourceType')}/{resource.get('id')}"
            if key not in held:
                held.add(key)
                out.append(resource)
        issues.extend(fanout.left_out_issue(search.source, v) for v in page.left_out)
        if page.next_cursor is not None:
            issues.append(cut(search, len(page.resources)))
    return out, issues


async def read_references(
    facade: Facade,
    reads: Mapping[str, tuple[str, str]],
    caller: Caller,
    held: set[str],
) -> tuple[list[dict[str, Any]], list[Issue]]:
    """The resources ``reads`` names (``Type/id`` -> (type, id)), each read once from the
    source its id names, in as few vendor calls as the connectors can; a warning for each
    reason some could not be had. Each one read is added to ``held``."""
    batches = _batches(facade, reads.values(), caller)
    return _kept(reads, await _read_batches(facade, batches), held)


def _unreadable_targets(values: Iterable[str], caller: Caller) -> list[str]:
    """The types ``values`` (``_include`` values) would include that the caller may not
    read, in the order first named."""
    out: dict[str, None] = {}
    for value in values:
        found = included(value)
        if found is not None:
            out.update((t, None) for t in found[1] if not caller.may_read(t))
    return list(out)


def _kept(
    reads: Mapping[str, tuple[str, str]],
    answers: Mapping[tuple[str, str], Any],
    held: set[str],
) -> tuple[list[dict[str, Any]], list[Issue]]:
    out: list[dict[str, Any]] = []
    failed: dict[str, tuple[FhirError, list[str]]] = {}  # one warning per reason
    for ref, wanted in reads.items():
        result = answers.get(wanted)
        if result is None:
            continue  # not of a source the caller sees: as if not there
        if isinstance(result, FhirError):
            if result.status != 404:
                why = result.issues[0].diagnostics if result.issues else ""
                failed.setdefault(why, (result, []))[1].append(ref)
            continue
        held.add(ref)
        out.append(result)
    issues = []
    for error, refs in failed.values():
        shown = ", ".join(refs[:3]) + (f" and {len(refs) - 3} more" if len(refs) > 3 else "")
        issues.append(incomplete(f"{shown} could not be included", error))
    return out, issues


def _batches(
    facade: Facade, reads: Iterable[tuple[str, str]], caller: Caller
) -> dict[tuple[str, str], list[str]]:
    """The ids to read, by source and type; none of a source the caller may not see, of
    a type it may not read, or of a source that does not hold the type (they are as
    unknown as to a read)."""
    out: dict[tuple[str, str], list[str]] = {}
    for kind, fhir_id in reads:
        if not caller.may_read(kind):
            continue
        source = facade.owner(fhir_id, caller)
        if source is not None and facade.declared.capability(source, kind) is not None:
            out.setdefault((source, kind), []).append(fhir_id)
    return out


async def _read_batches(
    facade: Facade, batches: Mapping[tuple[str, str], list[str]]
) -> dict[tuple[str, str], Any]:
    """Every batch read concurrently: (type, id) -> resource or ``FhirError``."""
    answers = await asyncio.gather(
        *(_read_batch(facade, source, kind, ids) for (source, kind), ids in batches.items())
    )
    out: dict[tuple[str, str], Any] = {}
    for (_, kind), batch in zip(batches, answers, strict=True):
        out.update(((kind, i), r) for i, r in batch.items())
    return out


async def _read_cost(facade: Facade, source: str, kind: str, ids: list[str]) -> int:
    connector = facade.connectors[source]
    if isinstance(connector, ReadsMany):
        try:
            return await connector.read_cost(kind, ids)
        except Exception:  # the reads will meet the same failure, each in its place
            return len(ids)
    return len(ids)


async def _read_batch(facade: Facade, source: str, kind: str, ids: list[str]) -> dict[str, Any]:
    """Each id's resource, stamped as a read's, or the ``FhirError`` its read gives: in as
    few vendor calls as the connector can (:class:`ReadsMany`)."""
    connector = facade.connectors[source]
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
        i: outcome_of(r, source, where=where) for i, r in found.items() if isinstance(r, Exception)
    }
    good = [(i, r) for i, r in found.items() if not isinstance(r, Exception)]
    stamped = await facade.stamped([r for _, r in good])  # versioned there too
    out.update((i, r) for (i, _), r in zip(good, stamped, strict=True))
    return out


def _referencing(
    facade: Facade, state: SearchState, matches: list[dict[str, Any]], caller: Caller
) -> tuple[list[Referencing], list[Issue]]:
    """The ``_revinclude`` searches of a page: one per match and revinclude, asked of the
    source the match came from; warnings for sources that cannot be asked, and an
    information issue for a referencing type the caller may not read."""
    resource_type = state.resource_type
    known = facade.declared.revincludes(resource_type)
    wanted: dict[str, Include] = {}
    for value in state.revincludes:
        include = reverse_include(value, resource_type) if value in known else None
        if include is not None:
            wanted.setdefault(include.name, include)
    issues: list[Issue] = []
    for include in list(wanted.values()):
        if not caller.may_read(include.searched):
            del wanted[include.name]
            if all(i.searched != include.searched for i in wanted.values()):
                issue = suppressed(include.searched, "_revinclude")
                if issue not in issues:
                    issues.append(issue)
    searches: list[Referencing] = []
    unable: dict[tuple[str, str], Include] = {}
    for include in wanted.values():
        for match in matches:
            source = (match.get("meta") or {}).get("source")
            if source not in facade.connectors or not caller.sees(source):
                continue
            capability = facade.declared.capability(source, include.searched)
            if capability is None:
                continue  # the source holds none of the type
            if include.param not in capability.search_params:
                unable.setdefault((source, include.name), include)
                continue
            searches.append(Referencing(include, source, f"{resource_type}/{match['id']}"))
    issues.extend(
        Issue(
            "warning",
            "not-supported",
            f"source {source} cannot search {include.searched} by {include.param}: "
            f"the {include.searched}s referencing its matches are left out",
            ("_revinclude",),
        )
        for (source, _), include in unable.items()
    )
    return searches, issues


async def referencing_page(facade: Facade, search: Referencing) -> Page:
    """The first page (``max_count``) of the resources referencing a match."""
    include = search.include
    param = SearchParam(include.param, (search.ref,))
    request = SearchRequest(include.searched, (param,), count=facade.limits.max_count)
    return await facade.connectors[search.source].search(request)


def _check_related_cost(reads: int, searches: int) -> None:
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
        raise too_costly(cap, f"_include needs {calls} after the page's own", "_include")
    if reads + searches > left:
        what = f"_revinclude needs {searches} searches (one per match) after the page's calls"
        if reads:
            what += f" and {reads} calls for _include"
        raise too_costly(cap, what, "_revinclude")


def incomplete(what: str, error: FhirError) -> Issue:
    """A warning that ``what`` failed, with the first reason ``error`` gives."""
    why = error.issues[0].diagnostics if error.issues else ""
    return Issue("warning", "incomplete", f"{what}: {why}" if why else what)


def cut(search: Referencing, included: int) -> Issue:
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
