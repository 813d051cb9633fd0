"""Evaluate FHIR search parameters against a FHIR resource dict, in memory.

Connectors use this to filter what a vendor cannot filter natively, after fetching; it is
correct only over a result set that is a superset of the answer, which the connector makes
sure of. Semantics per https://hl7.org/fhir/R4/search.html: strings match by
case- and accent-insensitive prefix, punctuation and repeated whitespace set aside
(:mod:`adapter.fhir.strings`; ``:exact``, ``:contains``), tokens by
``[system|]code`` (a ``code`` element in the code system of its value set), references by
id, dates as ranges by prefix (:mod:`adapter.fhir.dates`).
Phone numbers (``phone``, and ``telecom`` points whose system is ``phone``) match as
numbers, in the source's country (:mod:`adapter.fhir.phones`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import tzinfo
from typing import Any

from adapter.fhir.dates import FhirDate, compare, parse_date, parse_range, point
from adapter.fhir.phones import same_number, search_number
from adapter.fhir.search import SearchParam, UnsupportedParameter
from adapter.fhir.strings import normalise, search_text

__all__ = [
    "CODE_SYSTEMS",
    "INSTANTS",
    "KINDS",
    "MODIFIERS",
    "actor_references",
    "date_matches",
    "matches",
    "normalise",
    "references",
    "string_matches",
    "token_matches",
    "wanted_codes",
]

Resource = dict[str, Any]


# Extractors: what each search parameter reads from a resource.
def _names(r: Resource, parts: tuple[str, ...]) -> Iterator[str]:
    for name in r.get("name") or ():
        for part in parts:
            value = name.get(part)
            if isinstance(value, str):
                yield value
            elif isinstance(value, list):
                yield from (v for v in value if isinstance(v, str))


def _telecom(system: str | None) -> Callable[[Resource], Iterator[tuple[str | None, str]]]:
    def extract(r: Resource) -> Iterator[tuple[str | None, str]]:
        for contact in r.get("telecom") or ():
            if (system is None or contact.get("system") == system) and "value" in contact:
                yield contact.get("system"), contact["value"]

    return extract


def _identifiers(r: Resource) -> Iterator[tuple[str | None, str]]:
    for ident in r.get("identifier") or ():
        if "value" in ident:
            yield ident.get("system"), ident["value"]


def _codings(key: str) -> Callable[[Resource], Iterator[tuple[str | None, str]]]:
    def extract(r: Resource) -> Iterator[tuple[str | None, str]]:
        for concept in r.get(key) or ():
            for coding in concept.get("coding") or ():
                if "code" in coding:
                    yield coding.get("system"), coding["code"]

    return extract


def _plain(
    key: str, system: str | None = None
) -> Callable[[Resource], Iterator[tuple[str | None, str]]]:
    """The value under ``key`` as a token: a ``code`` element's with ``system``, the code
    system of its element's value set (R4 search, "token": the system is implicit)."""

    def extract(r: Resource) -> Iterator[tuple[str | None, str]]:
        value = r.get(key)
        if isinstance(value, bool):
            yield None, "true" if value else "false"
        elif value is not None:
            yield system, str(value)

    return extract


def actor_references(resource: Resource, kind: str | None = None) -> Iterator[str]:
    """The references of a resource's participants' actors (``kind``: only to that type),
    in order: ``Patient/{id}`` and the like."""
    for member in resource.get("participant") or ():
        actor = member.get("actor") if isinstance(member, dict) else None
        ref = actor.get("reference") if isinstance(actor, dict) else None
        if isinstance(ref, str) and (kind is None or ref.startswith(f"{kind}/")):
            yield ref


def _actors(kind: str | None) -> Callable[[Resource], Iterator[str]]:
    def extract(r: Resource) -> Iterator[str]:
        return actor_references(r, kind)

    return extract


def _text(*keys: str) -> Callable[[Resource], Iterator[str]]:
    """Plain strings (or lists of them) held under ``keys``: a Location's name and
    aliases, an Organization's."""

    def extract(r: Resource) -> Iterator[str]:
        for key in keys:
            value = r.get(key)
            if isinstance(value, str):
                yield value
            elif isinstance(value, list):
                yield from (v for v in value if isinstance(v, str))

    return extract


def _device_names(r: Resource) -> Iterator[str]:
    for entry in r.get("deviceName") or ():
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            yield name


def references(resource: Resource, key: str) -> Iterator[str]:
    """The literal references held under ``key``: one Reference or a list of them."""
    value = resource.get(key)
    for ref in value if isinstance(value, list) else (value,):
        target = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(target, str):
            yield target


def _refs(key: str) -> Callable[[Resource], Iterator[str]]:
    def extract(r: Resource) -> Iterator[str]:
        return references(r, key)

    return extract


def _schedule_actor(r: Resource) -> Iterator[str]:
    ref = (r.get("schedule") or {}).get("reference")
    if isinstance(ref, str) and ref.startswith("Schedule/"):
        yield "Practitioner/" + ref.split("/", 1)[1]


