"""HTTP query parameters -> a typed search (https://hl7.org/fhir/R4/search.html).

Search parameters are checked against what FHIR defines for the type and what the
configured sources can do. Unknown or unsupported ones are left out (and out of the
``self`` link) by default; with ``Prefer: handling=strict`` they are a 400 naming the
parameter. A malformed value of a known parameter (a date that is no date, a ``_count``
that is no number) and an unknown modifier are always a 400: ignoring them would change
what the search means.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from adapter.fhir.dates import FhirDate, parse_date
from adapter.fhir.match import KINDS, MODIFIERS
from adapter.fhir.outcome import FhirError, Issue
from adapter.fhir.search import DATE_PREFIXES, SearchParam, SearchRequest

__all__ = ["ParsedSearch", "parse_search", "prefers_strict"]

_CONTROL = frozenset(
    {"_count", "_summary", "_include", "_total", "_source", "_format", "_cursor", "_pretty"}
)
_SPLIT = re.compile(r"(?<!\\),")
_PREFIXED = re.compile(r"(eq|ne|gt|lt|ge|le|sa|eb)(?=\d)")


@dataclass
class ParsedSearch:
    """A search request as the client asked it, with what only the first page needs."""

    request: SearchRequest
    includes: tuple[str, ...] = ()
    summary_count: bool = False
    total: str | None = None  # none | estimate | accurate
    cursor: str | None = None
    # The parameters honoured, as (name, value) for the self link, in the order given.
    used: list[tuple[str, str]] = field(default_factory=list)

    @property
    def count_only(self) -> bool:
        """``_summary=count`` or ``_count=0``: the total, no matches."""
        return self.summary_count or self.request.count == 0


def prefers_strict(prefer: str | None) -> bool:
    """``Prefer: handling=strict`` (RFC 7240; FHIR search "handling")."""
    if not prefer:
        return False
    tokens = {p.strip().replace(" ", "").lower() for p in prefer.split(",")}
    return "handling=strict" in tokens


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.replace("\\,", ",") for v in _SPLIT.split(value))


def _bad(parameter: str, message: str) -> FhirError:
    return FhirError(400, [Issue("error", "invalid", f"{parameter}: {message}", (parameter,))])


def parse_search(
    resource_type: str,
    items: Sequence[tuple[str, str]],
    *,
    supported: dict[str, set[str]],
    includes: Iterable[str],
    sources: Iterable[str],
    strict: bool,
    default_count: int,
    max_count: int,
) -> ParsedSearch:
    """``supported``: parameter name -> sources that take it (for this type)."""
    kinds = KINDS.get(resource_type, {})
    known_includes = set(includes)
    known_sources = set(sources)
    params: list[SearchParam] = []
    parsed = ParsedSearch(SearchRequest(resource_type))
    count = default_count
    narrowed: tuple[str, ...] | None = None
    unsupported: list[str] = []

    for key, raw in items:
        name, _, modifier = key.partition(":")
        if name in _CONTROL:
            if name == "_count":
                if not raw.isdigit():
                    raise _bad("_count", "must be a whole number from 0")
                count = min(int(raw), max_count)
                continue
            if name == "_summary":
                if raw == "count":
                    parsed.summary_count = True
                    parsed.used.append((key, raw))
                elif raw != "false":
                    unsupported.append(f"{key}={raw}")
                continue
            if name == "_total":
                if raw not in ("none", "estimate", "accurate"):
                    raise _bad("_total", "must be none, estimate or accurate")
                parsed.total = raw
                parsed.used.append((key, raw))
                continue
            if name == "_include":
                if modifier or raw not in known_includes:
                    unsupported.append(f"{key}={raw}")
                else:
                    parsed.includes += (raw,)
                    parsed.used.append((key, raw))
                continue
            if name == "_source":
                wanted = tuple(v for v in _split(raw) if v)
                narrowed = wanted if narrowed is None else tuple(s for s in narrowed if s in wanted)
                parsed.used.append((key, raw))
                continue
            if name == "_cursor":
                parsed.cursor = raw
            continue  # _format and _pretty are the route's business
        if name not in kinds or name not in supported:
            unsupported.append(key)
            continue
        kind = kinds[name][0]
        if (modifier or None) not in MODIFIERS[kind]:
            raise FhirError(
                400,
                [
                    Issue(
                        "error",
                        "not-supported",
                        f"{key}: modifier :{modifier} is not supported",
                        (key,),
                    )
                ],
            )
        values = _split(raw)
        if any(v == "" for v in values):
            raise _bad(key, "has an empty value")
        if kind == "date":
            params.append(_date_param(key, values))
        else:
            params.append(SearchParam(name, values, modifier or None))
        parsed.used.append((key, raw))

    if unsupported and strict:
        raise FhirError(
            400,
            [
                Issue(
                    "error",
                    "not-supported",
                    f"search parameter {u} is not supported",
                    (u.split("=")[0],),
                )
                for u in unsupported
            ],
        )
    if narrowed is not None:
        narrowed = tuple(s for s in narrowed if s in known_sources)
    parsed.request = SearchRequest(resource_type, tuple(params), count=count, sources=narrowed)
    return parsed


def _date_param(key: str, values: tuple[str, ...]) -> SearchParam:
    """One date parameter; ORed values must share their prefix (one comparator)."""
    prefixes: set[str] = set()
    bare: list[str] = []
    dates: list[FhirDate] = []
    for value in values:
        match = _PREFIXED.match(value)
        prefix = match.group(1) if match else "eq"
        value = value[2:] if match else value
        try:
            dates.append(parse_date(value))
        except ValueError:
            raise _bad(key, "a value is not a FHIR date or dateTime") from None
        prefixes.add(prefix)
        bare.append(value)
    if len(prefixes) > 1:
        raise FhirError(
            400,
            [Issue("error", "not-supported", f"{key}: ORed dates need one prefix", (key,))],
        )
    (prefix,) = prefixes
    assert prefix in DATE_PREFIXES
    return SearchParam(key, tuple(bare), None, prefix, tuple(dates))
