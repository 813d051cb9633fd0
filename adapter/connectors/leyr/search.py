"""FHIR searches as Leyr calls.

Leyr lists are bare arrays with no paging (docs.leyr.io: "no pagination documented"), so
a search fetches each configured care unit's list once and filters it here by FHIR's own
rules (:mod:`adapter.fhir.match`); that is exact, since the list is the whole care unit.
Native filters narrow what is fetched where their meaning is certain:

- ``identifier=system|value`` for a national or EHR id -> a typed-id lookup
  (``GET .../patients/se_personal_number:1912...``);
- ``given:exact`` / ``family:exact`` -> ``first_name`` / ``last_name``;
- Appointment ``patient`` / ``practitioner`` -> ``patient_id`` / ``resource_id`` in the
  care unit the id names; ``date`` -> a ``start_date``..``end_date`` window (local dates,
  a day wider than asked for on each side, then filtered exactly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo

from adapter.fhir.dates import search_window
from adapter.fhir.search import SearchParam, SearchRequest
from mappings import MappingError, decode_id
from mappings.common.fhir import identifier_system
from mappings.common.national_ids import (
    NHS_NUMBER,
    NO_D_NUMBER,
    NO_FODSELSNUMMER,
    SE_PERSONNUMMER,
    SE_SAMORDNINGSNUMMER,
)

__all__ = ["Plan", "plan_appointments", "plan_patients"]

# Identifier.system -> Leyr typed-id prefix (docs.leyr.io: patient id types).
_TYPED = {
    SE_PERSONNUMMER: "se_personal_number",
    SE_SAMORDNINGSNUMMER: "se_personal_number",
    NO_FODSELSNUMMER: "no_personal_number",
    NO_D_NUMBER: "no_personal_number",
    NHS_NUMBER: "nhs_number",
}


@dataclass
class Plan:
    """What to fetch: per care unit, either typed ids to look up or one list query."""

    care_units: list[str]
    lookups: list[str] = field(default_factory=list)  # typed ids, for a patient lookup
    query: dict[str, str] = field(default_factory=dict)
    ids: dict[str, set[str]] = field(default_factory=dict)  # care unit -> vendor ids (_id)
    empty: bool = False  # the search can match nothing (e.g. an id of another source)


def _single(param: SearchParam) -> str | None:
    return param.values[0] if len(param.values) == 1 else None


def _own(fhir_id: str, source: str, care_units: list[str]) -> tuple[str, str] | None:
    """(care unit, vendor id) of one of our ids, else None (it cannot match here)."""
    try:
        gid = decode_id(fhir_id)
    except MappingError:
        return None
    if gid.source != source or gid.scope not in care_units:
        return None
    return gid.scope, gid.vendor_id


def _narrow_ids(plan: Plan, values: tuple[str, ...], source: str) -> None:
    found = [_own(v.rsplit("/", 1)[-1], source, plan.care_units) for v in values]
    owned = [o for o in found if o is not None]
    if not owned:
        plan.empty = True
        return
    for cu, vendor_id in owned:
        plan.ids.setdefault(cu, set()).add(vendor_id)
    plan.care_units = [cu for cu in plan.care_units if cu in plan.ids]


def plan_patients(request: SearchRequest, source: str, care_units: list[str]) -> Plan:
    plan = Plan(list(care_units))
    for param in request.params:
        if param.name == "_id":
            _narrow_ids(plan, param.values, source)
        elif param.name == "identifier" and not plan.lookups:
            value = _single(param)
            system, bar, code = value.partition("|") if value else ("", "", "")
            if bar and code and system in _TYPED:
                plan.lookups = [f"{_TYPED[system]}:{code}"]
            elif bar and code and system == identifier_system(source, "emr-id"):
                plan.lookups = [f"emr_id:{code}"]
        elif param.modifier == "exact" and param.name in ("given", "family"):
            value = _single(param)
            if value is not None:
                plan.query["first_name" if param.name == "given" else "last_name"] = value
    return plan


def plan_appointments(
    request: SearchRequest, source: str, care_units: list[str], zone: tzinfo
) -> Plan:
    plan = Plan(list(care_units))
    for param in request.params:
        if param.name == "_id":
            _narrow_ids(plan, param.values, source)
        elif param.name in ("patient", "practitioner"):
            value = _single(param)
            kind = value.rstrip("/").rsplit("/", 2)[-2] if value and "/" in value else None
            wanted = "Patient" if param.name == "patient" else "Practitioner"
            owned = _own(value.rsplit("/", 1)[-1], source, plan.care_units) if value else None
            if kind not in (None, wanted):
                plan.empty = True  # a reference of a type the parameter never holds
            elif value is not None and owned is None:
                plan.empty = True
            elif owned is not None:
                cu, vendor_id = owned
                plan.care_units = [c for c in plan.care_units if c == cu]
                plan.query["patient_id" if param.name == "patient" else "resource_id"] = vendor_id
    first, last = search_window(request.named("date"), zone)
    if first is not None and last is not None:
        plan.query["start_date"], plan.query["end_date"] = first, last
    return plan