# The code system of each ``code`` element searched as a token: the system of the value
# set R4 binds it to (required bindings), which a ``system|code`` search names.
CODE_SYSTEMS = {
    ("Patient", "gender"): "http://hl7.org/fhir/administrative-gender",
    ("Appointment", "status"): "http://hl7.org/fhir/appointmentstatus",
    ("Slot", "status"): "http://hl7.org/fhir/slotstatus",
}

# The date parameters over ``instant`` elements: each value a point in time.
INSTANTS = frozenset({("Appointment", "date"), ("Slot", "start")})

# name -> (kind, extractor), per resource type.
KINDS: dict[str, dict[str, tuple[str, Callable[[Resource], Iterable[Any]]]]] = {
    "Patient": {
        "_id": ("token", _plain("id")),
        "name": ("string", lambda r: _names(r, ("text", "family", "given", "prefix", "suffix"))),
        "family": ("string", lambda r: _names(r, ("family",))),
        "given": ("string", lambda r: _names(r, ("given",))),
        "birthdate": ("date", lambda r: [r["birthDate"]] if "birthDate" in r else []),
        "gender": ("token", _plain("gender", CODE_SYSTEMS["Patient", "gender"])),
        "identifier": ("token", _identifiers),
        "phone": ("token", _telecom("phone")),
        "email": ("token", _telecom("email")),
        "telecom": ("token", _telecom(None)),
        "active": ("token", _plain("active")),
    },
    "Appointment": {
        "_id": ("token", _plain("id")),
        "status": ("token", _plain("status", CODE_SYSTEMS["Appointment", "status"])),
        "date": ("date", lambda r: [r["start"]] if "start" in r else []),
        "patient": ("reference", _actors("Patient")),
        "practitioner": ("reference", _actors("Practitioner")),
        "location": ("reference", _actors("Location")),
        "actor": ("reference", _actors(None)),
        "service-type": ("token", _codings("serviceType")),
    },
    # A Slot's Schedule has the id of the Practitioner whose free time it is.
    "Slot": {
        "_id": ("token", _plain("id")),
        "schedule": ("reference", _refs("schedule")),
        "schedule.actor": ("reference", _schedule_actor),
        "start": ("date", lambda r: [r["start"]] if "start" in r else []),
        "status": ("token", _plain("status", CODE_SYSTEMS["Slot", "status"])),
        "service-type": ("token", _codings("serviceType")),
    },
    "Practitioner": {
        "_id": ("token", _plain("id")),
        "name": ("string", lambda r: _names(r, ("text", "family", "given", "prefix", "suffix"))),
        "family": ("string", lambda r: _names(r, ("family",))),
        "given": ("string", lambda r: _names(r, ("given",))),
        "identifier": ("token", _identifiers),
    },
    "Device": {
        "_id": ("token", _plain("id")),
        "device-name": ("string", _device_names),
        "organization": ("reference", _refs("owner")),
        "location": ("reference", _refs("location")),
    },
    "Location": {
        "_id": ("token", _plain("id")),
        "name": ("string", _text("name", "alias")),
        "organization": ("reference", _refs("managingOrganization")),
    },
    "Organization": {
        "_id": ("token", _plain("id")),
        "name": ("string", _text("name", "alias")),
        "partof": ("reference", _refs("partOf")),
    },
    "HealthcareService": {
        "_id": ("token", _plain("id")),
        "name": ("string", _text("name")),
        "organization": ("reference", _refs("providedBy")),
        "location": ("reference", _refs("location")),
        "service-type": ("token", _codings("type")),
    },
    "Schedule": {
        "_id": ("token", _plain("id")),
        "actor": ("reference", _refs("actor")),
    },
}
MODIFIERS: dict[str, set[str | None]] = {
    "string": {None, "exact", "contains"},
    "token": {None},
    "reference": {None},
    "date": {None},
}


def string_matches(param: SearchParam, values: Iterable[str]) -> bool:
    """A string parameter (with ``:exact`` or ``:contains``) against the values held:
    ``:exact`` as written, else both as :func:`adapter.fhir.strings.search_text` (case,
    accents, punctuation and repeated whitespace set aside). A value that is nothing once
    so folded finds nothing."""
    if param.modifier == "exact":
        wanted = set(param.values)
        return any(v in wanted for v in values)
    needles = [n for v in param.values if (n := search_text(v))]
    folded = [search_text(v) for v in values]
    if param.modifier == "contains":
        return any(n in f for n in needles for f in folded)
    return any(f.startswith(n) for n in needles for f in folded)


def _token(value: str) -> tuple[str | None, str]:
    """(system, code) of a token value: ``code`` is (None, code), any system or none;
    ``|code`` is ("", code), no system; ``system|`` is (system, ""), any code of it."""
    if "|" not in value:
        return None, value
    system, _, code = value.rpartition("|")
    return system, code


