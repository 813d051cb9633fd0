"""Pieces every vendor's Appointment mapping shares: times, status and participants."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mappings.common.codes import CodeTable
from mappings.common.fhir import EXT_VENDOR_STATUS, extension_value
from mappings.common.record import VendorRecord
from mappings.common.time import parse_instant
from mappings.errors import InvalidResource

__all__ = ["actor", "instant_field", "status_from_fhir", "status_to_fhir"]


def instant_field(
    r: VendorRecord, key: str, *, required: bool = False
) -> tuple[datetime, str] | None:
    """A vendor timestamp with offset as ``(datetime, FHIR instant text)``."""
    text = r.text(key, required=required)
    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise r.error(key, str(exc) if "offset" in str(exc) else "not an ISO 8601 time") from None


def status_to_fhir(
    r: VendorRecord, key: str, table: CodeTable, appointment: dict[str, Any]
) -> list[dict[str, Any]]:
    """Set ``appointment["status"]``; return the vendor-status extension if one is needed.

    Unknown vendor statuses are errors: guessing one would show a cancelled visit as booked.
    """
    code = r.text(key, required=True)
    fhir = table.to_fhir(code)
    if fhir is None:
        raise r.error(key, f"unknown {r.vendor} appointment status {code!r}")
    appointment["status"] = fhir
    if table.from_fhir(fhir) != code:
        return [{"url": EXT_VENDOR_STATUS, "valueCode": code}]
    return []


def status_from_fhir(resource: dict[str, Any], table: CodeTable, vendor: str) -> str:
    status = resource.get("status")
    if not isinstance(status, str):
        raise InvalidResource("Appointment.status", "missing required element")
    kept = extension_value(resource, EXT_VENDOR_STATUS, "valueCode")
    # The kept vendor code wins only while it still means the FHIR status given.
    if isinstance(kept, str) and table.to_fhir(kept) == status:
        return kept
    code = table.from_fhir(status)
    if code is None:
        raise InvalidResource("Appointment.status", f"{vendor} has no such status")
    return code


def actor(reference: str, display: str | None = None) -> dict[str, Any]:
    """An Appointment.participant for ``reference``, accepted, with its display."""
    ref: dict[str, Any] = {"reference": reference}
    if display is not None:
        ref["display"] = display
    return {"actor": ref, "status": "accepted"}
