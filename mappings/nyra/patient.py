"""NyraAI patient <-> FHIR R4 Patient (https://hl7.org/fhir/R4/patient.html).

Field by field, see ``mappings/README.md``.
"""

from __future__ import annotations

from typing import Any

from mappings.common.context import NyraContext
from mappings.common.fhir import (
    EXT_AGE,
    EXT_CREATED_AT,
    UCUM,
    extension_value,
    extra_extension,
    read_extra,
    resource_list,
    resource_str,
)
from mappings.common.names import join_name, pick_name, split_name
from mappings.common.record import VendorRecord
from mappings.common.refs import own_id, reference_id
from mappings.common.time import parse_date, parse_instant
from mappings.errors import IdError, InvalidResource
from mappings.nyra.codes import GENDER, PATIENT_STATUS

__all__ = ["from_fhir_patient", "to_fhir_patient"]

VENDOR = "Nyra"


def to_fhir_patient(record: dict[str, Any], ctx: NyraContext) -> dict[str, Any]:
    """A Nyra patient record as a FHIR R4 Patient dict."""
    r = VendorRecord(VENDOR, record)
    vendor_id = r.text("id", required=True)
    try:
        patient: dict[str, Any] = {"resourceType": "Patient", "id": ctx.id(vendor_id)}
    except IdError as exc:
        raise r.error("id", str(exc)) from exc
    meta: dict[str, Any] = {"source": ctx.source}
    patient["meta"] = meta
    updated = _instant(r, "updated_at")
    if updated is not None:
        meta["lastUpdated"] = updated
    extensions: list[dict[str, Any]] = []
    created = _instant(r, "created_at")
    if created is not None:
        extensions.append({"url": EXT_CREATED_AT, "valueInstant": created})
    age = r.integer("age")
    if age is not None:
        if age < 0:
            raise r.error("age", "is negative")
        extensions.append(
            {"url": EXT_AGE, "valueAge": {"value": age, "unit": "a", "system": UCUM, "code": "a"}}
        )

    status = r.text("status")
    if status is not None:
        active = PATIENT_STATUS.to_fhir(status)
        if active is None:
            raise r.error("status", f"unknown Nyra patient status {status!r}")
        patient["active"] = active == "true"
    name = r.text("name")
    if name is not None:
        patient["name"] = [split_name(name)]
    telecom = []
    phone = r.text("phone")
    if phone is not None:
        telecom.append({"system": "phone", "value": phone})
    email = r.text("email")
    if email is not None:
        telecom.append({"system": "email", "value": email})
    if telecom:
        patient["telecom"] = telecom
    gender = r.text("gender")
    if gender is not None:
        code = GENDER.to_fhir(gender)
        if code is None:
            raise r.error("gender", f"unknown Nyra gender code {gender!r}")
        patient["gender"] = code
    birth_date = r.text("date_of_birth")
    if birth_date is not None:
        try:
            parse_date(birth_date)
        except ValueError as exc:
            raise r.error("date_of_birth", str(exc)) from None
        patient["birthDate"] = birth_date
    address = r.text("address")
    if address is not None:
        patient["address"] = [{"text": address}]
    doctor = r.text("doctor_id")
    if doctor is not None:
        patient["generalPractitioner"] = [{"reference": _ref(r, ctx, "Practitioner", "doctor_id")}]
    branch = r.text("branch_id")
    if branch is not None:
        patient["managingOrganization"] = {"reference": _ref(r, ctx, "Organization", "branch_id")}

    leftovers = r.leftovers()
    if leftovers:
        extensions.append(extra_extension(leftovers, VENDOR))
    if extensions:
        patient["extension"] = extensions
    return patient


def _instant(r: VendorRecord, key: str) -> str | None:
    text = r.text(key)
    if text is None:
        return None
    try:
        return parse_instant(text)[1]
    except ValueError as exc:
        raise r.error(key, str(exc) if "offset" in str(exc) else "not an ISO 8601 time") from None


def _ref(r: VendorRecord, ctx: NyraContext, kind: str, key: str) -> str:
    try:
        return ctx.ref(kind, r.data[key])
    except IdError as exc:
        raise r.error(key, str(exc)) from exc


def from_fhir_patient(resource: dict[str, Any], ctx: NyraContext) -> dict[str, Any]:
    """A FHIR R4 Patient dict as a Nyra patient record (what Nyra can hold of it)."""
    record: dict[str, Any] = {}
    if resource.get("id") is not None:
        record["id"] = own_id(resource["id"], ctx, "Patient.id", scoped=False).vendor_id
    name = pick_name(resource_list(resource, "name", "Patient"))
    if name is not None:
        text = join_name(name)
        if text is not None:
            record["name"] = text
    for point in resource_list(resource, "telecom", "Patient"):
        if isinstance(point, dict) and isinstance(point.get("value"), str):
            system = point.get("system")
            if system in ("phone", "email"):
                record.setdefault(system, point["value"])
    age = extension_value(resource, EXT_AGE, "valueAge")
    if isinstance(age, dict) and isinstance(age.get("value"), int):
        record["age"] = age["value"]
    gender = resource_str(resource, "gender", "Patient")
    if gender is not None:
        code = GENDER.from_fhir(gender)
        if code is None:
            raise InvalidResource("Patient.gender", "Nyra has no such gender")
        record["gender"] = code
    birth_date = resource_str(resource, "birthDate", "Patient")
    if birth_date is not None:
        try:
            parse_date(birth_date)
        except ValueError:
            raise InvalidResource(
                "Patient.birthDate", "Nyra holds only full dates (YYYY-MM-DD)"
            ) from None
        record["date_of_birth"] = birth_date
    addresses = resource_list(resource, "address", "Patient")
    if addresses and isinstance(addresses[0], dict):
        text = _address_text(addresses[0])
        if text:
            record["address"] = text
    active = resource.get("active")
    if isinstance(active, bool):
        record["status"] = PATIENT_STATUS.from_fhir("true" if active else "false")
    if resource.get("managingOrganization") is not None:
        record["branch_id"] = reference_id(
            resource["managingOrganization"],
            "Organization",
            ctx,
            "Patient.managingOrganization",
            scoped=False,
        ).vendor_id
    practitioners = resource_list(resource, "generalPractitioner", "Patient")
    if practitioners:
        record["doctor_id"] = reference_id(
            practitioners[0], "Practitioner", ctx, "Patient.generalPractitioner[0]", scoped=False
        ).vendor_id
    created = extension_value(resource, EXT_CREATED_AT, "valueInstant")
    if isinstance(created, str):
        record["created_at"] = created
    updated = (resource.get("meta") or {}).get("lastUpdated")
    if isinstance(updated, str):
        record["updated_at"] = updated
    record.update(read_extra(resource, "Patient"))
    return record


def _address_text(address: dict[str, Any]) -> str | None:
    """Nyra keeps one free-text address: Address.text, else its parts joined."""
    text = address.get("text")
    if isinstance(text, str):
        return text
    parts = [*(address.get("line") or ())]
    parts += [address.get(k) for k in ("city", "district", "state", "postalCode", "country")]
    return ", ".join(p for p in parts if isinstance(p, str) and p.strip()) or None
