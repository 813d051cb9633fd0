"""Leyr records <-> FHIR R4 Patient and Appointment; Leyr's directory (resources, care
units, healthcare services) -> Practitioner, Device, Schedule, Location, Organization and
HealthcareService."""

from mappings.leyr.appointment import from_fhir_appointment, to_fhir_appointment
from mappings.leyr.codes import TABLES, concept_maps
from mappings.leyr.directory import (
    is_equipment,
    to_fhir_device,
    to_fhir_healthcare_service,
    to_fhir_location,
    to_fhir_organization,
    to_fhir_practitioner,
    to_fhir_resource,
    to_fhir_schedule,
)
from mappings.leyr.patient import from_fhir_patient, to_fhir_patient

__all__ = [
    "TABLES",
    "concept_maps",
    "from_fhir_appointment",
    "from_fhir_patient",
    "is_equipment",
    "to_fhir_appointment",
    "to_fhir_device",
    "to_fhir_healthcare_service",
    "to_fhir_location",
    "to_fhir_organization",
    "to_fhir_patient",
    "to_fhir_practitioner",
    "to_fhir_resource",
    "to_fhir_schedule",
]
