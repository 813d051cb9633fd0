"""Pure vendor <-> FHIR R4 mappings: no I/O, no clock, no globals, no ``adapter`` import.

Each vendor package (:mod:`mappings.leyr`, :mod:`mappings.nyra`) offers
``to_fhir_patient``, ``from_fhir_patient``, ``to_fhir_appointment`` and
``from_fhir_appointment``, each taking a record (or resource) and a context, and returning
a plain JSON-ready dict; and, one way only, its directory: ``to_fhir_practitioner``,
``to_fhir_schedule``, ``to_fhir_location``, ``to_fhir_organization`` (Leyr also
``to_fhir_device``, ``to_fhir_resource`` and ``to_fhir_healthcare_service``). Field
tables: ``mappings/README.md``.
"""

from typing import Any

from mappings import leyr, nyra
from mappings.common.codes import CodeTable
from mappings.common.context import LeyrContext, LeyrDirectory, NyraContext, SourceContext
from mappings.common.ids import GlobalId, decode_id, encode_id
from mappings.errors import (
    IdError,
    IdTooLong,
    InvalidResource,
    InvalidVendorRecord,
    LocalTimeError,
    MalformedId,
    MappingError,
    NonexistentLocalTime,
    UnrepresentableLocalTime,
)

__all__ = [
    "CodeTable",
    "GlobalId",
    "IdError",
    "IdTooLong",
    "InvalidResource",
    "InvalidVendorRecord",
    "LeyrContext",
    "LeyrDirectory",
    "LocalTimeError",
    "MalformedId",
    "MappingError",
    "NonexistentLocalTime",
    "NyraContext",
    "SourceContext",
    "UnrepresentableLocalTime",
    "concept_maps",
    "decode_id",
    "encode_id",
    "leyr",
    "nyra",
]


def concept_maps() -> list[dict[str, Any]]:
    """Every vendor code table as an R4 ConceptMap."""
    return [*leyr.concept_maps(), *nyra.concept_maps()]
