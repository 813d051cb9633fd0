"""What a search page is shaped by here, since no vendor can: ``_lastUpdated``, ``_sort``
and ``_elements`` (https://hl7.org/fhir/R4/search.html#lastUpdated, #sort, #elements).

- ``_lastUpdated`` keeps the matches whose ``meta.lastUpdated`` meets every value given
  (date prefixes as for any date parameter; a value without a zone read in the match's
  source's zone). That time is the vendor's where it gives one,
  else the change journal's (:mod:`adapter.journal`): when this service first saw the
  record's current content. It is the time ``_since`` of a bulk export reads.
- ``_sort`` orders each page, by one key after another (``-`` before a key: descending);
  a match without a value for a key comes after those with one, in either direction. The
  vendors give no order, so the order holds within a page: a search that fits one page is
  sorted whole, and a longer one is sorted page by page (the cross-source rule: each page
  merges every source's share of it, and sorts what it holds).
- ``_elements`` keeps the named top-level elements of each match, with ``id``, ``meta``
  and the elements FHIR requires of the type, and tags the match ``SUBSETTED``
  (http://hl7.org/fhir/R4/search.html#elements). Included resources are whole.

Nothing here knows a vendor; the :class:`~adapter.fhir.search.Shaping` of a search
travels in its paging cursors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, tzinfo
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from adapter.fhir.dates import parse_range
from adapter.fhir.match import date_matches
from adapter.fhir.search import Shaping
from adapter.fhir.strings import normalise

__all__ = [
    "SORT_KEYS",
    "SUBSETTED",
    "element_names",
    "keeps",
    "kept_and_sorted",
    "sort_keys",
    "sort_resources",
    "subset",
]

Resource = dict[str, Any]

# The tag of a resource that is not whole (R4 search, "_elements").
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_range(value, UTC)[0]
    except ValueError:
        return None


def _updated(r: Resource) -> datetime | None:
    return _instant((r.get("meta") or {}).get("lastUpdated"))


def _name(*parts: str) -> Callable[[Resource], str | None]:
    """The first name's parts, case- and accent-folded (``family`` before ``given``)."""

    def key(r: Resource) -> str | None:
        for name in r.get("name") or ():
            words: list[str] = []
            for part in parts:
                value = name.get(part)
                if isinstance(value, str):
                    words.append(value)
                elif isinstance(value, list):
                    words.extend(v for v in value if isinstance(v, str))
            if not words and isinstance(name.get("text"), str):
                words.append(name["text"])
            if words:
                return normalise(" ".join(words))
        return None

    return key


def _field(key: str) -> Callable[[Resource], datetime | None]:
    return lambda r: _instant(r.get(key))


def _id(r: Resource) -> str | None:
    value = r.get("id")
    return value if isinstance(value, str) else None


# The keys ``_sort`` takes, per type; ``_lastUpdated`` and ``_id`` for every type.
_COMMON: dict[str, Callable[[Resource], Any]] = {"_lastUpdated": _updated, "_id": _id}
SORT_KEYS: dict[str, dict[str, Callable[[Resource], Any]]] = {
    "Patient": {
        "birthdate": _field("birthDate"),
        "name": _name("family", "given"),
        "family": _name("family"),
        "given": _name("given"),
    },
    "Appointment": {"date": _field("start")},
    "Slot": {"start": _field("start")},
    "Practitioner": {"name": _name("family", "given")},
}


def sort_keys(resource_type: str) -> dict[str, Callable[[Resource], Any]]:
    return {**SORT_KEYS.get(resource_type, {}), **_COMMON}


def keeps(shaping: Shaping, resource: Resource, zone: tzinfo = UTC) -> bool:
    """Whether ``resource`` meets every ``_lastUpdated`` value of ``shaping``; a value
    without a zone is read in ``zone`` (its source's, as for any date)."""
    if not shaping.updated:
        return True
    updated = (resource.get("meta") or {}).get("lastUpdated")
    if not isinstance(updated, str):
        return False  # a time not known meets no bound
    return all(date_matches(param, (updated,), zone, instant=True) for param in shaping.updated)


def kept_and_sorted(
    shaping: Shaping,
    resource_type: str,
    resources: list[Resource],
    zone_of: Callable[[Resource], tzinfo] = lambda _: UTC,
) -> list[Resource]:
    """A page's matches that meet ``_lastUpdated`` (each in its source's zone,
    ``zone_of``), in the ``_sort`` order."""
    if shaping.updated:
        resources = [r for r in resources if keeps(shaping, r, zone_of(r))]
    out = resources
    if shaping.sort:
        out = sort_resources(resource_type, out, shaping.sort)
    return out


def sort_resources(
    resource_type: str, resources: Iterable[Resource], keys: Iterable[tuple[str, bool]]
) -> list[Resource]:
    """``resources`` ordered by ``keys`` (the first the most significant); those without
    a value for a key after those with one, whichever the direction; stable."""
    known = sort_keys(resource_type)
    out = list(resources)
    for name, descending in reversed(list(keys)):
        extract = known[name]
        valued = [(extract(r), r) for r in out]
        present = [pair for pair in valued if pair[0] is not None]
        present.sort(key=lambda pair: pair[0], reverse=descending)
        out = [r for _, r in present] + [r for value, r in valued if value is None]
    return out


@cache
def _choices(resource_type: str) -> dict[str, str]:
    """Each choice element's typed name -> its name without the type
    (``deceasedBoolean`` -> ``deceased``)."""
    names = get_fhir_model_class(resource_type).elements_sequence()
    out: dict[str, str] = {}
    for name in names:
        for cut in range(len(name) - 1, 0, -1):
            if name[cut].isupper():
                base = name[:cut]
                typed = [n for n in names if n.startswith(base) and n[cut : cut + 1].isupper()]
                if len(typed) > 1:
                    out[name] = base
                    break
    return out


@cache
def element_names(resource_type: str) -> frozenset[str]:
    """The top-level element names of ``resource_type`` a client may give ``_elements``:
    each element, and a choice element by its name without the type (``deceased``)."""
    names = get_fhir_model_class(resource_type).elements_sequence()
    return frozenset({*names, *_choices(resource_type).values()})


@cache
def _mandatory(resource_type: str) -> frozenset[str]:
    """What a subset keeps whatever is asked: ``id``, ``meta`` and what FHIR requires."""
    model = get_fhir_model_class(resource_type)
    required = {
        name
        for name, info in model.model_fields.items()
        if info.is_required() or (info.json_schema_extra or {}).get("element_required")  # type: ignore[union-attr]
    }
    return frozenset({"resourceType", "id", "meta", *required})


def subset(resource_type: str, resource: Resource, elements: Iterable[str]) -> Resource:
    """``resource`` with only ``elements`` (and what is mandatory), tagged SUBSETTED."""
    mandatory = _mandatory(resource_type)
    choices = _choices(resource_type)
    wanted = set(elements)
    out = {
        k: v
        for k, v in resource.items()
        if k in mandatory or k in wanted or choices.get(k) in wanted
    }
    meta = dict(out.get("meta") or {})
    tags = [t for t in meta.get("tag") or () if t.get("code") != SUBSETTED["code"]]
    meta["tag"] = [*tags, SUBSETTED]
    out["meta"] = meta
    return out
