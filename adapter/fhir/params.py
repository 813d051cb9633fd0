"""HTTP query parameters -> a typed search (https://hl7.org/fhir/R4/search.html).

Search parameters are checked against what FHIR defines for the type and what the
configured sources can do. ``_lastUpdated``, ``_sort`` and ``_elements`` are the
facade's own (:mod:`adapter.fhir.shaping`): a ``_sort`` key or ``_elements`` name the type
does not have is left out like an unknown parameter. Unknown or unsupported ones are left
out of the search and of the ``self`` link by
default, each named in an informational issue of the first page's outcome entry
(:attr:`ParsedSearch.ignored`); with ``Prefer: handling=strict`` they are a 400 naming the
parameter. So are ``_include`` and ``_revinclude`` values the search does not take
(:mod:`adapter.fhir.includes`), and ``_include:iterate``. A malformed value of a known
parameter (a date that is no date, a ``_count`` that is no number) and an unknown
modifier are always a 400: ignoring them would change what the search means.

A standard R4 search parameter of a served type whose element no source fills
(:data:`UNFILLED`, such as Device ``patient``: the Devices the vendors keep are equipment
and rooms, which belong to no patient) is neither: every resource lacks the element, so
the search matches nothing (:attr:`ParsedSearch.nothing` says why, as information on the
empty page). Ignoring it would answer every resource of the type to a search that asked
for one patient's.

What a search may hold is bounded, each bound a 400 naming the parameter that crosses it:
connectors filter candidate records in memory (:mod:`adapter.fhir.match`), doing work for
every record that grows with the search's values, all of it without giving the event loop
back. The bounds keep that work per record small whatever is sent (see
:data:`MAX_PARAMETERS` and below).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from adapter.fhir.dates import FhirDate, parse_date
from adapter.fhir.match import KINDS, MODIFIERS
from adapter.fhir.outcome import FhirError, Issue
from adapter.fhir.search import DATE_PREFIXES, SearchParam, SearchRequest, Shaping
from adapter.fhir.shaping import element_names, sort_keys
from adapter.fhir.strings import search_text

__all__ = [
    "MAX_NAME",
    "MAX_PARAMETERS",
    "MAX_SEARCH_CHARACTERS",
    "MAX_TEXT_CHARACTERS",
    "MAX_VALUE",
    "MAX_VALUES",
    "UNFILLED",
    "ParsedSearch",
    "parse_search",
    "preferences",
    "prefers_strict",
]

MAX_PARAMETERS = 100  # query items in a request, whatever their names
MAX_NAME = 100  # characters of a parameter's name (with its modifier)
MAX_VALUE = 1000  # characters of one value (``_cursor``, signed and checked, excepted)
MAX_VALUES = 100  # values of the search parameters together, ORed values each counted
MAX_SEARCH_CHARACTERS = 2000  # characters of the search parameters' values together
# Characters of the text parameters' values (name, family, given) together, as matching
# sees them: case- and accent-folded after compatibility decomposition, which makes one
# character up to 18. Each candidate record folds them again, the costliest per character.
MAX_TEXT_CHARACTERS = 500
_COUNT_DIGITS = 6

_CONTROL = frozenset(
    {
        "_count",
        "_summary",
        "_include",
        "_revinclude",
        "_total",
        "_source",
        "_format",
        "_cursor",
        "_pretty",
    }
)
# The facade's own: what it does to each page (:mod:`adapter.fhir.shaping`).
_SHAPING = frozenset({"_lastUpdated", "_sort", "_elements"})
_SPLIT = re.compile(r"(?<!\\),")
# Standard R4 search parameters (https://hl7.org/fhir/R4/searchparameter-registry.html)
# of served types whose element no source fills: type -> parameter -> the element.
# Leyr's Devices are a care unit's equipment and rooms (mappings/leyr/directory.py), Nyra
# has none; neither vendor ties a device to a patient.
UNFILLED: dict[str, dict[str, str]] = {
    "Device": {"patient": "Device.patient"},
}
_PREFIXED = re.compile(r"(eq|ne|gt|lt|ge|le|sa|eb)(?=[0-9])")
# ASCII digits only: ``str.isdigit`` takes "²" and "①", which ``int`` then refuses; and a
# few of them, so that no count is worth converting at length.
_COUNT = re.compile(rf"[0-9]{{1,{_COUNT_DIGITS}}}")


@dataclass
class ParsedSearch:
    """A search request as the client asked it, with what only the first page needs."""

    request: SearchRequest
    includes: tuple[str, ...] = ()
    revincludes: tuple[str, ...] = ()
    summary_count: bool = False
    total: str | None = None  # none | estimate | accurate
    cursor: str | None = None
    # The parameters honoured, as (name, value) for the self link, in the order given.
    used: list[tuple[str, str]] = field(default_factory=list)
    count_asked: bool = False  # whether ``_count`` was given (else the default is used)
    # What was left out (lenient handling), said on the first page as information.
    ignored: list[Issue] = field(default_factory=list)
    shaping: Shaping = field(default_factory=Shaping)  # _lastUpdated, _sort, _elements
    # A parameter no resource can meet (:data:`UNFILLED`): the search matches nothing.
    nothing: Issue | None = None

    @property
    def count_only(self) -> bool:
        """``_summary=count`` or ``_count=0``: the total, no matches."""
        return self.summary_count or self.request.count == 0


def preferences(prefer: str | None) -> frozenset[str]:
    """The preferences of a ``Prefer`` header (RFC 7240), each lower-case without spaces
    (``respond-async``, ``handling=lenient``, ``return=minimal``). Clients separate them
    with commas, or with semicolons as if each were a parameter of the first
    (``respond-async; handling=lenient``): both are read as a list."""
    if not prefer:
        return frozenset()
    return frozenset(
        t for p in re.split(r"[,;]", prefer) if (t := p.strip().replace(" ", "").lower())
    )


def prefers_strict(prefer: str | None) -> bool:
    """``Prefer: handling=strict`` (RFC 7240; FHIR search "handling")."""
    return "handling=strict" in preferences(prefer)


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.replace("\\,", ",") for v in _SPLIT.split(value))


def _bad(parameter: str, message: str, code: str = "invalid") -> FhirError:
    """A 400 about ``parameter`` as the client named it (an empty or overlong name is
    quoted shortened, and is no expression)."""
    named = 0 < len(parameter) <= MAX_NAME
    expression = (parameter,) if named else ()
    return FhirError(400, [Issue("error", code, f"{_shown(parameter)}: {message}", expression)])


def _shown(key: str) -> str:
    """A parameter name as it may be quoted back: never empty, never past the bound."""
    if not key:
        return "(no name)"
    return key if len(key) <= MAX_NAME else key[:40] + "..."


def _check_size(items: Sequence[tuple[str, str]], kinds: dict[str, str]) -> None:
    """Refuse a request over the bounds (the module's docstring says why)."""
    if len(items) > MAX_PARAMETERS:
        key = items[MAX_PARAMETERS][0]
        raise _bad(key, f"a search holds at most {MAX_PARAMETERS} parameters", "too-costly")
    values = characters = text = 0
    for key, raw in items:
        if len(key) > MAX_NAME:
            raise _bad(key, f"a parameter name is over {MAX_NAME} characters", "too-long")
        name, _, modifier = key.partition(":")
        if name == "_cursor":
            continue
        if name in _CONTROL or name not in kinds:
            if len(raw) > MAX_VALUE:
                raise _bad(key, f"a value is over {MAX_VALUE} characters", "too-long")
            continue
        for value in _split(raw):
            if len(value) > MAX_VALUE:
                raise _bad(key, f"a value is over {MAX_VALUE} characters", "too-long")
            values += 1
            characters += len(value)
            if kinds[name] == "string" and modifier != "exact":
                text += len(unicodedata.normalize("NFKD", value))
        if values > MAX_VALUES:
            raise _bad(key, f"a search holds at most {MAX_VALUES} values in all", "too-costly")
        if characters > MAX_SEARCH_CHARACTERS:
            raise _bad(
                key,
                f"a search's values hold at most {MAX_SEARCH_CHARACTERS} characters in all",
                "too-costly",
            )
        if text > MAX_TEXT_CHARACTERS:
            raise _bad(
                key,
                f"text values (name, family, given) hold at most {MAX_TEXT_CHARACTERS} "
                "characters in all, counted case- and accent-folded",
                "too-costly",
            )


def parse_search(
    resource_type: str,
    items: Sequence[tuple[str, str]],
    *,
    supported: dict[str, set[str]],
    includes: Collection[str],
    sources: Iterable[str],
    strict: bool,
    default_count: int,
    max_count: int,
    revincludes: Collection[str] = frozenset(),
) -> ParsedSearch:
    """``supported``: parameter name -> sources that take it (for this type);
    ``includes``, ``revincludes``: the ``_include`` and ``_revinclude`` values it takes."""
    kinds = KINDS.get(resource_type, {})
    _check_size(items, {name: kind for name, (kind, _) in kinds.items()})
    listed = tuple(sources)
    known_sources = set(listed)
    params: list[SearchParam] = []
    parsed = ParsedSearch(SearchRequest(resource_type))
    count = default_count
    narrowed: tuple[str, ...] | None = None
    unsupported: list[Issue] = []
    updated: list[SearchParam] = []
    sort: list[tuple[str, bool]] = []
    elements: list[str] = []

    for key, raw in items:
        name, _, modifier = key.partition(":")
        if name in _SHAPING:
            if modifier:
                raise FhirError(
                    400,
                    [Issue("error", "not-supported", f"{_shown(key)}: takes no modifier", (key,))],
                )
            values = _split(raw)
            if any(v == "" for v in values):
                raise _bad(key, "has an empty value")
            if name == "_lastUpdated":
                updated.append(_date_param(key, values))
                parsed.used.append((key, raw))
                continue
            allowed: Collection[str] = (
                sort_keys(resource_type) if name == "_sort" else element_names(resource_type)
            )
            taken: list[str] = []
            for value in values:
                bare = value[1:] if name == "_sort" and value.startswith("-") else value
                if bare not in allowed:
                    what = "sort key" if name == "_sort" else "element"
                    unsupported.append(
                        Issue(
                            "error",
                            "not-supported",
                            f"{key}: {resource_type} has no {what} {_shown(bare)} "
                            f"(it takes {', '.join(sorted(allowed))})",
                            (key,),
                        )
                    )
                    continue
                if name == "_sort" and all(bare != k for k, _ in sort):
                    sort.append((bare, value.startswith("-")))
                    taken.append(value)
                elif name == "_elements" and bare not in elements:
                    elements.append(bare)
                    taken.append(value)
            if taken:
                parsed.used.append((key, ",".join(taken)))
            continue
        if name in _CONTROL:
            if name == "_count":
                if not _COUNT.fullmatch(raw):
                    raise _bad(
                        "_count",
                        f"must be a whole number from 0, of at most {_COUNT_DIGITS} digits",
                    )
                count = min(int(raw), max_count)
                parsed.count_asked = True
                continue
            if name == "_summary":
                if raw == "count":
                    parsed.summary_count = True
                    parsed.used.append((key, raw))
                elif raw != "false":
                    unsupported.append(_unsupported(key, f"{key}={raw}"))
                continue
            if name == "_total":
                if raw not in ("none", "estimate", "accurate"):
                    raise _bad("_total", "must be none, estimate or accurate")
                parsed.total = raw
                parsed.used.append((key, raw))
                continue
            if name in ("_include", "_revinclude"):
                known = includes if name == "_include" else revincludes
                if modifier:
                    unsupported.append(
                        Issue(
                            "error",
                            "not-supported",
                            f"{_shown(key)} is not supported: only the resources the "
                            "matches reference themselves are included",
                            (key,),
                        )
                    )
                elif raw not in known:
                    unsupported.append(_unsupported(key, f"{key}={raw}", known))
                elif name == "_include" and raw not in parsed.includes:
                    parsed.includes += (raw,)
                    parsed.used.append((key, raw))
                elif name == "_revinclude" and raw not in parsed.revincludes:
                    parsed.revincludes += (raw,)
                    parsed.used.append((key, raw))
                continue
            if name == "_source":
                wanted = _sources(key, modifier, raw, listed)
                narrowed = wanted if narrowed is None else tuple(s for s in narrowed if s in wanted)
                parsed.used.append((key, raw))
                continue
            if name == "_cursor":
                parsed.cursor = raw
            continue  # _format and _pretty are the route's business
        if name not in kinds and name in UNFILLED.get(resource_type, {}):
            element = UNFILLED[resource_type][name]
            parsed.nothing = Issue(
                "information",
                "not-found",
                f"search parameter {key}: no source fills {element}, so no {resource_type} matches",
                (key,),
            )
            parsed.used.append((key, raw))
            continue
        if name not in kinds or name not in supported:
            unsupported.append(_unsupported(key, key))
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
        if kind == "string" and modifier != "exact" and not all(map(search_text, values)):
            raise _bad(
                key, "a value is only punctuation and whitespace, which a string search ignores"
            )
        if kind == "date":
            params.append(_date_param(key, values))
        else:
            params.append(SearchParam(name, values, modifier or None))
        parsed.used.append((key, raw))

    if unsupported and strict:
        raise FhirError(400, unsupported)
    parsed.ignored = [
        Issue(
            "information",
            "not-supported",
            f"{i.diagnostics}: it was ignored (Prefer: handling=strict makes it a 400)",
            i.expression,
        )
        for i in unsupported
    ]
    if narrowed is not None:
        narrowed = tuple(s for s in narrowed if s in known_sources)
    parsed.request = SearchRequest(resource_type, tuple(params), count=count, sources=narrowed)
    parsed.shaping = Shaping(tuple(updated), tuple(sort), tuple(elements))
    return parsed


def _sources(key: str, modifier: str, raw: str, known: Sequence[str]) -> tuple[str, ...]:
    """The sources ``_source`` names: each value exactly, or with ``:below`` every known
    source whose name begins with a value (R4's ``:below`` on a uri)."""
    values = tuple(v for v in _split(raw) if v)
    if not modifier:
        return values
    if modifier != "below":
        raise FhirError(
            400,
            [
                Issue(
                    "error",
                    "not-supported",
                    f"{_shown(key)}: modifier :{modifier} is not supported (_source takes :below)",
                    (key,),
                )
            ],
        )
    return tuple(s for s in known if any(s.startswith(v) for v in values))


def _unsupported(key: str, what: str, choices: Collection[str] | None = None) -> Issue:
    """The issue of a parameter (or value) that is not supported, as strict handling
    refuses it; ``choices``: the values that are, named when given."""
    said = f"search parameter {what or '(no name)'} is not supported"
    if choices is not None:
        said += f"; this search takes {', '.join(sorted(choices)) or 'none'}"
    return Issue("error", "not-supported", said, (key,) if key else ())


def _date_param(key: str, values: tuple[str, ...]) -> SearchParam:
    """One date parameter: its values ORed, each with its own prefix (``eq`` when none)."""
    prefixes: list[str] = []
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
        assert prefix in DATE_PREFIXES
        prefixes.append(prefix)
        bare.append(value)
    if len(set(prefixes)) == 1:
        return SearchParam(key, tuple(bare), None, prefixes[0], tuple(dates))
    return SearchParam(key, tuple(bare), None, None, tuple(dates), tuple(prefixes))
