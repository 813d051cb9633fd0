"""NyraAI records <-> FHIR R4 Patient and Appointment; Nyra's doctors, branches and
hospital -> Practitioner, Schedule, Location and Organization."""

from mappings.nyra.appointment import from_fhir_appointment, to_fhir_appointment, to_nyra_booking
from mappings.nyra.codes import TABLES, concept_maps
from mappings.nyra.directory import (
    HOSPITAL,
    hospital_id,
    slot_minutes_of,
    to_fhir_location,
    to_fhir_organization,
    to_fhir_practitioner,
    to_fhir_schedule,
)
from mappings.nyra.patient import from_fhir_patient, to_fhir_patient

__all__ = [
    "HOSPITAL",
    "TABLES",
    "concept_maps",
    "from_fhir_appointment",
    "from_fhir_patient",
    "hospital_id",
    "slot_minutes_of",
    "to_fhir_appointment",
    "to_fhir_location",
    "to_fhir_organization",
    "to_fhir_patient",
    "to_fhir_practitioner",
    "to_fhir_schedule",
    "to_nyra_booking",
]
