"""The ``_include`` and ``_revinclude`` this server knows (https://hl7.org/fhir/R4/search.html#include).

An include names the references a searched resource holds, by the search parameter that
searches them (``Appointment:patient``: the Patient an Appointment's participant names).
The R4 typed form ``Appointment:actor:Practitioner`` keeps only the references to one of
its types. A search offers an include when some configured source can read a type it
references; it offers a ``_revinclude`` (``Appointment:patient`` on a Patient search: the
Appointments referencing each match) when a source can search the referencing type by that
parameter. Which ones that is follows from what the sources declare
(:class:`adapter.fhir.declared.Declared`); this module is only the table and its rules,
pure. ``_include:iterate`` is not supported.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from adapter.fhir.match import actor_references, references

__all__ = [
    "INCLUDES",
    "Include",
    "advertised_includes",
    "include_forms",
    "included",
    "referenced",
    "relative",
    "reverse_include",
    "revinclude_forms",
]

Resource = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Include:
    """``searched:param``: the references ``param`` searches in a ``searched`` resource,
    to any of ``targets``. ``reverse``: also offered as a ``_revinclude`` on searches of
    its targets (a search of ``searched`` by ``param``)."""

    searched: str
    param: str
    targets: tuple[str, ...]
    extract: Callable[[Resource], Iterable[str]] = field(compare=False, repr=False)
    reverse: bool = False

    @property
    def name(self) -> str:
        return f"{self.searched}:{self.param}"


def _actors(r: Resource) -> Iterator[str]:
    return actor_references(r)


def _schedule(r: Resource) -> Iterator[str]:
    return references(r, "schedule")


def _schedule_actors(r: Resource) -> Iterator[str]:
    return references(r, "actor")


INCLUDES: dict[str, Include] = {
    i.name: i
    for i in (
        Include("Appointment", "patient", ("Patient",), _actors, reverse=True),
        Include("Appointment", "practitioner", ("Practitioner",), _actors, reverse=True),
        Include("Appointment", "location", ("Location",), _actors),
        Include("Appointment", "actor", ("Patient", "Practitioner", "Device", "Location"), _actors),
        Include("Slot", "schedule", ("Schedule",), _schedule),
        Include("Schedule", "actor", ("Practitioner", "Device"), _schedule_actors),
    )
}


def included(value: str) -> tuple[Include, tuple[str, ...]] | None:
    """An ``_include`` value as the include it names and the types it keeps (one, in the
    typed form); None for one this server does not know."""
    searched, _, rest = value.partition(":")
    param, _, target = rest.partition(":")
    include = INCLUDES.get(f"{searched}:{param}")
    if include is None:
        return None
    if not target:
        return include, include.targets
    return (include, (target,)) if target in include.targets else None


def reverse_include(value: str, searched: str) -> Include | None:
    """A ``_revinclude`` value on a search of ``searched``: the include whose references
    it follows back (the typed form may name ``searched`` only); None when unknown."""
    found = included(value)
    if found is None:
        return None
    include, targets = found
    return include if include.reverse and searched in targets else None


def include_forms(searched: str, readable: Container[str]) -> frozenset[str]:
    """Every ``_include`` value a search of ``searched`` takes: the includes with a
    readable target, untyped and typed with each readable target."""
    out: set[str] = set()
    for include in INCLUDES.values():
        if include.searched != searched:
            continue
        kept = [t for t in include.targets if t in readable]
        if kept:
            out.add(include.name)
            out.update(f"{include.name}:{t}" for t in kept)
    return frozenset(out)


def advertised_includes(forms: Iterable[str]) -> list[str]:
    """What a CapabilityStatement lists of ``forms``: the typed forms only of includes
    that reference more than one type (``Appointment:patient:Patient`` says nothing
    ``Appointment:patient`` does not)."""
    listed = []
    for form in forms:
        found = included(form)
        if found is not None and (form == found[0].name or len(found[0].targets) > 1):
            listed.append(form)
    return sorted(listed)


def revinclude_forms(searched: str, searchable: Callable[[str, str], bool]) -> frozenset[str]:
    """The ``_revinclude`` values a search of ``searched`` takes, untyped and typed with
    ``searched``; ``searchable(type, param)``: some source searches ``type`` by ``param``."""
    out: set[str] = set()
    for include in INCLUDES.values():
        if (
            include.reverse
            and searched in include.targets
            and searchable(include.searched, include.param)
        ):
            out.update((include.name, f"{include.name}:{searched}"))
    return frozenset(out)


def relative(reference: str) -> tuple[str, str] | None:
    """``Type/id`` (or ``Type/id/_history/v``) as its type and id; None for any other
    reference (absolute, contained, logical): the server reads only its own."""
    parts = reference.split("/")
    if len(parts) == 4 and parts[2] == "_history":
        parts = parts[:2]
    if len(parts) != 2 or not all(parts) or ":" in parts[0] or parts[0].startswith("#"):
        return None
    return parts[0], parts[1]


def referenced(
    resources: Iterable[Resource],
    values: Iterable[str],
    readable: Container[str],
    skip: Container[str] = frozenset(),
) -> dict[str, tuple[str, str]]:
    """The resources ``values`` (``_include`` values) ask for, each once, in the order
    first met: ``Type/id`` -> (type, id). Only of readable types, and none in ``skip``
    (``Type/id`` of what the page already holds)."""
    wanted = [found for v in values if (found := included(v)) is not None]
    out: dict[str, tuple[str, str]] = {}
    for resource in resources:
        for include, targets in wanted:
            if resource.get("resourceType") != include.searched:
                continue
            for ref in include.extract(resource):
                parsed = relative(ref)
                if parsed is None or parsed[0] not in targets or parsed[0] not in readable:
                    continue
                key = f"{parsed[0]}/{parsed[1]}"
                if key not in skip and key not in out:
                    out[key] = parsed
    return out
