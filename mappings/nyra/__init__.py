"""NyraAI records <-> FHIR R4 Patient and Appointment."""

from mappings.nyra.appointment import from_fhir_appointment, to_fhir_appointment, to_nyra_booking
from mappings.nyra.codes import TABLES, concept_maps
from mappings.nyra.patient import from_fhir_patient, to_fhir_patient

__all__ = [
    "TABLES",
    "concept_maps",
    "from_fhir_appointment",
    "from_fhir_patient",
    "to_fhir_appointment",
    "to_fhir_patient",
    "to_nyra_booking",
]
