"""``_elements`` and ``patient`` of a bulk export (Bulk Data Access IG v2.0.0).

``_elements``: comma-joined (or repeated) element names, each ``Type.element`` or a bare
``element`` that holds for every exported type that has it. A type with named elements is
written with only those, the elements FHIR requires of it, ``id`` and ``meta``, and
``meta.tag`` SUBSETTED (:func:`adapter.fhir.shaping.subset`, as a search's ``_elements``);
a type none of them names is written whole. A name no exported type has, or a type not
exported, is a 400 naming ``_elements``.

``patient``: the Patients a Patient or Group export is narrowed to, as references. Each is
read through the gate for the asking client (a Patient it may not see, or that does not
exist, is a 400 naming ``patient``) and, for a Group, must be one of its source's. The
export then keeps those Patients, the Appointments that name one of them, and the
directory resources those reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from adapter.facade import Caller, Facade
from adapter.fhir.match import actor_references
from adapter.fhir.outcome import FhirError, Issue
from adapter.fhir.shaping import element_names, subset

__all__ = ["MAX_PATIENTS", "checked_patients", "narrowed", "parse_elements", "subset_all"]

MAX_PATIENTS = 1000  # each is read at kick-off


def _refused(parameter: str, message: str) -> FhirError:
    return FhirError(400, [Issue("error", "invalid", message, (parameter,))])


def parse_elements(values: Iterable[str], types: Sequence[str]) -> dict[str, list[str]]:
    """Each exported type's elements (only the types some name applies to)."""
    names = [n.strip() for value in values for n in value.split(",") if n.strip()]
    out: dict[str, list[str]] = {}
    for name in names:
        kind, dot, element = name.rpartition(".")
        if dot:
            if kind not in types:
                raise _refused("_elements", f"_elements {name}: {kind} is not exported")
            if element not in element_names(kind):
                raise _refused("_elements", f"_elements {name}: {kind} has no element {element}")
            applies = [kind]
        else:
            applies = [t for t in types if element in element_names(t)]
            if not applies:
                raise _refused(
                    "_elements", f"_elements {name}: no exported type has an element {element}"
                )
        for resource_type in applies:
            held = out.setdefault(resource_type, [])
            if element not in held:
                held.append(element)
    return out


def subset_all(
    elements: Mapping[str, Sequence[str]], resource_type: str, resources: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``resources`` with only their type's elements, tagged SUBSETTED (all of them whole
    when the type has none)."""
    wanted = elements.get(resource_type)
    if not wanted:
        return resources
    return [subset(resource_type, r, wanted) for r in resources]


async def checked_patients(
    gate: Facade, references: Sequence[str], caller: Caller, group: str | None
) -> list[str]:
    """The FHIR ids of the ``patient`` references, each read through the gate for
    ``caller``; a :class:`FhirError` (400, naming ``patient``) for one that is not a
    Patient the caller may read, or not of ``group``'s source."""
    if len(references) > MAX_PATIENTS:
        raise _refused("patient", f"patient names at most {MAX_PATIENTS} Patients")
    ids: list[str] = []
    for reference in references:
        kind, _, fhir_id = reference.rpartition("/")
        if kind.rpartition("/")[2] != "Patient" or not fhir_id:
            raise _refused("patient", f"patient {reference}: not a reference to a Patient")
        try:
            found = await gate.read("Patient", fhir_id, caller)
        except FhirError as exc:
            if exc.status in (401, 403):
                raise
            raise _refused("patient", f"patient {reference}: no such Patient") from None
        source = (found.get("meta") or {}).get("source")
        if group is not None and source != group:
            raise _refused("patient", f"patient {reference}: not a member of Group/{group}")
        if fhir_id not in ids:
            ids.append(fhir_id)
    return ids


def narrowed(
    patients: Sequence[str], resource_type: str, resources: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Of the compartment's ``resources``, those of ``patients`` (all when none is named)."""
    if not patients:
        return resources
    wanted = set(patients)
    if resource_type == "Patient":
        return [r for r in resources if r.get("id") in wanted]
    if resource_type == "Appointment":
        return [
            r
            for r in resources
            if any(ref.rpartition("/")[2] in wanted for ref in actor_references(r, "Patient"))
        ]
    return resources
