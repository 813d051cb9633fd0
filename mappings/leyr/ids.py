"""Leyr typed ids (``{type}:{value}``) as FHIR Identifiers, and back."""

from __future__ import annotations

from typing import Any

from mappings.common.fhir import EXT_VENDOR_ID_TYPE, extension_value, identifier_system
from mappings.common.national_ids import HSA_ID, NATIONAL_SYSTEMS, national_system
from mappings.leyr.codes import ID_TYPES

__all__ = [
    "external_identifier",
    "hsa_identifier",
    "is_external_identifier",
    "split_typed",
    "typed_value",
]


def split_typed(value: str) -> tuple[str | None, str]:
    """``("se_personal_number", "19121212...")`` for a typed id, ``(None, value)`` else."""
    kind, sep, rest = value.partition(":")
    if sep and kind in ID_TYPES and rest:
        return kind, rest
    return None, value


def external_identifier(value: str, source: str) -> dict[str, Any]:
    """Identifier for Leyr's ``external_id``: national system if the value earns one."""
    kind, bare = split_typed(value)
    system = national_system(bare, kind) or identifier_system(source, "external-id")
    ident: dict[str, Any] = {"use": "official", "system": system, "value": bare}
    if kind is not None:
        ident["extension"] = [{"url": EXT_VENDOR_ID_TYPE, "valueCode": kind}]
    return ident


def is_external_identifier(ident: dict[str, Any], source: str) -> bool:
    system = ident.get("system")
    return system in NATIONAL_SYSTEMS or system == identifier_system(source, "external-id")


def typed_value(ident: dict[str, Any]) -> str:
    """The Leyr spelling of an identifier made by :func:`external_identifier`."""
    kind = extension_value(ident, EXT_VENDOR_ID_TYPE, "valueCode")
    value = ident["value"]
    return f"{kind}:{value}" if kind else value


def hsa_identifier(resource_id: str) -> dict[str, Any] | None:
    """Identifier for a Leyr resource id given as a valid ``hsa_id:...``, else ``None``."""
    kind, bare = split_typed(resource_id)
    if kind == "hsa_id" and national_system(bare, kind) == HSA_ID:
        return {"system": HSA_ID, "value": bare}
    return None
