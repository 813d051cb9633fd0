"""NyraAI's code tables (vendor code, FHIR code, equivalence), with where each comes from."""

from __future__ import annotations

from typing import Any

from mappings.common.codes import CodeTable
from mappings.common.fhir import code_system_url

__all__ = [
    "APPOINTMENT_STATUS",
    "APPOINTMENT_TYPE",
    "GENDER",
    "PATIENT_STATUS",
    "TABLES",
    "concept_maps",
]

# Nyra patient `gender` (vendors/nyra.md: upper-case MALE; FEMALE and OTHER assumed);
# target https://hl7.org/fhir/R4/valueset-administrative-gender.html
GENDER = CodeTable(
    name="NyraGender",
    title="Nyra patient gender to FHIR administrative gender",
    evidence="docs.nyraai.io external API, patient payload; vendors/nyra.md",
    vendor_system=code_system_url("nyra-gender"),
    fhir_system="http://hl7.org/fhir/administrative-gender",
    rows=(
        ("MALE", "male", "equal"),
        ("FEMALE", "female", "equal"),
        ("OTHER", "other", "equal"),
    ),
)

# Nyra patient `status` ACTIVE/INACTIVE (vendors/nyra.md) to Patient.active (a boolean,
# written here as the codes "true"/"false" so the table can be served as a ConceptMap).
PATIENT_STATUS = CodeTable(
    name="NyraPatientStatus",
    title="Nyra patient status to FHIR Patient.active",
    evidence="docs.nyraai.io external API, patient payload; vendors/nyra.md",
    vendor_system=code_system_url("nyra-patient-status"),
    fhir_system="http://hl7.org/fhir/R4/datatypes.html#boolean",
    rows=(("ACTIVE", "true", "equivalent"), ("INACTIVE", "false", "equivalent")),
)

# Nyra appointment `status` (vendors/nyra.md: BOOKED, COMPLETED, NO_SHOW, CANCELLED;
# CONFIRMED assumed); target https://hl7.org/fhir/R4/valueset-appointmentstatus.html.
# R4 has no "confirmed": a confirmed appointment is booked; the exact vendor code is kept
# in the vendor-status extension so it comes back unchanged.
APPOINTMENT_STATUS = CodeTable(
    name="NyraAppointmentStatus",
    title="Nyra appointment status to FHIR AppointmentStatus",
    evidence="docs.nyraai.io external API, appointments; vendors/nyra.md",
    vendor_system=code_system_url("nyra-appointment-status"),
    fhir_system="http://hl7.org/fhir/appointmentstatus",
    rows=(
        ("BOOKED", "booked", "equivalent"),
        ("CONFIRMED", "booked", "wider"),
        ("COMPLETED", "fulfilled", "equivalent"),
        ("NO_SHOW", "noshow", "equivalent"),
        ("CANCELLED", "cancelled", "equivalent"),
    ),
)

# Nyra appointment `type` (vendors/nyra.md: CONSULTATION; FOLLOW_UP, CHECKUP, EMERGENCY
# assumed) to HL7 v2 table 0276 (https://terminology.hl7.org/CodeSystem-v2-0276.html), the
# binding of R4 Appointment.appointmentType. v2-0276 has no consultation; ROUTINE is the
# nearest. The vendor's own coding always travels beside it, so nothing is lost.
APPOINTMENT_TYPE = CodeTable(
    name="NyraAppointmentType",
    title="Nyra appointment type to HL7 v2 appointment reason codes",
    evidence="docs.nyraai.io external API, POST /appointments body; vendors/nyra.md",
    vendor_system=code_system_url("nyra-appointment-type"),
    fhir_system="http://terminology.hl7.org/CodeSystem/v2-0276",
    rows=(
        ("CONSULTATION", "ROUTINE", "inexact"),
        ("FOLLOW_UP", "FOLLOWUP", "equivalent"),
        ("CHECKUP", "CHECKUP", "equivalent"),
        ("EMERGENCY", "EMERGENCY", "equivalent"),
    ),
    comments={
        "CONSULTATION": "v2-0276 has no consultation; ROUTINE is the nearest (the vendor's "
        "own code travels beside it)",
    },
)

TABLES = (GENDER, PATIENT_STATUS, APPOINTMENT_STATUS, APPOINTMENT_TYPE)


def concept_maps() -> list[dict[str, Any]]:
    return [table.concept_map() for table in TABLES]
