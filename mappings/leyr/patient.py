"""Leyr patient <-> FHIR R4 Patient (https://hl7.org/fhir/R4/patient.html).

Field by field, see ``mappings/README.md``.
"""

from __future__ import annotations

from typing import Any

from mappings.common.context import LeyrContext
from mappings.common.fhir import (
    extra_extension,
    identifier_system,
    read_extra,
    resource_list,
    resource_str,
)
from mappings.common.names import pick_name
from mappings.common.record import VendorRecord
from mappings.common.refs import own_id, reference_id
from mappings.common.time import parse_date
from mappings.errors import IdError, InvalidResource
from mappings.leyr.codes import GENDER
from mappings.leyr.ids import external_identifier, is_external_identifier, typed_value

__all__ = ["from_fhir_patient", "to_fhir_patient"]

VENDOR = "Leyr"
# Leyr address keys beside `line`, and the Address elements they fill.
_ADDRESS = (("postal_code", "postalCode"), ("city", "city"), ("country", "country"))


def to_fhir_patient(record: dict[str, Any], ctx: LeyrContext) -> dict[str, Any]:
    """A Leyr patient record as a FHIR R4 Patient dict."""
    r = VendorRecord(VENDOR, record)
    vendor_id = r.text("id", required=True)
    care_unit = r.text("care_unit_id", required=True)
    try:
        patient: dict[str, Any] = {"resourceType": "Patient", "id": ctx.id(vendor_id, care_unit)}
    except IdError as exc:
        raise r.error("id", str(exc)) from exc
    patient["meta"] = {"source": ctx.source}

    identifiers = []
    emr_id = r.text("emr_id")
    if emr_id is not None:
        system = identifier_system(ctx.source, "emr-id")
        identifiers.append({"use": "usual", "system": system, "value": emr_id})
    external_id = r.text("external_id")
    if external_id is not None:
        identifiers.append(external_identifier(external_id, ctx.source))
    if identifiers:
        patient["identifier"] = identifiers

    first, last = r.text("first_name"), r.text("last_name")
    if first is not None or last is not None:
        text = last if first is None else first if last is None else f"{first} {last}"
        name: dict[str, Any] = {"use": "official", "text": text}
        if last is not None:
            name["family"] = last
        if first is not None:
            name["given"] = [first]
        patient["name"] = [name]

    telecom = [{"system": "phone", "value": v} for v in r.text_list("phones")]
    telecom += [{"system": "email", "value": v} for v in r.text_list("emails")]
    if telecom:
        patient["telecom"] = telecom

    gender = r.text("gender")
    if gender is not None:
        code = GENDER.to_fhir(gender)
        if code is None:
            raise r.error("gender", f"unknown Leyr gender code {gender!r}")
        patient["gender"] = code

    birth_date = r.text("birth_date")
    if birth_date is not None:
        try:
            parse_date(birth_date)
        except ValueError as exc:
            raise r.error("birth_date", str(exc)) from None
        patient["birthDate"] = birth_date

    address = r.child("address")
    if address is not None:
        patient["address"] = [_address(address)]

    organization = {"reference": ctx.ref("Organization", care_unit)}
    unit_name = ctx.directory.care_units.get(care_unit)
    if unit_name is not None:
        organization["display"] = unit_name
    patient["managingOrganization"] = organization
    leftovers = r.leftovers()
    if leftovers:
        patient["extension"] = [extra_extension(leftovers, VENDOR)]
    return patient


def _address(a: VendorRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    lines = a.text_list("line")
    if lines:
        out["line"] = lines
    for key, element in _ADDRESS:
        value = a.text(key)
        if value is not None:
            out[element] = value
    leftovers = a.leftovers()
    if leftovers:
        out["extension"] = [extra_extension(leftovers, VENDOR)]
    return out


def from_fhir_patient(resource: dict[str, Any], ctx: LeyrContext) -> dict[str, Any]:
    """A FHIR R4 Patient dict as a Leyr patient record (what Leyr can hold of it)."""
    record: dict[str, Any] = {}
    if resource.get("id") is not None:
        gid = own_id(resource["id"], ctx, "Patient.id", scoped=True)
        record["id"] = gid.vendor_id
        record["care_unit_id"] = gid.scope
    elif resource.get("managingOrganization") is not None:
        org = reference_id(
            resource["managingOrganization"],
            "Organization",
            ctx,
            "Patient.managingOrganization",
            scoped=False,
        )
        record["care_unit_id"] = org.vendor_id

    emr_system = identifier_system(ctx.source, "emr-id")
    for i, ident in enumerate(resource_list(resource, "identifier", "Patient")):
        expr = f"Patient.identifier[{i}]"
        if not isinstance(ident, dict) or resource_str(ident, "value", expr) is None:
            continue
        if ident.get("system") == emr_system and "emr_id" not in record:
            record["emr_id"] = ident["value"]
        elif is_external_identifier(ident, ctx.source) and "external_id" not in record:
            record["external_id"] = typed_value(ident)

    name = pick_name(resource_list(resource, "name", "Patient"))
    if name is not None:
        given = [g for g in name.get("given") or () if isinstance(g, str)]
        family = name.get("family")
        if not given and family is None and isinstance(name.get("text"), str):
            words = name["text"].split()
            family = words.pop() if len(words) > 1 else None
            given = words
        if given:
            record["first_name"] = " ".join(given)
        if isinstance(family, str):
            record["last_name"] = family

    phones, emails = [], []
    for point in resource_list(resource, "telecom", "Patient"):
        if isinstance(point, dict) and isinstance(point.get("value"), str):
            if point.get("system") == "phone":
                phones.append(point["value"])
            elif point.get("system") == "email":
                emails.append(point["value"])
    if phones:
        record["phones"] = phones
    if emails:
        record["emails"] = emails

    gender = resource_str(resource, "gender", "Patient")
    if gender is not None:
        code = GENDER.from_fhir(gender)
        if code is None:
            raise InvalidResource("Patient.gender", "Leyr has no such gender")
        record["gender"] = code

    birth_date = resource_str(resource, "birthDate", "Patient")
    if birth_date is not None:
        try:
            parse_date(birth_date)
        except ValueError:
            raise InvalidResource(
                "Patient.birthDate", "Leyr holds only full dates (YYYY-MM-DD)"
            ) from None
        record["birth_date"] = birth_date

    addresses = resource_list(resource, "address", "Patient")
    if addresses and isinstance(addresses[0], dict):
        address = _address_from_fhir(addresses[0])
        if address:
            record["address"] = address

    record.update(read_extra(resource, "Patient"))
    return record


def _address_from_fhir(address: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    lines = [line for line in address.get("line") or () if isinstance(line, str)]
    if lines:
        out["line"] = lines
    for key, element in _ADDRESS:
        if isinstance(address.get(element), str):
            out[key] = address[element]
    out.update(read_extra(address, "Patient.address[0]"))
    return out
