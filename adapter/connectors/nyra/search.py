"""FHIR searches as Nyra list calls (``page``/``limit`` paging, at most 100 a page).

Native filters: ``q`` (a case-insensitive substring of name, phone or email) for
``name``/``given``/``family`` (the longest word of the value, which string search compares
without punctuation and repeated whitespace) and ``phone``/``email``/``telecom`` (a phone
number as its last digits, :func:`phone_query`); ``status`` for ``active`` and for an
Appointment ``status`` with a single Nyra code (a bare code, or one in FHIR's appointment
status system; ``|code`` finds nothing, a status always being of that system);
``patient_id``/``doctor_id``/``branch_id`` for references; ``date_from``/``date_to``
(local dates, a day wider than asked) for ``date``. Everything is then filtered by FHIR's
rules, so the natives only narrow. Caveat: Nyra's ``q`` does not fold accents, so a name
search finds an accented name only when typed with its accents.
The total is exact only when every parameter was answered natively and exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo

from adapter.fhir.dates import search_window
from adapter.fhir.match import CODE_SYSTEMS, wanted_codes
from adapter.fhir.phones import significant_digits
from adapter.fhir.search import SearchParam, SearchRequest
from adapter.fhir.strings import words
from mappings import MappingError, decode_id
from mappings.nyra.codes import APPOINTMENT_STATUS

__all__ = ["Plan", "phone_query", "plan"]

_Q_PARAMS = ("name", "given", "family", "phone", "email", "telecom")
_TEXT_PARAMS = ("name", "given", "family")
# Nyra holds a phone number as it was given, "9876543210" or "+919876543210" (the contract:
# it "may lack a country code"), and matches ``q`` as a substring: a searched number in any
# other form (``+91 98765 43210``, ``098765-43210``) would find nothing there. The last
# digits of its national significant number are in every unformatted form of it, with or
# without country code or trunk prefix; seven of them (all, for a shorter number) narrow
# the vendor's answer to a few records, which are then matched exactly.
_PHONE_Q_DIGITS = 7


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


def phone_query(value: str, country: str | None = None) -> str:
    """The ``q`` that finds a phone number however Nyra holds it: its last digits."""
    return significant_digits(value, country)[-_PHONE_Q_DIGITS:]


def _q(param: SearchParam, value: str, country: str | None) -> str | None:
    """The ``q`` that finds every record this value can match, or None when there is none
    (then nothing is pushed down)."""
    if param.name in _TEXT_PARAMS and param.modifier != "exact":
        # Matched without punctuation and repeated whitespace: each word of the value is
        # in every name it finds, as written; the longest narrows the most.
        return max(words(value), key=len, default=None)
    system, bar, code = value.rpartition("|")
    if param.name == "phone" or (param.name == "telecom" and system == "phone"):
        return phone_query(code, country) or code.strip()
    if param.name != "telecom" or bar:
        return code
    # A telecom value without a system is compared with phone numbers as a number and with
    # emails as text: only digits found both in the value and in the number can be asked.
    digits = phone_query(code, country)
    common = next((digits[i:] for i in range(len(digits)) if digits[i:] in code), "")
    return common or (code.strip() if not digits else None)


def plan(request: SearchRequest, source: str, zone: tzinfo, country: str | None = None) -> Plan:
    """``country``: the source's, for phone numbers written without a country code."""
    p = Plan()
    for param in request.params:
        value = _single(param)
        if param.name == "_id":
            owned = [_own(f"x/{v}", source) for v in param.values]
            p.ids = [o[1] for o in owned if o is not None]
            p.by_id, p.empty = True, not p.ids
        elif param.name in _Q_PARAMS and value is not None and "q" not in p.query:
            q = _q(param, value, country)
            if q:
                p.query["q"] = q
            p.exact = False
        elif param.name == "active" and value in ("true", "false"):
            _natively(p, "ACTIVE" if value == "true" else "INACTIVE")
        elif param.name == "status" and request.resource_type == "Appointment":
            codes = wanted_codes(param, CODE_SYSTEMS["Appointment", "status"])
            code = _only_code(next(iter(codes))) if codes is not None and len(codes) == 1 else None
            if codes is not None and not codes:
                p.empty = True  # no status of this system (``|booked``, another system's)
            elif code is not None:
                _natively(p, code)
            else:
                p.exact = False
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


def _natively(p: Plan, status: str) -> None:
    """Nyra's one ``status`` filter: a second, other status ANDed with it finds nothing."""
    if p.query.get("status", status) != status:
        p.empty = True
    p.query["status"] = status


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
    if default is not None and kind not in (None, default):
        p.empty = True  # patient=Location/...: a reference of a type the parameter never holds
        return
    key = _REF_QUERY.get(kind or default or "")
    if key is None or key in p.query:
        p.exact = False
        return
    p.query[key] = vendor_id
