"""A FHIR search, parsed once into a typed request (https://hl7.org/fhir/R4/search.html).

:func:`adapter.fhir.params.parse_search` builds a :class:`SearchRequest`; connectors
translate it into vendor parameters or say plainly that they cannot
(:class:`UnsupportedParameter`). A :class:`SearchState` is a search with its position
across sources: what a paging cursor carries (:mod:`adapter.fhir.cursor`). Nothing here
knows a vendor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapter.fhir.dates import FhirDate

__all__ = [
    "DATE_PREFIXES",
    "Position",
    "SearchParam",
    "SearchRequest",
    "SearchState",
    "Shaping",
    "UnsupportedParameter",
]

DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One ``name[:modifier]=v1,v2`` of a search: the values are ORed.

    ``prefix`` is the comparator of a date parameter whose values share one (``eq`` when
    none was given); other kinds of parameter leave it ``None``. ORed dates with
    different comparators (``date=lt2026-01-01,ge2027-11-01``) have one each, in
    ``prefixes``, and no ``prefix``. Several params of the same name are ANDed. ``dates``
    are a date parameter's values, parsed once when the search was parsed.
    """

    name: str
    values: tuple[str, ...]
    modifier: str | None = None
    prefix: str | None = None
    dates: tuple[FhirDate, ...] = field(default=(), compare=False, repr=False)
    prefixes: tuple[str, ...] = ()

    @property
    def is_date(self) -> bool:
        return self.prefix is not None or bool(self.prefixes)

    def value_prefixes(self) -> tuple[str, ...]:
        """Each value's comparator (a date parameter's; ``eq`` where none was given)."""
        return self.prefixes or (self.prefix or "eq",) * len(self.values)

    def __str__(self) -> str:
        head = f"{self.name}:{self.modifier}" if self.modifier else self.name
        if not self.is_date:
            return f"{head}={','.join(self.values)}"
        written = (
            ("" if p == "eq" else p) + v
            for p, v in zip(self.value_prefixes(), self.values, strict=True)
        )
        return f"{head}={','.join(written)}"


@dataclass(frozen=True, slots=True)
class SearchRequest:
    resource_type: str
    params: tuple[SearchParam, ...] = ()
    count: int = 20
    sources: tuple[str, ...] | None = field(default=None)  # `_source`, when narrowed

    def named(self, name: str) -> tuple[SearchParam, ...]:
        return tuple(p for p in self.params if p.name == name)

    def with_count(self, count: int) -> SearchRequest:
        # The constructor, not dataclasses.replace: this is on every search's hot path.
        return SearchRequest(self.resource_type, self.params, count, self.sources)


class UnsupportedParameter(Exception):
    """A connector cannot honour a search parameter (or this use of it).

    ``parameter`` is the parameter as the client wrote it; the facade answers 400 with an
    OperationOutcome whose expression names it.
    """

    def __init__(self, parameter: str, reason: str) -> None:
        self.parameter = parameter
        self.reason = reason
        super().__init__(f"search parameter {parameter!r}: {reason}")


@dataclass(frozen=True, slots=True)
class Shaping:
    """What the facade does to each page itself (:mod:`adapter.fhir.shaping`):
    ``updated``, the ``_lastUpdated`` parameters (ANDed); ``sort``, the ``_sort`` keys as
    (key, descending), the first the most significant; ``elements``, the element names
    ``_elements`` keeps (none: the whole resource)."""

    updated: tuple[SearchParam, ...] = ()
    sort: tuple[tuple[str, bool], ...] = ()
    elements: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.updated or self.sort or self.elements)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a search stands: the part of its state that moves from page to page."""

    at: Mapping[str, str] = field(default_factory=dict)  # source -> its connector's cursor
    done: frozenset[str] = frozenset()  # sources with nothing more to give
    total: int | None = None  # the number of matches, once known exactly
    first: bool = True  # no page has been served yet


@dataclass(frozen=True, slots=True)
class SearchState:
    """A search and where it stands: parsed once, from the request or from a cursor.

    ``order`` are the sources asked, in turn; ``shares`` their part of a page (aligned
    with ``order``); ``lanes`` how many are asked at once (all of them, or one after
    another when ``_count`` is smaller than their number). ``skipped`` counts sources left
    out because they cannot take a parameter (a total is then not exact). ``previous`` is
    the position one page back, for the Bundle's ``previous`` link. ``includes`` and
    ``revincludes`` are the ``_include`` and ``_revinclude`` values: every page has them.
    """

    request: SearchRequest
    order: tuple[str, ...]
    shares: tuple[int, ...]
    lanes: int
    includes: tuple[str, ...] = ()
    revincludes: tuple[str, ...] = ()
    skipped: int = 0
    client: str | None = None
    position: Position = field(default_factory=Position)
    previous: Position | None = None
    shaping: Shaping = field(default_factory=Shaping)

    @property
    def resource_type(self) -> str:
        return self.request.resource_type

    def share(self, source: str) -> int:
        return self.shares[self.order.index(source)]

    def pending(self) -> tuple[str, ...]:
        return tuple(n for n in self.order if n not in self.position.done)

    def moved_to(self, position: Position) -> SearchState:
        """The state of the next page: ``position`` ahead, this one kept as previous."""
        return SearchState(
            self.request,
            self.order,
            self.shares,
            self.lanes,
            self.includes,
            self.revincludes,
            self.skipped,
            self.client,
            position,
            self.position,
            self.shaping,
        )

    def moved_back(self) -> SearchState | None:
        """The state of the page before, when known (one page back only)."""
        if self.previous is None:
            return None
        return replace(self, position=self.previous, previous=None)
