"""What the configured sources declare they can do, per resource type.

Each connector declares its :class:`Capabilities` (resource types, interactions, search
parameters); :class:`Declared` gathers them over every source once, minus the writes of
read-only sources. It is the single truth for what the facade accepts and what the
CapabilityStatement advertises: nothing here knows a connector, only its declaration.

The ``_include`` and ``_revinclude`` a search takes follow from the same declarations and
the server's own table (:mod:`adapter.fhir.includes`): an include when some source reads
a type it references, a revinclude when some source searches the referencing type by its
parameter. A connector need not declare them; ``ResourceCapability.includes`` is still
taken, and offers nothing the declarations do not already make work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from adapter.fhir.includes import advertised_includes, include_forms, revinclude_forms

__all__ = ["READS", "Capabilities", "Declared", "ResourceCapability"]

READS = frozenset({"read", "search-type"})


@dataclass(frozen=True)
class ResourceCapability:
    search_params: frozenset[str]
    interactions: frozenset[str] = READS
    # Not needed: what can be included follows from what the sources read (see above).
    includes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Capabilities:
    resources: Mapping[str, ResourceCapability] = field(default_factory=dict)


class Declared:
    """Every source's declaration, gathered once (the sources are fixed for a facade)."""

    def __init__(
        self,
        sources: Mapping[str, Capabilities],
        read_only: frozenset[str] = frozenset(),
    ) -> None:
        self.sources = dict(sources)
        self.read_only = read_only  # sources configured `read_only = true`: no writes
        self.types = sorted({t for c in self.sources.values() for t in c.resources})
        self._serving: dict[str, list[str]] = {}
        self._params: dict[str, dict[str, set[str]]] = {}
        self._routing: dict[
            tuple[str, frozenset[str], tuple[str, ...] | None, frozenset[str] | None],
            tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]],
        ] = {}
        for name, capabilities in self.sources.items():
            for resource_type, cap in capabilities.resources.items():
                self._serving.setdefault(resource_type, []).append(name)
                params = self._params.setdefault(resource_type, {})
                for param in cap.search_params:
                    params.setdefault(param, set()).add(name)
        self.readable = frozenset(t for t in self.types if "read" in self.interactions(t))
        self._includes = {t: include_forms(t, self.readable) for t in self.types}
        self._revincludes = {t: revinclude_forms(t, self.searchable) for t in self.types}

    def capability(self, source: str, resource_type: str) -> ResourceCapability | None:
        capabilities = self.sources.get(source)
        return capabilities.resources.get(resource_type) if capabilities else None

    def serving(self, resource_type: str) -> list[str]:
        return self._serving.get(resource_type, [])

    def supported_params(self, resource_type: str) -> dict[str, set[str]]:
        """Search parameter -> the sources that take it."""
        return self._params.get(resource_type, {})

    def searchable(self, resource_type: str, param: str) -> bool:
        """Does some source search ``resource_type`` by ``param``?"""
        return bool(self.supported_params(resource_type).get(param))

    def includes(self, resource_type: str) -> frozenset[str]:
        """The ``_include`` values a search of the type takes (typed forms too)."""
        return self._includes.get(resource_type, frozenset())

    def revincludes(self, resource_type: str) -> frozenset[str]:
        """The ``_revinclude`` values a search of the type takes (typed forms too)."""
        return self._revincludes.get(resource_type, frozenset())

    def advertised_includes(self, resource_type: str) -> list[str]:
        """The CapabilityStatement's ``searchInclude``: each include, and the typed forms
        of those that reference several types."""
        return advertised_includes(self.includes(resource_type))

    def advertised_revincludes(self, resource_type: str) -> list[str]:
        """The CapabilityStatement's ``searchRevInclude``."""
        return advertised_includes(self.revincludes(resource_type))

    def routing(
        self,
        resource_type: str,
        params: frozenset[str],
        narrowed: tuple[str, ...] | None,
        allowed: frozenset[str] | None,
    ) -> tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]:
        """The sources a search asks, in order, and those left out with the parameters
        they cannot take: for the type, narrowed by ``_source`` and by what the caller
        may see. Remembered per distinct question (the declarations are fixed)."""
        key = (resource_type, params, narrowed, allowed)
        found = self._routing.get(key)
        if found is None:
            asked: list[str] = []
            left_out: list[tuple[str, tuple[str, ...]]] = []
            for name in self.serving(resource_type):
                if (narrowed is not None and name not in narrowed) or (
                    allowed is not None and name not in allowed
                ):
                    continue
                taken = self.sources[name].resources[resource_type].search_params
                missing = tuple(sorted(params - taken))
                if missing:
                    left_out.append((name, missing))
                else:
                    asked.append(name)
            found = (tuple(asked), tuple(left_out))
            if len(self._routing) >= 1024:
                self._routing.clear()
            self._routing[key] = found
        return found

    def interactions(self, resource_type: str) -> set[str]:
        """What some source can do with this type (writes only from writable sources)."""
        out: set[str] = set()
        for name in self.serving(resource_type):
            declared = set(self.sources[name].resources[resource_type].interactions)
            if name in self.read_only:
                declared &= READS
            out |= declared
        return out

    def writable(self, resource_type: str, interaction: str = "create") -> list[str]:
        """The sources that take ``interaction`` (create, update) of this type."""
        return [
            n
            for n in self.serving(resource_type)
            if n not in self.read_only
            and interaction in self.sources[n].resources[resource_type].interactions
        ]
