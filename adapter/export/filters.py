"""``_typeFilter`` (Bulk Data Access IG v2.0.0): which resources of a type an export keeps.

Each filter is a FHIR search on one type, ``Type?name=value&...``, as the IG writes it
(URL-encoded once more inside the kick-off's query). Filters come repeated or joined by
commas; one whose type is exported keeps a resource when it meets *every* parameter of
that filter (AND), and a type with several filters keeps what meets *any* of them (OR). A
type without a filter is exported whole.

A filter is parsed by the facade's own search parser (strict: a parameter the type does
not take is refused) and each parameter is then evaluated with the facade's search
matchers (:func:`adapter.fhir.match.matches`, the ``_lastUpdated`` bound of
:mod:`adapter.fhir.shaping`, ``_source`` against ``meta.source``), over every record of the
type the source lists: the listing is a superset of any filter's answer, so the kept
records are exactly the search's matches. A filter the export cannot apply is a 400 at
kick-off naming it, never one accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any
from urllib.parse import parse_qsl

from adapter.facade import Facade
from adapter.fhir.match import matches
from adapter.fhir.outcome import FhirError, Issue
from adapter.fhir.search import SearchParam, Shaping, UnsupportedParameter
from adapter.fhir.shaping import keeps

__all__ = ["TypeFilter", "kept", "parse_type_filters", "split_type_filters"]

# A filter selects records: beside the type's own search parameters it may name
# ``_source`` and ``_lastUpdated``, and nothing that pages, sorts, counts, shapes or includes.
_REFUSED_CONTROL = frozenset(
    {
        "_count",
        "_cursor",
        "_sort",
        "_elements",
        "_summary",
        "_total",
        "_include",
        "_revinclude",
        "_format",
        "_pretty",
        "_contained",
        "_containedType",
    }
)


@dataclass(frozen=True)
class TypeFilter:
    """One filter: its text as given, and the search it is."""

    text: str
    resource_type: str
    params: tuple[SearchParam, ...]
    updated: tuple[SearchParam, ...]  # ``_lastUpdated`` bounds
    sources: tuple[str, ...] | None  # ``_source``, when it narrows
    nothing: bool = False  # a parameter whose element no source fills: none is kept

    def keeps(self, resource: Mapping[str, Any], zone: tzinfo, country: str | None) -> bool:
        if self.nothing:
            return False
        source = (resource.get("meta") or {}).get("source")
        if self.sources is not None and source not in self.sources:
            return False
        if self.updated and not keeps(Shaping(updated=self.updated), dict(resource)):
            return False
        return matches(dict(resource), self.params, zone, country)


def split_type_filters(values: Iterable[str]) -> list[str]:
    """The filters of the kick-off's ``_typeFilter`` values (each may join several with
    commas, the IG's form; a comma inside a filter's own value is written ``%2C``)."""
    out: list[str] = []
    for value in values:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def _refused(text: str, why: str) -> FhirError:
    return FhirError(
        400,
        [Issue("error", "not-supported", f"_typeFilter {text!r}: {why}", ("_typeFilter",))],
    )


def parse_type_filters(
    gate: Facade, texts: Sequence[str], exported: Sequence[str]
) -> dict[str, list[TypeFilter]]:
    """The filters by type; a :class:`FhirError` (400, naming ``_typeFilter`` and the
    filter) for one on a type the export does not hold, or with a parameter that type
    does not take or the export cannot apply."""
    by_type: dict[str, list[TypeFilter]] = {}
    for text in texts:
        resource_type, mark, query = text.partition("?")
        if not mark or not resource_type or not query:
            raise _refused(text, "must be a search on one type, Type?name=value")
        if resource_type not in exported:
            raise _refused(text, f"{resource_type} is not among the types exported")
        try:
            items = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise _refused(text, "its query cannot be read") from None
        for key, _ in items:
            name = key.partition(":")[0]
            if name in _REFUSED_CONTROL:
                raise _refused(text, f"{key} selects no records; a filter cannot take it")
        try:
            parsed = gate.parse(resource_type, items, strict=True)
        except FhirError as exc:
            detail = "; ".join(issue.diagnostics for issue in exc.issues)
            raise _refused(text, detail) from None
        for param in parsed.request.params:
            try:
                matches({"resourceType": resource_type}, [param], UTC)
            except UnsupportedParameter as exc:
                raise _refused(text, f"{exc.parameter} cannot be applied: {exc.reason}") from None
        named = parsed.request.sources
        unknown = sorted(
            {v for k, raw in items if k == "_source" for v in raw.split(",") if v}
            - set(gate.sources)
        )
        if unknown:
            raise _refused(text, f"_source names no source: {', '.join(unknown)}")
        by_type.setdefault(resource_type, []).append(
            TypeFilter(
                text,
                resource_type,
                parsed.request.params,
                parsed.shaping.updated,
                named,
                nothing=parsed.nothing is not None,
            )
        )
    return by_type


def kept(
    filters: Sequence[TypeFilter],
    resources: list[dict[str, Any]],
    zone: tzinfo,
    country: str | None,
) -> list[dict[str, Any]]:
    """The resources that meet any of ``filters`` (all of them when there is none)."""
    if not filters:
        return resources
    return [r for r in resources if any(f.keeps(r, zone, country) for f in filters)]
