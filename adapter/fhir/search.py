"""A FHIR search, parsed once into a typed request (https://hl7.org/fhir/R4/search.html).

Routes build a :class:`SearchRequest`; connectors translate it into vendor parameters or
say plainly that they cannot (:class:`UnsupportedParameter`). Nothing here knows a vendor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DATE_PREFIXES", "SearchParam", "SearchRequest", "UnsupportedParameter"]

DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One ``name[:modifier]=v1,v2`` of a search: the values are ORed.

    ``prefix`` is the comparator of a date parameter (``eq`` when none was given); other
    kinds of parameter leave it ``None``. Several params of the same name are ANDed.
    """

    name: str
    values: tuple[str, ...]
    modifier: str | None = None
    prefix: str | None = None

    def __str__(self) -> str:
        head = f"{self.name}:{self.modifier}" if self.modifier else self.name
        prefix = "" if self.prefix in (None, "eq") else self.prefix
        return f"{head}={prefix}{','.join(self.values)}"


@dataclass(frozen=True, slots=True)
class SearchRequest:
    resource_type: str
    params: tuple[SearchParam, ...] = ()
    count: int = 20
    sources: tuple[str, ...] | None = field(default=None)  # `_source`, when narrowed

    def named(self, name: str) -> tuple[SearchParam, ...]:
        return tuple(p for p in self.params if p.name == name)


class UnsupportedParameter(Exception):
    """A connector cannot honour a search parameter (or this use of it).

    ``parameter`` is the parameter as the client wrote it; the facade answers 400 with an
    OperationOutcome whose expression names it.
    """

    def __init__(self, parameter: str, reason: str) -> None:
        self.parameter = parameter
        self.reason = reason
        super().__init__(f"search parameter {parameter!r}: {reason}")
