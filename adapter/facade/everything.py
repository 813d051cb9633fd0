"""``Patient/{id}/$everything`` and ``Patient/$everything``: the Patients as matches; their
Appointments and what these reference, each once, as includes.

Only types the caller may read are asked for (:class:`adapter.facade.access.Caller`),
narrowed by ``_type``; with ``_since``, only resources changed after it (stamped by the
change journal first: see :mod:`adapter.journal`). What the Appointments reference is
read as ``_include`` reads it (:func:`adapter.facade.related.read_references`), and only
when a type past Patient and Appointment is wanted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from adapter.facade import fanout
from adapter.facade.access import Caller, suppressed
from adapter.facade.failures import not_found, outcome_of, too_costly
from adapter.facade.related import Referencing, cut, incomplete, read_references, referencing_page
from adapter.fhir.everything import EverythingQuery, parse_everything, references_in, since_keeps
from adapter.fhir.includes import INCLUDES
from adapter.fhir.outcome import Issue
from adapter.transport import scope

if TYPE_CHECKING:
    from adapter.facade.service import Facade, SearchResult

__all__ = ["everything"]


async def everything(
    facade: Facade,
    patient_id: str | None,
    items: Sequence[tuple[str, str]],
    caller: Caller,
    *,
    strict: bool = False,
) -> SearchResult:
    """``Patient/{id}/$everything`` (``patient_id``), or the caller's patients a page at a
    time (``patient_id`` None)."""
    facade.require_served("Patient")
    query = parse_everything(items, served=facade.declared.types, strict=strict)
    allowed = caller.readable(facade.declared.types)
    if patient_id is not None:
        if facade.owner(patient_id, caller) is None:
            raise not_found("Patient", patient_id)
        return await facade.within_deadline(_everything_of(facade, patient_id, query, caller))
    return await facade.within_deadline(_everyone(facade, query, allowed, caller))


async def _everything_of(
    facade: Facade, patient_id: str, query: EverythingQuery, caller: Caller
) -> SearchResult:
    from adapter.facade.service import SearchResult

    patient = await facade.read("Patient", patient_id, caller)
    result = SearchResult("Patient", urlencode(query.used))
    await _gather(facade, result, [patient], query, caller)
    result.total = len(result.matches)
    return result


async def _everyone(
    facade: Facade, query: EverythingQuery, allowed: frozenset[str], caller: Caller
) -> SearchResult:
    from adapter.facade.service import SearchResult

    cap = facade.limits.max_vendor_calls
    sources = sum(1 for n in facade.declared.serving("Patient") if caller.sees(n))
    if query.cursor is not None:
        page = await facade.search_page("Patient", [("_cursor", query.cursor)], caller)
    else:
        count = query.count
        if count is None:
            # Room for the page's own calls (two a source, say), and for each patient a
            # search of its Appointments and a few reads of what they reference.
            fits = facade.limits.default_count if cap is None else (cap - 2 * sources) // 4
            count = max(1, min(facade.limits.default_count, fits))
        elif cap is not None and sources + count > cap:
            what = f"_count={count} needs a search of Appointments for each patient"
            raise too_costly(cap, what, "_count")
        page = await facade.search_page("Patient", [("_count", str(count))], caller)
    result = SearchResult(
        "Patient",
        urlencode(query.used),
        issues=list(page.issues),
        next_cursor=page.next_cursor,
        previous_cursor=page.previous_cursor,
    )
    await _gather(facade, result, page.matches, query, caller)
    return result


async def _gather(
    facade: Facade,
    result: SearchResult,
    patients: list[dict[str, Any]],
    query: EverythingQuery,
    caller: Caller,
) -> None:
    """Into ``result``: the patients, their Appointments (one search each, at the
    patient's source), and what all of them reference, read once each (and what those
    reference in turn). Only types the caller may read are asked for; ``_type`` and
    ``_since`` filter what is returned."""
    allowed = caller.readable(facade.declared.types)
    wanted = allowed if query.types is None else allowed & query.types
    # Said of the types _type names, or of the Appointments every $everything holds.
    asked = frozenset({"Appointment"}) if query.types is None else query.types
    result.issues.extend(
        suppressed(t, "$everything") for t in sorted(asked - allowed - {"Patient"})
    )
    include = INCLUDES["Appointment:patient"]
    searches: list[Referencing] = []
    if "Appointment" in allowed and wanted - {"Patient"}:
        for patient in patients:
            source = (patient.get("meta") or {}).get("source")
            capability = facade.declared.capability(str(source), "Appointment")
            if source not in facade.connectors or capability is None:
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
            searches.append(Referencing(include, str(source), f"Patient/{patient['id']}"))
    _check_cost(len(searches), "searches of Appointments (one a patient)")
    pages = await asyncio.gather(
        *(referencing_page(facade, s) for s in searches), return_exceptions=True
    )
    held = {f"Patient/{p.get('id')}" for p in patients}
    found: list[dict[str, Any]] = []
    for search, page in zip(searches, pages, strict=True):
        if isinstance(page, BaseException):
            error = outcome_of(page, search.source, where="$everything")
            what = f"the Appointments of {search.ref} could not be included"
            result.issues.append(incomplete(what, error))
            continue
        for resource in page.resources:
            key = f"{resource.get('resourceType')}/{resource.get('id')}"
            if key not in held:
                held.add(key)
                found.append(resource)
        result.issues.extend(fanout.left_out_issue(search.source, v) for v in page.left_out)
        if page.next_cursor is not None:
            result.issues.append(cut(search, len(page.resources)))
    # What they reference, and what that references (a Location's Organization).
    readable = caller.readable(facade.declared.readable)
    layer = [*patients, *found]
    for _ in range(3 if wanted - {"Patient", "Appointment"} else 0):
        reads = {k: v for k, v in references_in(layer, readable).items() if k not in held}
        if not reads:
            break
        _check_cost(len(reads), "reads of what they reference")
        held.update(reads)
        layer, failures = await read_references(facade, reads, caller, held)
        result.issues.extend(failures)
        found.extend(layer)
    kept_patients = [p for p in await facade.stamped(patients) if "Patient" in wanted]
    kept = [r for r in await facade.stamped(found) if r.get("resourceType") in wanted]
    result.matches = [p for p in kept_patients if since_keeps(p, query.since)]
    result.includes = [r for r in kept if since_keeps(r, query.since)]


def _check_cost(needed: int, what: str) -> None:
    """Refuse ``needed`` calls (``what``) that would surely pass the request's call cap
    after the calls already made."""
    spent = scope.current()
    left = spent.calls_left() if spent is not None else None
    if spent is None or left is None or needed <= left:
        return
    why = f"$everything needs {needed} {what} after {spent.calls} vendor calls"
    raise too_costly(spent.max_calls or 0, why, "_count")
