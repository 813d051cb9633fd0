"""Leyr's code tables (vendor code, FHIR code, equivalence), with where each comes from."""

from __future__ import annotations

from typing import Any

from mappings.common.codes import CodeTable
from mappings.common.fhir import code_system_url

__all__ = ["APPOINTMENT_STATUS", "GENDER", "ID_TYPES", "TABLES", "concept_maps"]

# Leyr patient `gender` (vendors/leyr.md, Payloads: "[assumed] gender one of
# male|female|other|unknown"); target https://hl7.org/fhir/R4/valueset-administrative-gender.html
GENDER = CodeTable(
    name="LeyrGender",
    title="Leyr patient gender to FHIR administrative gender",
    evidence="docs.leyr.io patient payload; vendors/leyr.md (assumed values)",
    vendor_system=code_system_url("leyr-gender"),
    fhir_system="http://hl7.org/fhir/administrative-gender",
    rows=(
        ("male", "male", "equal"),
        ("female", "female", "equal"),
        ("other", "other", "equal"),
        ("unknown", "unknown", "equal"),
    ),
)

# Leyr appointment `status` (docs.leyr.io appointments: booked, awaiting_confirmation,
# completed, cancelled; the list is cut off there, no_show is assumed in vendors/leyr.md);
# target https://hl7.org/fhir/R4/valueset-appointmentstatus.html.
# awaiting_confirmation is a cancellation waiting for the patient's confirmation code: the
# appointment is neither firmly booked nor cancelled yet, which R4 calls `pending`.
APPOINTMENT_STATUS = CodeTable(
    name="LeyrAppointmentStatus",
    title="Leyr appointment status to FHIR AppointmentStatus",
    evidence="docs.leyr.io appointments (status list); vendors/leyr.md",
    vendor_system=code_system_url("leyr-appointment-status"),
    fhir_system="http://hl7.org/fhir/appointmentstatus",
    rows=(
        ("booked", "booked", "equivalent"),
        ("awaiting_confirmation", "pending", "inexact"),
        ("completed", "fulfilled", "equivalent"),
        ("cancelled", "cancelled", "equivalent"),
        ("no_show", "noshow", "equivalent"),
    ),
    comments={
        "awaiting_confirmation": "a cancellation waiting for the patient's confirmation "
        "code: neither firmly booked nor cancelled yet",
    },
)

# Leyr typed-id prefixes ({type}:{value}); a bare value means emr_id (docs.leyr.io, patient
# and resource ids).
ID_TYPES = frozenset({"emr_id", "se_personal_number", "no_personal_number", "nhs_number", "hsa_id"})

TABLES = (GENDER, APPOINTMENT_STATUS)


def concept_maps() -> list[dict[str, Any]]:
    return [table.concept_map() for table in TABLES]
