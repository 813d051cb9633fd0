"""What the CapabilityStatement says of bulk data export (Bulk Data Access IG v2.0.0)."""

from __future__ import annotations

from typing import Any

__all__ = ["EXPORT_DEFINITION", "advertise_export"]

EXPORT_DEFINITION = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
PATIENT_EXPORT = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"
GROUP_EXPORT = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"


def advertise_export(rest: dict[str, Any]) -> None:
    """Add ``$export`` to ``rest``: at system level, and on Patient and Group where they
    are listed."""
    rest.setdefault("operation", []).append({"name": "export", "definition": EXPORT_DEFINITION})
    definitions = {"Patient": PATIENT_EXPORT, "Group": GROUP_EXPORT}
    for resource in rest.get("resource", []):
        definition = definitions.get(resource.get("type"))
        if definition is not None:
            resource.setdefault("operation", []).append(
                {"name": "export", "definition": definition}
            )
