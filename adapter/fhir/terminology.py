"""The vendor code tables as R4 ConceptMaps: search, read and ``$translate``, in memory.

Every code table of :mod:`mappings` (``mappings/*/codes.py``) is one ConceptMap
(:func:`mappings.concept_maps`), fixed for the life of the process. They read "vendor
code -> FHIR code": each group's ``source`` is a vendor code system, its ``target`` the
FHIR one, and each equivalence says what the FHIR code is to the vendor code.

- Search (https://hl7.org/fhir/R4/conceptmap.html#search): ``_id``, ``url``, ``name``
  (string: case- and accent-insensitive prefix, ``:exact``, ``:contains``, as
  :mod:`adapter.fhir.match` matches strings), ``status``, ``source`` and ``target`` (the
  map's value sets, ``sourceCanonical``/``sourceUri``; ``source-uri`` and ``target-uri``
  the ``...Uri`` forms alone), ``source-system`` and ``target-system`` (``group.source``,
  ``group.target``). Values are ORed within a parameter, parameters ANDed; ``_count``,
  ``_summary=count`` and ``_total`` as for any search. Unknown parameters follow the
  server's rule (:mod:`adapter.fhir.params`): left out, or a 400 under ``Prefer:
  handling=strict``. Pages beyond the first are reached through signed cursors
  (:mod:`adapter.fhir.cursor`), as elsewhere.
- ``$translate`` (https://hl7.org/fhir/R4/conceptmap-operation-translate.html): a code
  (``code`` + ``system``, ``coding`` or ``codeableConcept``) through one map (the
  instance, ``url`` or a ``conceptMap`` given inline) or every map whose groups fit its
  system (and ``targetsystem``, ``source``, ``target`` when given). ``reverse=true``
  goes from the map's targets back to its sources (FHIR code -> vendor codes): every
  vendor code mapped to the FHIR code, in the table's order, so the preferred one first;
  the equivalence is then read the other way (``wider`` becomes ``narrower``, ``subsumes``
  ``specializes``, and back). The answer is a ``Parameters`` resource with ``result``,
  ``message`` and one ``match`` per concept found.

Errors are :class:`FhirError` 400s (404 for an unknown id) naming the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

from adapter.fhir import jsonbody
from adapter.fhir.cursor import CursorCodec, InvalidCursor
from adapter.fhir.match import string_matches, token_matches
from adapter.fhir.outcome import FhirError, Issue
from adapter.fhir.params import MAX_NAME, MAX_PARAMETERS, MAX_VALUE, MAX_VALUES
from adapter.fhir.search import SearchParam
from mappings import concept_maps as _table_maps

__all__ = [
    "CONCEPT_MAPS",
    "SEARCH_PARAMS",
    "TRANSLATE_DEFINITION",
    "Coding",
    "ConceptMapPage",
    "ConceptMapQuery",
    "TranslateRequest",
    "concept_map",
    "concept_map_capability",
    "parse_concept_map_search",
    "search_concept_maps",
    "translate",
    "translate_body",
    "translate_query",
]

Resource = dict[str, Any]

#: Every code table as an R4 ConceptMap, in the tables' order. Shared: never changed.
CONCEPT_MAPS: tuple[Resource, ...] = tuple(_table_maps())
_BY_ID = {m["id"]: m for m in CONCEPT_MAPS}
_BY_URL = {m["url"]: m for m in CONCEPT_MAPS}

_SP = "http://hl7.org/fhir/SearchParameter/"
TRANSLATE_DEFINITION = "http://hl7.org/fhir/OperationDefinition/ConceptMap-translate"
_PUBLICATION_STATUS = "http://hl7.org/fhir/publication-status"
# https://hl7.org/fhir/R4/valueset-concept-map-equivalence.html
_EQUIVALENCES = frozenset(
    {
        "relatedto",
        "equivalent",
        "equal",
        "wider",
        "subsumes",
        "narrower",
        "specializes",
        "inexact",
        "unmatched",
        "disjoint",
    }
)
# Equivalences that are no translation: a match with one of these does not make `result`.
_NO_MATCH = frozenset({"unmatched", "disjoint"})
# An equivalence read the other way (reverse): "A is wider than B" is "B is narrower than A".
_REVERSED = {
    "wider": "narrower",
    "narrower": "wider",
    "subsumes": "specializes",
    "specializes": "subsumes",
}


# -- search ---------------------------------------------------------------------------------

Pairs = list[tuple[str | None, str]]  # (system, value) of what a parameter reads


def _strings(*keys: str) -> Callable[[Resource], Pairs]:
    def read(m: Resource) -> Pairs:
        return [(None, m[k]) for k in keys if isinstance(m.get(k), str)]

    return read


def _groups(key: str) -> Callable[[Resource], Pairs]:
    def read(m: Resource) -> Pairs:
        return [(None, g[key]) for g in m.get("group") or () if isinstance(g.get(key), str)]

    return read


def _status(m: Resource) -> Pairs:
    return [(_PUBLICATION_STATUS, m["status"])] if isinstance(m.get("status"), str) else []


@dataclass(frozen=True)
class _Param:
    kind: str  # string | token | uri | reference
    definition: str  # the parameter's R4 SearchParameter
    documentation: str
    read: Callable[[Resource], Pairs]


#: The search parameters, each as R4 defines it for ConceptMap.
SEARCH_PARAMS: dict[str, _Param] = {
    "_id": _Param("token", "Resource-id", "The map's id", _strings("id")),
    "url": _Param("uri", "ConceptMap-url", "The map's canonical URL", _strings("url")),
    "name": _Param("string", "ConceptMap-name", "The map's name (LeyrGender)", _strings("name")),
    "status": _Param("token", "ConceptMap-status", "The map's status (active)", _status),
    "source": _Param(
        "reference",
        "ConceptMap-source",
        "The value set or code system mapped from (sourceCanonical or sourceUri)",
        _strings("sourceCanonical", "sourceUri"),
    ),
    "source-uri": _Param(
        "reference", "ConceptMap-source-uri", "sourceUri, exactly", _strings("sourceUri")
    ),
    "target": _Param(
        "reference",
        "ConceptMap-target",
        "The value set or code system mapped to (targetCanonical or targetUri)",
        _strings("targetCanonical", "targetUri"),
    ),
    "target-uri": _Param(
        "reference", "ConceptMap-target-uri", "targetUri, exactly", _strings("targetUri")
    ),
    "source-system": _Param(
        "uri", "ConceptMap-source-system", "A group's source code system", _groups("source")
    ),
    "target-system": _Param(
        "uri", "ConceptMap-target-system", "A group's target code system", _groups("target")
    ),
}
_MODIFIERS: dict[str, frozenset[str | None]] = {
    "string": frozenset({None, "exact", "contains"}),
    "token": frozenset({None}),
    "uri": frozenset({None}),
    "reference": frozenset({None}),
}
_COUNT_DIGITS = 6
_SPLIT = re.compile(r"(?<!\\),")


@dataclass(frozen=True)
class ConceptMapQuery:
    """A ConceptMap search as asked: its parameters, page size and what it shows."""

    params: tuple[SearchParam, ...] = ()
    count: int = 20
    count_only: bool = False  # _summary=count or _count=0
    show_total: bool = True  # _total=none hides it
    used: tuple[tuple[str, str], ...] = ()  # honoured, for the self link, in order
    cursor: str | None = None

    @property
    def self_query(self) -> str:
        count = f"_count={self.count}"
        return f"{urlencode(self.used)}&{count}" if self.used else count


@dataclass(frozen=True)
class ConceptMapPage:
    """One page of a ConceptMap search."""

    matches: list[Resource]
    total: int | None
    self_query: str
    next_cursor: str | None = None
    previous_cursor: str | None = None


def _bad(parameter: str, message: str, code: str = "invalid") -> FhirError:
    named = 0 < len(parameter) <= MAX_NAME
    return FhirError(
        400, [Issue("error", code, f"{_name(parameter)}: {message}", (parameter,) if named else ())]
    )


def _name(key: str) -> str:
    if not key:
        return "(no name)"
    return key if len(key) <= MAX_NAME else key[:40] + "..."


def _split(value: str) -> tuple[str, ...]:
    """ORed values: split at commas, ``\\,`` being a comma within a value."""
    return tuple(v.replace("\\,", ",") for v in _SPLIT.split(value))


def parse_concept_map_search(
    items: Sequence[tuple[str, str]], *, strict: bool, default_count: int, max_count: int
) -> ConceptMapQuery:
    """The search ``items`` ask for (a 400 naming the parameter for what cannot be)."""
    if len(items) > MAX_PARAMETERS:
        raise _bad(
            items[MAX_PARAMETERS][0],
            f"a search holds at most {MAX_PARAMETERS} parameters",
            "too-costly",
        )
    params: list[SearchParam] = []
    used: list[tuple[str, str]] = []
    unsupported: list[str] = []
    count = default_count
    count_only = False
    show_total = True
    cursor = None
    values = 0
    for key, raw in items:
        if len(key) > MAX_NAME:
            raise _bad(key, f"a parameter name is over {MAX_NAME} characters", "too-long")
        name, _, modifier = key.partition(":")
        if name == "_cursor":
            cursor = raw
            continue
        if len(raw) > MAX_VALUE:
            raise _bad(key, f"a value is over {MAX_VALUE} characters", "too-long")
        if name in ("_format", "_pretty"):
            continue
        if name == "_count" and not modifier:
            if not raw.isascii() or not raw.isdigit() or len(raw) > _COUNT_DIGITS:
                raise _bad(
                    "_count", f"must be a whole number from 0, of at most {_COUNT_DIGITS} digits"
                )
            count = min(int(raw), max_count)
            continue
        if name == "_summary" and not modifier and raw in ("count", "false"):
            if raw == "count":
                count_only = True
                used.append((key, raw))
            continue
        if name == "_total" and not modifier:
            if raw not in ("none", "estimate", "accurate"):
                raise _bad("_total", "must be none, estimate or accurate")
            show_total = raw != "none"
            used.append((key, raw))
            continue
        param = SEARCH_PARAMS.get(name)
        if param is None:
            unsupported.append(key if name != "_summary" else f"{key}={raw}")
            continue
        if (modifier or None) not in _MODIFIERS[param.kind]:
            raise _bad(key, f"modifier :{modifier} is not supported", "not-supported")
        split = _split(raw)
        if any(v == "" for v in split):
            raise _bad(key, "has an empty value")
        values += len(split)
        if values > MAX_VALUES:
            raise _bad(key, f"a search holds at most {MAX_VALUES} values in all", "too-costly")
        params.append(SearchParam(name, split, modifier or None))
        used.append((key, raw))
    if unsupported and strict:
        raise FhirError(
            400,
            [
                Issue(
                    "error",
                    "not-supported",
                    f"search parameter {_name(u)} is not supported for ConceptMap",
                    (u.split("=")[0],) if 0 < len(u.split("=")[0]) <= MAX_NAME else (),
                )
                for u in unsupported
            ],
        )
    return ConceptMapQuery(
        tuple(params), count, count_only or count == 0, show_total, tuple(used), cursor
    )


def _matches(resource: Resource, params: Iterable[SearchParam]) -> bool:
    for param in params:
        spec = SEARCH_PARAMS[param.name]
        have = spec.read(resource)
        if spec.kind == "string":
            ok = string_matches(param, (v for _, v in have))
        elif spec.kind == "token":
            ok = token_matches(param, have)
        else:  # uri, reference: the URL exactly
            ok = any(v in param.values for _, v in have)
        if not ok:
            return False
    return True


def search_concept_maps(
    items: Sequence[tuple[str, str]],
    *,
    strict: bool,
    default_count: int,
    max_count: int,
    cursors: CursorCodec,
    client: str | None,
) -> ConceptMapPage:
    """A page of a ConceptMap search: the first from ``items``, or the one their
    ``_cursor`` names (its other parameters then count for nothing, as for any search)."""
    query = parse_concept_map_search(
        items, strict=strict, default_count=default_count, max_count=max_count
    )
    offset = 0
    self_query = query.self_query
    if query.cursor is not None:
        self_query = urlencode({"_cursor": query.cursor})
        query, offset = _resume(query.cursor, cursors, client)
    found = [m for m in CONCEPT_MAPS if _matches(m, query.params)]
    if query.count_only:
        return ConceptMapPage([], len(found), self_query)
    end = offset + query.count
    return ConceptMapPage(
        found[offset:end],
        len(found) if query.show_total else None,
        self_query,
        _cursor_of(query, end, cursors, client) if end < len(found) else None,
        _cursor_of(query, max(0, offset - query.count), cursors, client) if offset else None,
    )


def _cursor_of(
    query: ConceptMapQuery, offset: int, cursors: CursorCodec, client: str | None
) -> str:
    state = {
        "t": "ConceptMap",
        "q": [list(item) for item in query.used],
        "n": query.count,
        "o": offset,
        "cl": client,
    }
    return cursors.encode(state)


def _resume(cursor: str, cursors: CursorCodec, client: str | None) -> tuple[ConceptMapQuery, int]:
    try:
        state = cursors.decode(cursor)
    except InvalidCursor as exc:
        raise _bad("_cursor", str(exc)) from None
    items, count, offset = state.get("q"), state.get("n"), state.get("o")
    if (
        state.get("t") != "ConceptMap"
        or state.get("cl") != client
        or not isinstance(items, list)
        or not all(
            isinstance(i, list) and len(i) == 2 and all(isinstance(s, str) for s in i)
            for i in items
        )
        or not isinstance(count, int)
        or not isinstance(offset, int)
        or count < 1
        or offset < 0
    ):
        raise _bad("_cursor", "belongs to another search")
    query = parse_concept_map_search(
        [(k, v) for k, v in items], strict=False, default_count=count, max_count=count
    )
    return query, offset


def concept_map(fhir_id: str) -> Resource:
    """The ConceptMap with this id; a 404 for none."""
    found = _BY_ID.get(fhir_id)
    if found is None:
        raise FhirError.one(404, "not-found", f"ConceptMap/{_name(fhir_id)} is not known here")
    return found


# -- $translate -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Coding:
    code: str
    system: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class TranslateRequest:
    """What a ``$translate`` asks: the codings to translate (one, or a CodeableConcept's),
    the parameter that carried them, and what narrows the maps to look in."""

    codings: tuple[Coding, ...]
    given_as: str = "code"  # code | coding | codeableConcept
    url: str | None = None
    concept_map: Resource | None = None  # given inline (POST)
    source: str | None = None
    target: str | None = None
    target_system: str | None = None
    reverse: bool = False


# Each input of the operation: the value[x] it takes in a Parameters body.
_URI_VALUES = ("valueUri", "valueCanonical", "valueUrl")
_INPUTS: dict[str, tuple[str, ...]] = {
    "url": _URI_VALUES,
    "conceptMap": ("resource",),
    "code": ("valueCode", "valueString"),
    "system": _URI_VALUES,
    "version": ("valueString",),
    "coding": ("valueCoding",),
    "codeableConcept": ("valueCodeableConcept",),
    "source": _URI_VALUES,
    "target": _URI_VALUES,
    "targetsystem": _URI_VALUES,
    "reverse": ("valueBoolean",),
}
# Inputs a GET cannot carry: a resource and a complex type.
_BODY_ONLY = frozenset({"conceptMap", "codeableConcept"})


def translate_query(items: Sequence[tuple[str, str]], *, strict: bool) -> TranslateRequest:
    """A GET ``$translate``'s query: each input once, ``coding`` as ``system|code``,
    ``reverse`` ``true`` or ``false``."""
    if len(items) > MAX_PARAMETERS:
        raise _bad(items[MAX_PARAMETERS][0], f"at most {MAX_PARAMETERS} parameters", "too-costly")
    given: dict[str, Any] = {}
    unknown: list[str] = []
    for key, raw in items:
        if len(key) > MAX_NAME:
            raise _bad(key, f"a parameter name is over {MAX_NAME} characters", "too-long")
        if len(raw) > MAX_VALUE:
            raise _bad(key, f"a value is over {MAX_VALUE} characters", "too-long")
        if key in ("_format", "_pretty"):
            continue
        if key in _BODY_ONLY:
            raise _bad(key, "is taken only in a POST Parameters body", "not-supported")
        if key not in _INPUTS:
            unknown.append(key)
            continue
        if key in given:
            raise _bad(key, "is given more than once")
        if raw == "":
            raise _bad(key, "has an empty value")
        if key == "reverse":
            if raw not in ("true", "false"):
                raise _bad(key, "must be true or false")
            given[key] = raw == "true"
        elif key == "coding":
            system, _, code = raw.rpartition("|")
            if not code:
                raise _bad(key, "has no code (system|code)")
            given[key] = Coding(code, system or None)
        else:
            given[key] = raw
    _refuse_unknown(unknown, strict)
    return _request(given)


def translate_body(raw: bytes, *, strict: bool) -> TranslateRequest:
    """A POST ``$translate``'s body: a ``Parameters`` resource, each input once with the
    value[x] R4 gives it (``code`` may be a valueString too)."""
    try:
        body = jsonbody.loads(raw)
    except orjson.JSONDecodeError:
        raise FhirError.one(400, "invalid", "the body is not JSON", "Parameters") from None
    except jsonbody.BodyRefused as exc:
        raise FhirError.one(400, "invalid", str(exc), "Parameters") from None
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError.one(400, "invalid", "the body is not a Parameters resource", "Parameters")
    entries = body.get("parameter", [])
    if not isinstance(entries, list):
        raise FhirError.one(
            400, "invalid", "Parameters.parameter must be a list", "Parameters.parameter"
        )
    if len(entries) > MAX_PARAMETERS:
        raise FhirError.one(
            400,
            "too-costly",
            f"Parameters holds at most {MAX_PARAMETERS} parameters",
            "Parameters.parameter",
        )
    given: dict[str, Any] = {}
    unknown: list[str] = []
    for index, entry in enumerate(entries):
        where = f"Parameters.parameter[{index}]"
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise FhirError.one(400, "invalid", f"{where} has no name", where)
        if name not in _INPUTS:
            unknown.append(name)
            continue
        if name in given:
            raise _bad(name, "is given more than once")
        given[name] = _value(name, entry)
    _refuse_unknown(unknown, strict)
    return _request(given)


def _value(name: str, entry: dict[str, Any]) -> Any:
    """The value of one input of a Parameters body, checked for its type."""
    allowed = _INPUTS[name]
    carried = [k for k in entry if k.startswith("value") or k in ("resource", "part")]
    if len(carried) != 1 or carried[0] not in allowed:
        raise _bad(name, f"takes {' or '.join(allowed)}")
    value = entry[carried[0]]
    if name == "reverse":
        if not isinstance(value, bool):
            raise _bad(name, "must be true or false")
        return value
    if name == "coding":
        return _coding(name, value)
    if name == "codeableConcept":
        codings = value.get("coding") if isinstance(value, dict) else None
        if not isinstance(codings, list) or not codings:
            raise _bad(name, "holds no coding")
        if len(codings) > MAX_VALUES:
            raise _bad(name, f"holds at most {MAX_VALUES} codings", "too-costly")
        return tuple(_coding(name, c) for c in codings)
    if name == "conceptMap":
        return _checked_map(value)
    if not isinstance(value, str) or not value:
        raise _bad(name, "must be a non-empty string")
    if len(value) > MAX_VALUE:
        raise _bad(name, f"a value is over {MAX_VALUE} characters", "too-long")
    return value


def _coding(name: str, value: Any) -> Coding:
    if not isinstance(value, dict):
        raise _bad(name, "is not a Coding")
    code, system, version = value.get("code"), value.get("system"), value.get("version")
    if not isinstance(code, str) or not code:
        raise _bad(name, "a Coding without a code")
    for part in (system, version):
        if part is not None and (not isinstance(part, str) or not part):
            raise _bad(name, "a Coding's system and version must be non-empty strings")
    if any(len(p) > MAX_VALUE for p in (code, system or "", version or "")):
        raise _bad(name, f"a value is over {MAX_VALUE} characters", "too-long")
    return Coding(code, system, version)


def _checked_map(value: Any) -> Resource:
    """A ConceptMap given inline, as far as translating reads it (a 400 naming the element
    that is not as R4 has it)."""

    def bad(path: str, message: str) -> FhirError:
        return _bad("conceptMap", f"{path} {message}")

    if not isinstance(value, dict) or value.get("resourceType") != "ConceptMap":
        raise _bad("conceptMap", "is not a ConceptMap")
    for key in ("url", "name", "sourceUri", "sourceCanonical", "targetUri", "targetCanonical"):
        if key in value and not isinstance(value[key], str):
            raise bad(f"ConceptMap.{key}", "must be a string")
    groups = value.get("group", [])
    if not isinstance(groups, list):
        raise bad("ConceptMap.group", "must be a list")
    for g, group in enumerate(groups):
        at = f"ConceptMap.group[{g}]"
        if not isinstance(group, dict):
            raise bad(at, "must be an object")
        for key in ("source", "target", "sourceVersion", "targetVersion"):
            if key in group and not isinstance(group[key], str):
                raise bad(f"{at}.{key}", "must be a string")
        elements = group.get("element", [])
        if not isinstance(elements, list):
            raise bad(f"{at}.element", "must be a list")
        for e, element in enumerate(elements):
            here = f"{at}.element[{e}]"
            if not isinstance(element, dict):
                raise bad(here, "must be an object")
            for key in ("code", "display"):
                if key in element and not isinstance(element[key], str):
                    raise bad(f"{here}.{key}", "must be a string")
            targets = element.get("target", [])
            if not isinstance(targets, list):
                raise bad(f"{here}.target", "must be a list")
            for t, target in enumerate(targets):
                there = f"{here}.target[{t}]"
                if not isinstance(target, dict):
                    raise bad(there, "must be an object")
                for key in ("code", "display"):
                    if key in target and not isinstance(target[key], str):
                        raise bad(f"{there}.{key}", "must be a string")
                if target.get("equivalence") not in _EQUIVALENCES:
                    raise bad(f"{there}.equivalence", "must be an R4 ConceptMap equivalence")
    return value


def _refuse_unknown(unknown: list[str], strict: bool) -> None:
    if unknown and strict:
        raise FhirError(
            400,
            [
                Issue(
                    "error",
                    "not-supported",
                    f"{_name(u)} is not a parameter of $translate",
                    (u,) if 0 < len(u) <= MAX_NAME else (),
                )
                for u in unknown
            ],
        )


def _request(given: dict[str, Any]) -> TranslateRequest:
    carriers = [k for k in ("code", "coding", "codeableConcept") if k in given]
    if not carriers:
        raise _bad(
            "code", "give a code (with its system), a coding or a codeableConcept", "required"
        )
    if len(carriers) > 1:
        raise _bad(
            carriers[1], f"give one of code, coding or codeableConcept, not {carriers[0]} too"
        )
    carrier = carriers[0]
    for alone in ("system", "version"):
        if alone in given and carrier != "code":
            raise _bad(alone, f"goes with code; a {carrier} carries its own")
    if "version" in given and "system" not in given:
        raise _bad("version", "is the version of a system: give the system too")
    if "url" in given and "conceptMap" in given:
        raise _bad("conceptMap", "give url or conceptMap, not both")
    if carrier == "code":
        codings: tuple[Coding, ...] = (
            Coding(given["code"], given.get("system"), given.get("version")),
        )
    elif carrier == "coding":
        codings = (given["coding"],)
    else:
        codings = given["codeableConcept"]
    return TranslateRequest(
        codings,
        carrier,
        url=given.get("url"),
        concept_map=given.get("conceptMap"),
        source=given.get("source"),
        target=given.get("target"),
        target_system=given.get("targetsystem"),
        reverse=given.get("reverse", False),
    )


@dataclass(frozen=True)
class _Match:
    equivalence: str
    concept: dict[str, str] | None
    source: str | None  # the ConceptMap's url

    @property
    def positive(self) -> bool:
        """A translation: not ``unmatched`` nor ``disjoint``."""
        return self.equivalence not in _NO_MATCH

    def as_parameter(self) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [{"name": "equivalence", "valueCode": self.equivalence}]
        if self.concept is not None:
            parts.append({"name": "concept", "valueCoding": self.concept})
        if self.source is not None:
            parts.append({"name": "source", "valueUri": self.source})
        return {"name": "match", "part": parts}

    def said(self) -> str:
        if self.concept is None:
            return self.equivalence
        system = self.concept.get("system", "no system")
        return f"{self.concept['code']} of {system} ({self.equivalence})"


def _named(m: Resource) -> str:
    name = m.get("name") or m.get("url")
    return f"ConceptMap {name}" if isinstance(name, str) else "the given ConceptMap"


def _shown(text: str) -> str:
    """A value of the caller's as a message quotes it: escaped, and shortened."""
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _fits(m: Resource, wanted: str | None, *keys: str) -> bool:
    return wanted is None or any(m.get(k) == wanted for k in keys)


def _maps_for(request: TranslateRequest, fhir_id: str | None) -> tuple[list[Resource], bool]:
    """The maps to translate with, and whether the caller named them."""
    if fhir_id is not None:
        chosen = concept_map(fhir_id)
        if request.concept_map is not None:
            raise _bad("conceptMap", "is not taken by a ConceptMap's own $translate")
        if request.url is not None and request.url != chosen["url"]:
            raise _bad("url", f"is not the url of ConceptMap/{fhir_id}")
        return [chosen], True
    if request.concept_map is not None:
        return [request.concept_map], True
    if request.url is not None:
        found = _BY_URL.get(request.url)
        if found is None:
            raise _bad("url", f"no ConceptMap here has the url {_shown(request.url)}", "not-found")
        return [found], True
    return list(CONCEPT_MAPS), False


Candidates = list[tuple[Resource, dict[str, Any]]]  # (map, group)


def translate(request: TranslateRequest, fhir_id: str | None = None) -> Resource:
    """The ``$translate`` answer: an R4 ``Parameters`` resource (a 400 naming the input
    for a request that cannot be answered, a 404 for an unknown ``fhir_id``)."""
    maps, named = _maps_for(request, fhir_id)
    forward = not request.reverse
    # The code's side of a map: its source going forward, its target going back.
    ends = ("Canonical", "Uri")
    near, far = ("source", "target") if forward else ("target", "source")
    fitting = [
        m
        for m in maps
        if _fits(m, request.source, *(near + e for e in ends))
        and _fits(m, request.target, *(far + e for e in ends))
    ]
    matches: list[_Match] = []
    messages: list[str] = []
    for coding in request.codings:
        candidates = [
            (m, g)
            for m in fitting
            for g in m.get("group") or ()
            if (coding.system is None or g.get(near) == coding.system)
            and (request.target_system is None or g.get(far) == request.target_system)
            and (coding.version is None or g.get(f"{near}Version") in (None, coding.version))
        ]
        if coding.system is None:
            could = {id(m): m for m, _ in candidates}
            if len(could) > 1:
                names = ", ".join(sorted(str(m.get("name")) for m in could.values()))
                raise _bad(
                    "system" if request.given_as == "code" else request.given_as,
                    f"a code without its system could be translated by {len(could)} "
                    f"ConceptMaps ({names}): give the system, or the map's url",
                    "required",
                )
        found = _translate_one(coding, candidates, forward)
        matches += [match for match in found if match not in matches]
        messages.append(_message(coding, found, candidates, fitting, maps, named, request))
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "result", "valueBoolean": any(m.positive for m in matches)},
            {"name": "message", "valueString": " ".join(messages)},
            *(m.as_parameter() for m in matches),
        ],
    }


