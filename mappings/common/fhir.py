"""FHIR building blocks shared by every vendor mapping: the project's URL namespace, the
extensions that carry what R4 has no element for, and defensive readers for resources."""

from __future__ import annotations

from typing import Any

import orjson

from mappings.errors import InvalidResource

__all__ = [
    "EXT_AGE",
    "EXT_CREATED_AT",
    "EXT_DURATION",
    "EXT_SLOT_LENGTH",
    "EXT_VENDOR_EXTRA",
    "EXT_VENDOR_ID_TYPE",
    "EXT_VENDOR_STATUS",
    "NAMESPACE",
    "SOURCE_SYSTEM",
    "UCUM",
    "code_system_url",
    "extension_value",
    "extra_extension",
    "identifier_system",
    "minutes",
    "read_extra",
    "resource_list",
    "resource_str",
]

NAMESPACE = "https://fhir-adapter.dev/fhir"
_SD = f"{NAMESPACE}/StructureDefinition"

#: JSON text of the vendor fields no standard element carries (valueString).
EXT_VENDOR_EXTRA = f"{_SD}/vendor-extra"
#: The vendor's own status code where the FHIR status alone would not give it back.
EXT_VENDOR_STATUS = f"{_SD}/vendor-status"
#: On an Identifier: the vendor's typed-id prefix its value was written with.
EXT_VENDOR_ID_TYPE = f"{_SD}/vendor-id-type"
#: When the vendor first recorded a resource that R4 gives no ``created`` element.
EXT_CREATED_AT = f"{_SD}/created-at"
#: A patient's age as the vendor recorded it (valueAge, in years).
EXT_AGE = f"{_SD}/age"
#: How long a HealthcareService's appointment lasts (valueDuration, in minutes).
EXT_DURATION = f"{_SD}/duration"
#: The length of each bookable slot of a Schedule (valueDuration, in minutes).
EXT_SLOT_LENGTH = f"{_SD}/slot-length"

UCUM = "http://unitsofmeasure.org"
#: Identifier.system whose values are this facade's configured source names.
SOURCE_SYSTEM = f"{NAMESPACE}/sid/source"


def identifier_system(source: str, name: str) -> str:
    """The Identifier.system of a source-local identifier (``emr-id``, ``external-id``)."""
    return f"{NAMESPACE}/sid/{source}/{name}"


def code_system_url(name: str) -> str:
    return f"{NAMESPACE}/CodeSystem/{name}"


def minutes(value: int) -> dict[str, Any]:
    """A FHIR Duration of ``value`` minutes (UCUM ``min``)."""
    return {"value": value, "unit": "min", "system": UCUM, "code": "min"}


def extra_extension(leftovers: dict[str, Any], vendor: str) -> dict[str, Any]:
    try:
        text = orjson.dumps(leftovers, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        from mappings.errors import InvalidVendorRecord

        raise InvalidVendorRecord(vendor, "$", "holds a value JSON cannot carry") from None
    return {"url": EXT_VENDOR_EXTRA, "valueString": text}


def extension_value(element: dict[str, Any], url: str, key: str) -> Any:
    for ext in element.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == url:
            return ext.get(key)
    return None


def read_extra(element: dict[str, Any], expression: str) -> dict[str, Any]:
    """The vendor fields an element kept in :data:`EXT_VENDOR_EXTRA` (``{}`` if none)."""
    text = extension_value(element, EXT_VENDOR_EXTRA, "valueString")
    if text is None:
        return {}
    try:
        extra = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidResource(f"{expression}.extension", "vendor-extra is not JSON") from None
    if not isinstance(extra, dict):
        raise InvalidResource(f"{expression}.extension", "vendor-extra is not a JSON object")
    return extra


def resource_list(element: dict[str, Any], key: str, expression: str) -> list[Any]:
    value = element.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidResource(f"{expression}.{key}", "expected an array")
    return value


def resource_str(element: dict[str, Any], key: str, expression: str) -> str | None:
    value = element.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidResource(f"{expression}.{key}", "expected a string")
    return value
