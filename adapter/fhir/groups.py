"""Groups: one per configured source, named by the source.

A Group stands for the patients a source holds: ``id`` and ``name`` are the source's name
(source names are ``[a-z0-9-]{1,32}``, valid FHIR ids), ``type`` person, ``actual`` true,
and ``quantity`` only where the source's Patient search gives an exact total. It lists no
members: ``Group/{id}/$export`` and ``Patient?_source=`` name the same patients, a page at
a time. What a Group search takes is :data:`SEARCH_PARAMS`; everything is computed here,
without a source; the facade adds the quantities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adapter.fhir.match import string_matches
from adapter.fhir.outcome import FhirError, Issue
from adapter.fhir.search import SearchParam
from adapter.fhir.strings import search_text

__all__ = [
    "SEARCH_PARAMS",
    "GroupSearch",
    "group_capability",
    "group_matches",
    "group_resource",
    "parse_group_search",
]

_SP = "http://hl7.org/fhir/SearchParameter/"
# name -> (type, definition, documentation)
SEARCH_PARAMS: dict[str, tuple[str, str, str]] = {
    "_id": ("token", "Resource-id", "the source's name"),
    "name": ("string", "Group-name", "the source's name (:exact, :contains)"),
}
_MODIFIERS = {"_id": frozenset(), "name": frozenset({"exact", "contains"})}
# Parameters of every search that change nothing of a Group search's matches.
_HARMLESS = frozenset({"_format", "_pretty", "_count", "_total"})


@dataclass(frozen=True)
class GroupSearch:
    params: tuple[SearchParam, ...] = ()
    count_only: bool = False


def group_resource(source: str, quantity: int | None = None) -> dict[str, Any]:
    """The Group that stands for ``source``'s patients."""
    group: dict[str, Any] = {
        "resourceType": "Group",
        "id": source,
        "meta": {"source": source},
        "type": "person",
        "actual": True,
        "name": source,
    }
    if quantity is not None:
        group["quantity"] = quantity
    return group


def parse_group_search(items: Sequence[tuple[str, str]], *, strict: bool) -> GroupSearch:
    """The parameters of a Group search. An unknown parameter is ignored, or a 400 under
    ``Prefer: handling=strict``; a modifier a parameter does not take is always a 400."""
    params: list[SearchParam] = []
    count_only = False
    for key, value in items:
        name, _, modifier = key.partition(":")
        if name == "_summary" and value == "count":
            count_only = True
            continue
        if name == "_count" and value == "0":
            count_only = True
            continue
        if name in _HARMLESS:
            continue
        if name not in SEARCH_PARAMS:
            if strict:
                raise FhirError(
                    400,
                    [
                        Issue(
                            "error",
                            "not-supported",
                            f"Group search takes no parameter {name or '(no name)'!r}",
                            (key,) if key else (),
                        )
                    ],
                )
            continue
        if modifier and modifier not in _MODIFIERS[name]:
            raise FhirError.one(400, "not-supported", f"{name} takes no modifier {modifier!r}", key)
        values = tuple(v for v in value.split(",") if v)
        if not values:
            raise FhirError.one(400, "invalid", f"{name} needs a value", key)
        if name == "name" and modifier != "exact" and not all(map(search_text, values)):
            raise FhirError.one(
                400,
                "invalid",
                f"{key}: a value is only punctuation and whitespace, which a string search ignores",
                key,
            )
        params.append(SearchParam(name, values, modifier or None))
    return GroupSearch(tuple(params), count_only)


def group_matches(group: dict[str, Any], params: Sequence[SearchParam]) -> bool:
    for param in params:
        if param.name == "_id" and group["id"] not in param.values:
            return False
        if param.name == "name" and not string_matches(param, [group["name"]]):
            return False
    return True


def group_capability() -> dict[str, Any]:
    """The CapabilityStatement's entry for Group: read and search."""
    return {
        "type": "Group",
        "profile": "http://hl7.org/fhir/StructureDefinition/Group",
        "documentation": "One Group per source, its id the source's name: the patients that "
        "source holds (quantity where the source counts them exactly; no member list).",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "no-version",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": False,
        "searchParam": [
            {"name": name, "type": kind, "definition": _SP + definition, "documentation": doc}
            for name, (kind, definition, doc) in sorted(SEARCH_PARAMS.items())
        ],
    }
