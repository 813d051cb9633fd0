"""What the CapabilityStatement says of bulk data export (Bulk Data Access IG v2.0.0)."""

from __future__ import annotations

from typing import Any

__all__ = ["COMPARTMENT_TYPES", "DIRECTORY_TYPES", "EXPORT_DEFINITION", "advertise_export"]

# The types an export writes: those whose every resource a source can list (a Slot, say,
# exists only within a time range asked for). The patient compartment's
# (https://hl7.org/fhir/R4/compartmentdefinition-patient.html) and the directory's.
COMPARTMENT_TYPES = ("Patient", "Appointment")
DIRECTORY_TYPES = (
    "Practitioner",
    "Location",
    "Organization",
    "HealthcareService",
    "Schedule",
    "Device",
)

EXPORT_DEFINITION = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
PATIENT_EXPORT = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"
GROUP_EXPORT = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"


def advertise_export(rest: dict[str, Any]) -> None:
    """Add ``$export`` to ``rest``: at system level, and on Patient and Group where they
    are listed."""
    listed = {resource.get("type") for resource in rest.get("resource", [])}
    system = [t for t in (*COMPARTMENT_TYPES, *DIRECTORY_TYPES) if t in listed]
    compartment = [t for t in COMPARTMENT_TYPES if t in listed]
    directory = [t for t in DIRECTORY_TYPES if t in listed]
    rest.setdefault("operation", []).append(
        {
            "name": "export",
            "definition": EXPORT_DEFINITION,
            "documentation": f"Exports {', '.join(system)}.",
        }
    )
    patient_level = (
        f"Exports {', '.join(compartment)}; with _type naming {', '.join(directory)}, "
        "also those the exported resources reference."
    )
    definitions = {"Patient": PATIENT_EXPORT, "Group": GROUP_EXPORT}
    for resource in rest.get("resource", []):
        definition = definitions.get(resource.get("type"))
        if definition is not None:
            resource.setdefault("operation", []).append(
                {"name": "export", "definition": definition, "documentation": patient_level}
            )
