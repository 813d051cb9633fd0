"""Groups through the gate: one per source the caller may see, its id the source's name
(:mod:`adapter.fhir.groups`); the quantity is one Patient search of a single match per
source, its vendor total, left out when the vendor gives none, when the search fails, or
when the caller may not read Patients (a count of them is theirs to know)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from adapter.facade.access import Caller
from adapter.facade.failures import not_found
from adapter.fhir.groups import group_matches, group_resource, parse_group_search
from adapter.fhir.search import SearchRequest

if TYPE_CHECKING:
    from adapter.facade.service import Facade, SearchResult

__all__ = ["group", "groups"]


async def groups(
    facade: Facade, caller: Caller, items: Sequence[tuple[str, str]], *, strict: bool
) -> SearchResult:
    """The Groups the caller may see that match ``items`` (``_id``, ``name``)."""
    from adapter.facade.service import SearchResult

    search = parse_group_search(items, strict=strict)
    names = [n for n in facade.connectors if caller.sees(n)]
    found = [n for n in names if group_matches(group_resource(n), search.params)]
    self_query = urlencode(list(items)) if items else ""
    if search.count_only:
        return SearchResult("Group", self_query, total=len(found))
    quantities = await facade.within_deadline(_quantities(facade, found, caller))
    matches = [group_resource(n, q) for n, q in zip(found, quantities, strict=True)]
    return SearchResult("Group", self_query, matches=matches, total=len(matches))


async def group(facade: Facade, group_id: str, caller: Caller) -> dict[str, Any]:
    """The Group of the source named ``group_id``; 404 for a source the caller may not
    see, as for one that is not configured."""
    if group_id not in facade.connectors or not caller.sees(group_id):
        raise not_found("Group", group_id)
    [quantity] = await facade.within_deadline(_quantities(facade, [group_id], caller))
    return group_resource(group_id, quantity)


async def _quantities(facade: Facade, sources: Sequence[str], caller: Caller) -> list[int | None]:
    """Each source's number of patients, where one search of a single Patient tells it
    exactly (the vendor's total); None where it does not, or the search fails: a Group is
    served without its quantity rather than not at all."""

    async def one(source: str) -> int | None:
        if facade.declared.capability(source, "Patient") is None or not caller.may_read("Patient"):
            return None
        request = SearchRequest("Patient", (), count=1)
        try:
            return (await facade.connectors[source].search(request)).total
        except Exception:
            return None

    return list(await asyncio.gather(*(one(s) for s in sources)))
