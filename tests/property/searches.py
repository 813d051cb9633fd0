"""Searches with anything in them, as hypothesis strategies: every search parameter the
CapabilityStatement lists for a type, and the result parameters every type takes, with
values of their kind and of no kind at all (dates with every prefix and some that are
none, partial and impossible dates, token ``system|code`` forms, references to records
that exist and to none, text in any script, comma-separated alternatives with escapes,
modifiers FHIR defines and made-up ones, cursors that were never signed).

Drawn by ``tests/property/test_search_fuzz.py`` and timed by ``bench/bench_hostile.py``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import httpx
from hypothesis import strategies as st

__all__ = ["known", "searches"]

FHIR_PREFIXES = ("", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "xx", "EQ", "")
MODIFIERS = (
    "exact",
    "contains",
    "missing",
    "not",
    "text",
    "above",
    "below",
    "in",
    "not-in",
    "of-type",
    "identifier",
    "iterate",
    "Patient",
    "Practitioner",
    "",
    "exact:contains",
)
RESULT_VALUES = {
    "_count": st.one_of(
        st.integers(-5, 2000).map(str), st.sampled_from(["", "1e3", "0x10", "１２", "9" * 7])
    ),
    "_summary": st.sampled_from(["count", "true", "false", "text", "data", "COUNT", ""]),
    "_total": st.sampled_from(["none", "estimate", "accurate", "all", ""]),
    "_include": st.sampled_from(
        ["Appointment:patient", "Appointment:practitioner", "Appointment:*", "*", "Patient:x", ""]
    ),
    "_sort": st.sampled_from(
        ["date", "-date", "_id", "birthdate,-name", "-_lastUpdated,start", "name,,x", "-", ""]
    ),
    "_elements": st.sampled_from(["id", "name,birthDate", "deceased,nonsense", ",", ""]),
    "_format": st.sampled_from(["json", "application/fhir+json", "xml", "text/html", ""]),
    "_pretty": st.sampled_from(["true", "false", "yes"]),
    "_cursor": st.one_of(st.text(max_size=40), st.binary(max_size=30).map(bytes.hex)),
    "_source": st.sampled_from(["leyr-a", "nyra-b", "other", "leyr-a,nyra-b", ""]),
    "_id": st.text(max_size=30),
}
WELLFORMED = {
    "_count": st.integers(0, 150).map(str),
    "_summary": st.sampled_from(["count", "false"]),
    "_total": st.sampled_from(["none", "estimate", "accurate"]),
    "_include": st.sampled_from(["Appointment:patient"]),
    "_format": st.sampled_from(["json", "application/fhir+json"]),
    "_pretty": st.sampled_from(["true", "false"]),
    "_source": st.sampled_from(["leyr-a", "nyra-b", "leyr-a,nyra-b"]),
    "_id": st.sampled_from(["leyr-a.x", "nyra-b.1"]),
    "_sort": st.sampled_from(["_id", "-_lastUpdated"]),
    "_elements": st.sampled_from(["id", "meta"]),
    "_lastUpdated": st.sampled_from(["ge2020-01-01", "lt2100"]),
}
# Text as clients type it and as they should not: any script, accents as combining marks,
# the characters FHIR escapes (\\ , $ |), controls, and whitespace alone.
texts = st.one_of(
    st.text(max_size=24),
    st.text(st.characters(codec="utf-8"), max_size=8),
    st.sampled_from(["", " ", "\\", "\\,", "a\\,b", "$", "|", "||", "Åsa", "e\u0301", "\x00"]),
)
dates = st.one_of(
    st.dates().map(lambda d: d.isoformat()),
    st.dates().map(lambda d: d.isoformat()[:7]),
    st.integers(-1, 10000).map(str),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.datetimes().map(lambda d: d.isoformat(timespec="microseconds") + "+05:30"),
    st.sampled_from(
        [
            "2026-02-29",
            "2024-02-29T24:00:00Z",
            "2024-13-01",
            "2024-06-31",
            "2024-06-01T10:00",
            "2024-06-01T10:00:60Z",
            "2024-06-01T10:00:00.1234567890+14:00",
            "2024-06-01T10:00:00-24:00",
            "0000-01-01",
            "9999-12-31T23:59:59.999Z",
            "2024-W23",
            "today",
        ]
    ),
    texts,
)


RESULT_VALUES["_lastUpdated"] = st.tuples(st.sampled_from(PREFIXES), dates).map("".join)


def tokens() -> st.SearchStrategy[str]:
    code = st.one_of(st.from_regex(r"[A-Za-z0-9._-]{0,12}", fullmatch=True), texts)
    system = st.sampled_from(
        ["", "http://hl7.org/fhir/sid/us-ssn", "urn:oid:1.2.752.129.2.1.3.1", "x", "|"]
    )
    return st.one_of(
        code,
        st.tuples(system, code).map("|".join),
        st.sampled_from(["male", "female", "booked", "cancelled", "true", "false", "free"]),
    )


def values_of(kind: str, references: list[str], wellformed: bool) -> st.SearchStrategy[str]:
    """One value of a search parameter of ``kind``, prefixed where FHIR prefixes it; a
    ``wellformed`` one as FHIR means it (which may still match nothing)."""
    if kind == "date":
        if wellformed:
            day = st.one_of(
                st.dates(date(1900, 1, 1), date(2100, 12, 31)).map(date.isoformat),
                st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1)).map(
                    lambda d: d.isoformat(timespec="seconds") + "Z"
                ),
                st.integers(1900, 2100).map(str),
            )
            return st.tuples(st.sampled_from(FHIR_PREFIXES), day).map("".join)
        return st.tuples(st.sampled_from(PREFIXES), dates).map("".join)
    if kind == "reference":
        if wellformed:
            return st.sampled_from(references)
        return st.one_of(
            st.sampled_from(references),
            st.sampled_from(references).map(lambda r: r.split("/", 1)[-1]),
            st.sampled_from(references).map(lambda r: "http://fhir.test/fhir/" + r),
            st.tuples(st.sampled_from(["Patient/", "Practitioner/", "Slot/", ""]), texts).map(
                "".join
            ),
        )
    if kind == "token":
        return tokens()
    if kind == "uri":
        return RESULT_VALUES["_source"]
    if wellformed:
        return st.sampled_from(["a", "An", "Berg", "Kumar", "Åsa", "jo", "ra", "e"])
    return texts


@st.composite
def searches(
    draw, params: dict, references: list[str], today: date
) -> tuple[str, list[tuple[str, str]]]:
    """(resource type, query items) of one search: half of them well formed (FHIR's
    modifiers and prefixes, values of the parameter's kind), which reach the sources and
    their matching; the rest anything. ``today`` is the day the sandboxes' clocks read:
    the Slot windows are drawn around it, so that the same draw asks the same on any day."""
    resource_type = draw(st.sampled_from(sorted(params)))
    listed = params[resource_type]
    wellformed = draw(st.booleans())
    items = []
    if resource_type == "Slot" and wellformed:  # a practitioner's free time, in a window
        doctors = [r for r in references if r.startswith("Practitioner/")]
        first = draw(st.dates(today - timedelta(days=3), today + timedelta(60)))
        last = first + timedelta(days=draw(st.integers(1, 35)))
        items.append(("schedule.actor", draw(st.sampled_from(doctors))))
        items += [("start", f"ge{first.isoformat()}"), ("start", f"lt{last.isoformat()}")]
    for _ in range(draw(st.integers(0, 4 if wellformed else 6))):
        choice = draw(st.integers(0, 9))
        if choice < 7 and listed:  # a parameter the CapabilityStatement lists
            name, kind = draw(st.sampled_from(listed))
            if wellformed and kind == "string" and draw(st.booleans()):
                name += ":" + draw(st.sampled_from(["exact", "contains"]))
            elif not wellformed and draw(st.integers(0, 2)) == 0:
                name += ":" + draw(st.sampled_from(MODIFIERS) | texts)
            values = values_of(kind, references, wellformed)
            alternatives = draw(st.lists(values, min_size=1, max_size=3))
            items.append((name, ",".join(alternatives)))
        elif choice < 9 or wellformed:  # a result parameter
            name = draw(st.sampled_from(sorted(RESULT_VALUES)))
            value = draw(
                WELLFORMED.get(name, RESULT_VALUES[name]) if wellformed else RESULT_VALUES[name]
            )
            items.append((name, value))
        else:  # no parameter of anyone's
            items.append((draw(texts), draw(texts)))
    return resource_type, items


async def known(client: httpx.AsyncClient) -> tuple[dict, list[str]]:
    """What searches are drawn from: the parameters the CapabilityStatement lists for
    each type (name, type), and references to records that exist."""
    statement = (await client.get("/fhir/metadata")).json()
    params = {
        r["type"]: [(p["name"], p["type"]) for p in r.get("searchParam", [])]
        for r in statement["rest"][0]["resource"]
    }
    references = []
    for kind in ("Patient", "Appointment"):
        bundle = (await client.get(f"/fhir/{kind}", params={"_count": "10"})).json()
        for entry in bundle.get("entry", []):
            if entry["search"]["mode"] == "outcome":  # a note (a budget wait, say)
                continue
            resource = entry["resource"]
            references.append(f"{kind}/{resource['id']}")
            for who in resource.get("participant", []):
                references.append(who.get("actor", {}).get("reference", ""))
    return params, sorted({r for r in references if r})
