"""FHIR searches as Nyra list calls (``page``/``limit`` paging, at most 100 a page).

Native filters: ``q`` (a case-insensitive substring of name, phone or email) for
``name``/``given``/``family``/``phone``/``email``/``telecom``; ``status`` for ``active`` and
for an Appointment ``status`` with a single Nyra code; ``patient_id``/``doctor_id``/
``branch_id`` for references; ``date_from``/``date_to`` (local dates, a day wider than
asked) for ``date``. Everything is then filtered by FHIR's rules, so the natives only
narrow. Caveat: Nyra's ``q`` does not fold accents, so a name search finds an accented
name only when typed with its accents.
The total is exact only when every parameter was answered natively and exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo

from adapter.fhir.dates import search_window
from adapter.fhir.search import SearchParam, SearchRequest
from mappings import MappingError, decode_id
from mappings.nyra.codes import APPOINTMENT_STATUS

__all__ = ["Plan", "plan"]

_Q_PARAMS = ("name", "given", "family", "phone", "email", "telecom")


@dataclass
class Plan:
    query: dict[str, str] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)  # vendor ids, for `_id`
    by_id: bool = False
    exact: bool = True  # the vendor's own total is the answer's total
    empty: bool = False


def _single(param: SearchParam) -> str | None:
    return param.values[0] if len(param.values) == 1 else None


def _own(ref: str, source: str) -> tuple[str, str] | None:
    """(resource type or "", vendor id) of a reference to one of our ids."""
    kind, _, fhir_id = ref.rpartition("/")
    try:
        gid = decode_id(fhir_id)
    except MappingError:
        return None
    if gid.source != source or gid.scope is not None:
        return None
    return kind.rpartition("/")[2], gid.vendor_id


_REF_QUERY = {"Patient": "patient_id", "Practitioner": "doctor_id", "Location": "branch_id"}


def plan(request: SearchRequest, source: str, zone: tzinfo) -> Plan:
    p = Plan()
    for param in request.params:
        value = _single(param)
        if param.name == "_id":
            owned = [_own(f"x/{v}", source) for v in param.values]
            p.ids = [o[1] for o in owned if o is not None]
            p.by_id, p.empty = True, not p.ids
        elif param.name in _Q_PARAMS and value is not None and "q" not in p.query:
            p.query["q"] = value.rpartition("|")[2]
            p.exact = False
        elif param.name == "active" and value in ("true", "false"):
            p.query["status"] = "ACTIVE" if value == "true" else "INACTIVE"
        elif param.name == "status" and value is not None and (code := _only_code(value)):
            p.query["status"] = code
        elif param.name in ("patient", "practitioner", "actor") and value is not None:
            _reference(p, param, value, source)
        elif param.name == "date":
            p.exact = False
        else:
            p.exact = False
    first, last = search_window(request.named("date"), zone)
    if first is not None:
        p.query["date_from"] = first
    if last is not None:
        p.query["date_to"] = last
    return p


def _only_code(fhir_status: str) -> str | None:
    """The Nyra status, when exactly one means this FHIR status (booked: BOOKED and
    CONFIRMED, so None)."""
    rows = [v for v, f, _ in APPOINTMENT_STATUS.rows if f == fhir_status]
    return APPOINTMENT_STATUS.from_fhir(fhir_status) if len(rows) == 1 else None


def _reference(p: Plan, param: SearchParam, value: str, source: str) -> None:
    default = {"patient": "Patient", "practitioner": "Practitioner"}.get(param.name)
    ref = value if "/" in value else f"{default or ''}/{value}"
    owned = _own(ref, source)
    if owned is None:
        p.empty = True
        return
    kind, vendor_id = owned
    key = _REF_QUERY.get(kind or default or "")
    if key is None or key in p.query:
        p.exact = False
        return
    p.query[key] = vendor_id