def token_matches(
    param: SearchParam,
    values: Iterable[tuple[str | None, str]],
    same: Callable[[str | None, str, str], bool] | None = None,
) -> bool:
    """A token parameter against the (system, code) pairs held (R4 search, "token"):
    ``code`` finds the code in any system or none, ``system|code`` in that system,
    ``|code`` only where there is no system, and ``system|`` any code of the system.
    ``same(system, held, wanted)`` says whether a held code is the one wanted (default:
    equal)."""
    pairs = list(values)
    for wanted in param.values:
        system, code = _token(wanted)
        for have_system, have_code in pairs:
            if system is not None and (have_system or "") != system:
                continue
            if code == "" or (
                have_code == code if same is None else same(have_system, have_code, code)
            ):
                return True
    return False


def wanted_codes(param: SearchParam, system: str) -> frozenset[str] | None:
    """The codes a token parameter (its values ORed) finds on an element coded in
    ``system``: None when it finds every code, empty when it finds none. For a connector
    that asks its vendor for codes."""
    out: set[str] = set()
    for value in param.values:
        wanted_system, code = _token(value)
        if wanted_system is not None and wanted_system != system:
            continue  # another system, or none (``|code``): never this element's
        if code == "":
            return None
        out.add(code)
    return frozenset(out)


# Token parameters over ContactPoints: those whose system is ``phone`` compare as numbers.
_TELECOM_PARAMS = frozenset({"phone", "telecom"})


def _telecom_same(country: str | None) -> Callable[[str | None, str, str], bool]:
    def same(system: str | None, held: str, wanted: str) -> bool:
        if system == "phone":
            return same_number(held, search_number(wanted), country)
        return held == wanted

    return same


def _reference(param: SearchParam, refs: Iterable[str], default_type: str | None) -> bool:
    have = {ref.rsplit("/", 2)[-2] + "/" + ref.rsplit("/", 1)[-1] for ref in refs if "/" in ref}
    have_ids = {ref.rsplit("/", 1)[-1] for ref in have}
    for wanted in param.values:
        parts = wanted.rstrip("/").split("/")
        if len(parts) >= 2 and f"{parts[-2]}/{parts[-1]}" in have:
            return True
        if len(parts) == 1 and (
            parts[0] in have_ids if default_type is None else f"{default_type}/{parts[0]}" in have
        ):
            return True
    return False


def date_matches(
    param: SearchParam, values: Iterable[str], zone: tzinfo, *, instant: bool = False
) -> bool:
    """Whether any of ``values`` (FHIR dates, read in ``zone`` when they have no offset)
    meets the date parameter ``param``. ``instant``: the values are an ``instant``
    element's, each a point in time (:func:`adapter.fhir.dates.point`)."""
    targets = []
    for value in values:
        try:
            targets.append(point(value, zone) if instant else parse_range(value, zone))
        except ValueError:
            continue  # an unreadable stored value matches nothing
    for prefix, wanted in zip(param.value_prefixes(), _wanted_dates(param), strict=True):
        search = wanted.range(zone)
        if any(compare(prefix, search, target) for target in targets):
            return True
    return False


def _wanted_dates(param: SearchParam) -> tuple[FhirDate, ...]:
    """The search's dates: parsed with the search, or (a request built by hand) now."""
    if param.dates:
        return param.dates
    try:
        return tuple(parse_date(v) for v in param.values)
    except ValueError:
        raise UnsupportedParameter(param.name, "not a FHIR date") from None


# The type a bare id names, per reference parameter (``patient=123``: ``Patient/123``);
# parameters that may reference several types (``actor``) take a bare id of any of them.
_REF_TYPES = {
    "patient": "Patient",
    "practitioner": "Practitioner",
    "schedule.actor": "Practitioner",
    "schedule": "Schedule",
    "organization": "Organization",
    "partof": "Organization",
    "location": "Location",
}


def matches(
    resource: Resource, params: Iterable[SearchParam], zone: tzinfo, country: str | None = None
) -> bool:
    """Does ``resource`` satisfy every param (values ORed within a param)? ``zone`` and
    ``country`` (ISO 3166-1 alpha-2) are the source's: a date without a zone is read in
    ``zone``, a phone number without a country code in ``country`` (when known)."""
    table = KINDS.get(resource.get("resourceType", ""), {})
    for param in params:
        entry = table.get(param.name)
        if entry is None:
            raise UnsupportedParameter(param.name, "not a search parameter of this type")
        kind, extract = entry
        if param.modifier not in MODIFIERS[kind]:
            raise UnsupportedParameter(f"{param.name}:{param.modifier}", "modifier not supported")
        values = extract(resource)
        if kind == "string":
            ok = string_matches(param, values)
        elif kind == "token" and param.name in _TELECOM_PARAMS:
            ok = token_matches(param, values, _telecom_same(country))
        elif kind == "token":
            ok = token_matches(param, values)
        elif kind == "reference":
            ok = _reference(param, values, _REF_TYPES.get(param.name))
        else:
            instant = (resource.get("resourceType"), param.name) in INSTANTS
            ok = date_matches(param, values, zone, instant=instant)
        if not ok:
            return False
    return True