def _translate_one(coding: Coding, candidates: Candidates, forward: bool) -> list[_Match]:
    """Every concept the groups map ``coding`` to (or, going back, from), in their order."""
    found: list[_Match] = []
    for m, group in candidates:
        url = m.get("url") if isinstance(m.get("url"), str) else None
        for element in group.get("element") or ():
            for target in element.get("target") or ():
                if forward and element.get("code") == coding.code:
                    equivalence = target["equivalence"]
                    code, display, system = target.get("code"), target.get("display"), "target"
                elif not forward and target.get("code") == coding.code:
                    equivalence = _REVERSED.get(target["equivalence"], target["equivalence"])
                    code, display, system = element.get("code"), element.get("display"), "source"
                else:
                    continue
                concept: dict[str, str] | None = None
                if code is not None:
                    concept = {"code": code}
                    if isinstance(group.get(system), str):
                        concept = {"system": group[system], **concept}
                    if display is not None:
                        concept["display"] = display
                match = _Match(equivalence, concept, url)
                if match not in found:
                    found.append(match)
    return found


def _message(
    coding: Coding,
    found: list[_Match],
    candidates: Candidates,
    fitting: list[Resource],
    maps: list[Resource],
    named: bool,
    request: TranslateRequest,
) -> str:
    """What was found for one coding, or why nothing was."""
    what = f"code {_shown(coding.code)}"
    if coding.system is not None:
        what += f" of {_shown(coding.system)}"
    if request.reverse:
        what += " (reverse)"
    if found:
        listed = "; ".join(m.said() for m in found)
        if not any(m.positive for m in found):
            return f"No equivalent for {what}, only: {listed}."
        used = ", ".join(sorted({_named(m) for m, _ in candidates}))
        count = f"{len(found)} match{'es' if len(found) > 1 else ''}"
        return f"{count} for {what} in {used}: {listed}."
    subject = (
        f"{', '.join(_named(m) for m in maps)} does not map"
        if named
        else ("no ConceptMap here maps")
    )
    if not fitting:
        sets = []
        if request.source is not None:
            sets.append(f"from the value set {_shown(request.source)}")
        if request.target is not None:
            sets.append(f"to the value set {_shown(request.target)}")
        return f"No translation of {what}: {subject} {' '.join(sets)}."
    if not candidates:
        system = "any system" if coding.system is None else _shown(coding.system)
        into = ""
        if request.target_system is not None:
            into = f" into {_shown(request.target_system)}"
        return f"No translation of {what}: {subject} from {system}{into}."
    used = ", ".join(sorted({_named(m) for m, _ in candidates}))
    return f"No mapping of {what} in {used}."


# -- the CapabilityStatement ----------------------------------------------------------------


def concept_map_capability() -> dict[str, Any]:
    """The CapabilityStatement's entry for ConceptMap: read, search and $translate."""
    return {
        "type": "ConceptMap",
        "profile": "http://hl7.org/fhir/StructureDefinition/ConceptMap",
        "documentation": "The vendor code tables (vendor code -> FHIR code), one ConceptMap "
        "each; $translate goes either way (reverse=true: FHIR code -> vendor codes).",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "no-version",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": False,
        "searchParam": [
            {
                "name": name,
                "type": param.kind,
                "definition": _SP + param.definition,
                "documentation": param.documentation,
            }
            for name, param in sorted(SEARCH_PARAMS.items())
        ],
        "operation": [{"name": "translate", "definition": TRANSLATE_DEFINITION}],
    }
