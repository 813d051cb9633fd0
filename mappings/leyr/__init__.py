"""Leyr records <-> FHIR R4 Patient and Appointment."""

from mappings.leyr.appointment import from_fhir_appointment, to_fhir_appointment
from mappings.leyr.codes import TABLES, concept_maps
from mappings.leyr.patient import from_fhir_patient, to_fhir_patient

__all__ = [
    "TABLES",
    "concept_maps",
    "from_fhir_appointment",
    "from_fhir_patient",
    "to_fhir_appointment",
    "to_fhir_patient",
]
