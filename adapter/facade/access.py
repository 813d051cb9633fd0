"""Who asks, and what may leave the service for them.

A :class:`Caller` is an API client as the gate sees it: its name, the sources it may use
and the resource types its token may read. Every road out of the service (a search's
matches and includes, a read, ``$everything``, an export line, a notification, a Group)
asks the same two questions of it: :meth:`Caller.sees` (a source) and
:meth:`Caller.may_read` (a type). Resources of a type the caller may not read are left
out where they would have been included, and the answer says so
(:func:`suppressed`): never an error, never silence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from typing import Any

from adapter.fhir.outcome import Issue
from mappings import MappingError, decode_id

__all__ = ["Caller", "readable_types", "suppressed"]


@dataclass(frozen=True)
class Caller:
    """Who asks: the API client's name (None under open access), the sources it may use
    and the resource types it may read (None: every source, every type)."""

    name: str | None = None
    sources: frozenset[str] | None = None
    types: frozenset[str] | None = None

    def sees(self, source: str) -> bool:
        return self.sources is None or source in self.sources

    def may_read(self, resource_type: str) -> bool:
        return self.types is None or resource_type in self.types

    def may_see(self, resource: Mapping[str, Any]) -> bool:
        """Whether ``resource`` may leave the service for this caller: a type it may
        read, from a source it may use (``meta.source``, else the one its id names)."""
        if not self.may_read(str(resource.get("resourceType"))):
            return False
        if self.sources is None:
            return True
        source = (resource.get("meta") or {}).get("source")
        if source is None:
            try:
                source = decode_id(str(resource.get("id"))).source
            except MappingError:
                return False
        return source in self.sources

    def readable(self, types: Iterable[str]) -> frozenset[str]:
        """Those of ``types`` the caller may read."""
        return frozenset(t for t in types if self.may_read(t))

    def admit(self, resources: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        """What of ``resources`` may leave for this caller, and the types left out (in the
        order first met)."""
        kept: list[dict[str, Any]] = []
        left_out: dict[str, None] = {}
        for resource in resources:
            if self.may_see(resource):
                kept.append(resource)
            else:
                left_out[str(resource.get("resourceType"))] = None
        return kept, list(left_out)


def readable_types(grant: Mapping[str, Set[str]] | None) -> frozenset[str] | None:
    """The resource types a SMART grant (type or ``*`` -> letters of ``cruds``) may read;
    None for every type (no grant: open access, or a wildcard read)."""
    if grant is None or "r" in grant.get("*", ()):
        return None
    return frozenset(t for t, letters in grant.items() if "r" in letters and t != "*")


def suppressed(resource_type: str, where: str) -> Issue:
    """The information that ``where`` (``_include``, ``_revinclude``, ``$everything``)
    left out the resources of a type the caller's token may not read."""
    return Issue(
        "information",
        "suppressed",
        f"{resource_type} resources are left out of {where}: the token's scopes do not "
        f"allow read of {resource_type}",
        (where,),
    )
