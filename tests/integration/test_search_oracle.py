"""The facade against an evaluator of R4 search written from the specification alone
(:class:`search_oracle.Oracle`), over both sandboxes (:mod:`search_world`).

Every resource of every type is first listed through the facade; then a few hundred
searches, drawn from a seeded generator out of the values the resources hold (names cut
short, spaced and punctuated anew, tokens with and without their systems, references in
each form, dates at every precision with and without zones, moved a little either way,
with every prefix, ORed and ANDed), are asked of the facade page by page and of the
oracle over the listing. They must find the same resources; a ``total``, where given, is
their number. A source that cannot take a parameter is left out by the facade (with an
outcome entry), and so by the oracle.

Phone numbers are left to their own tests (``test_phone_search.py``): they match as
numbers, which no text evaluator can say.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from search_oracle import PREFIXES, Oracle, fold, references_of, strings_of, tokens_of
from search_world import ANCHOR, LEYR, NYRA, ZONES, search_world

pytestmark = pytest.mark.anyio

BASE = "http://fhir.test/fhir"
GENDER = "http://hl7.org/fhir/administrative-gender"
APPOINTMENT_STATUS = "http://hl7.org/fhir/appointmentstatus"
SLOT_STATUS = "http://hl7.org/fhir/slotstatus"
# Searches per type: about four hundred in all.
SEARCHES = {
    "Patient": 110,
    "Appointment": 110,
    "Slot": 50,
    "Practitioner": 30,
    "Location": 15,
    "Organization": 15,
    "HealthcareService": 20,
    "Device": 15,
    "Schedule": 20,
}
PARAMS = {
    "Patient": [
        "_id",
        "name",
        "family",
        "given",
        "birthdate",
        "gender",
        "identifier",
        "email",
        "active",
    ],
    "Appointment": ["_id", "patient", "practitioner", "actor", "date", "status", "service-type"],
    "Slot": ["_id", "start", "status", "service-type"],
    "Practitioner": ["_id", "name", "family", "given", "identifier"],
    "Location": ["_id", "name", "organization"],
    "Organization": ["_id", "name", "partof"],
    "HealthcareService": ["_id", "name", "organization", "location", "service-type"],
    "Device": ["_id", "device-name", "organization", "location"],
    "Schedule": ["_id", "actor"],
}
STRINGS = {"name", "family", "given", "device-name"}
REFERENCES = {"patient", "practitioner", "actor", "organization", "partof", "location", "schedule"}
DATES = {"birthdate": "birthDate", "date": "start", "start": "start"}
CODES = {
    "gender": ["male", "female", "other", "unknown"],
    "status": ["booked", "cancelled", "fulfilled", "noshow", "pending", "free", "busy"],
}
STEPS = [0, 1, -1, 500_000, -500_000, 10**6, -(10**6), 60 * 10**6, 3600 * 10**6]
STEPS += [86_400 * 10**6, -86_400 * 10**6, 40 * 86_400 * 10**6, -400 * 86_400 * 10**6]


@dataclass
class Universe:
    """Every resource the facade lists, by type; Slots as each source's free time in a
    week, with the parameters that ask for it."""

    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    slots: dict[str, tuple[list[tuple[str, str]], list[dict[str, Any]]]] = field(
        default_factory=dict
    )
    supported: dict[str, dict[str, set[str]]] = field(default_factory=dict)


async def _all(http: httpx.AsyncClient, resource_type: str, items: list[tuple[str, str]]):
    """Every match of a search, page after page, and the totals the pages gave."""
    response = await http.get(f"/fhir/{resource_type}", params=items)
    assert response.status_code == 200, (resource_type, items, response.text)
    bundle = response.json()
    found, totals = [], []
    while True:
        found += [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
        if "total" in bundle:
            totals.append(bundle["total"])
        following = next((x["url"] for x in bundle["link"] if x["relation"] == "next"), None)
        if following is None:
            return found, totals
        response = await http.get(following)
        assert response.status_code == 200, (resource_type, items, response.text)
        bundle = response.json()


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
async def world(tmp_path_factory):
    async with search_world(tmp_path_factory.mktemp("oracle")) as made:
        universe = Universe()
        for resource_type in SEARCHES:
            if resource_type != "Slot":
                found, _ = await _all(made.http, resource_type, [("_count", "100")])
                universe.resources[resource_type] = found
            declared = made.app.state.facade.declared
            universe.supported[resource_type] = {
                name: set(sources)
                for name, sources in declared.supported_params(resource_type).items()
            }
        window = [
            ("start", f"ge{ANCHOR + timedelta(days=1)}"),
            ("start", f"lt{ANCHOR + timedelta(5)}"),
        ]
        for source in (LEYR, NYRA):
            for doctor in universe.resources["Practitioner"]:
                if doctor["meta"]["source"] != source:
                    continue
                base = [("schedule.actor", f"Practitioner/{doctor['id']}"), *window]
                slots, _ = await _all(made.http, "Slot", [*base, ("_count", "100")])
                if slots:
                    universe.slots[source] = (base, slots)
                    break
        assert set(universe.slots) == {LEYR, NYRA}
        yield made, universe


class Draw:
    """Searches drawn from what the resources hold (see the module's description)."""

    def __init__(self, rng: random.Random, universe: Universe) -> None:
        self.rng = rng
        self.universe = universe

    def pick(self, items: list[Any]) -> Any:
        return self.rng.choice(items)

    def search(self, resource_type: str) -> list[tuple[str, str]]:
        rng = self.rng
        if resource_type == "Slot":
            base, slots = self.universe.slots[self.pick([LEYR, NYRA])]
            held, items = slots, list(base)
            if rng.random() < 0.3:  # the practitioner by the Schedule of the same id
                schedule = base[0][1].replace("Practitioner/", "")
                items[0] = ("schedule", self.pick([f"Schedule/{schedule}", schedule]))
        else:
            held, items = self.universe.resources[resource_type], []
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
            name = self.pick(PARAMS[resource_type])
            items.append(self.param(resource_type, name, held))
        if rng.random() < 0.15:
            items.append(("_source", self.pick([LEYR, NYRA, f"{LEYR},{NYRA}"])))
        elif rng.random() < 0.1:
            items.append(("_source:below", self.pick(["l", "leyr", "nyra-b", "n", "x"])))
        if rng.random() < 0.15:
            items.append(("_lastUpdated", self.dates(held, "_lastUpdated")))
        items.append(("_count", self.pick(["100", "100", "100", "13"])))
        return items

    def param(self, resource_type: str, name: str, held: list[dict[str, Any]]) -> tuple[str, str]:
        if name == "_id":
            ids = [r["id"] for r in self.rng.sample(held, min(len(held), self.rng.randint(1, 3)))]
            return "_id", ",".join(ids + ["nyra-b.no-such-one"] * (self.rng.random() < 0.3))
        if name in STRINGS:
            return self.string(resource_type, name, held)
        if name in DATES:
            return name, self.dates(held, DATES[name])
        if name in REFERENCES:
            return name, self.reference(resource_type, name, held)
        return name, self.token(resource_type, name, held)

    def string(self, resource_type: str, name: str, held: list[dict[str, Any]]) -> tuple[str, str]:
        rng = self.rng
        texts = [s for r in held for s in strings_of(resource_type, name, r) or []]
        if not texts:
            return name, "zz"
        text = self.pick(texts)
        modifier = rng.choice(["", "", "", "contains", "exact"])
        if modifier == "exact":
            return f"{name}:exact", rng.choice([text, text.lower(), text + " "])
        words = text.replace(".", ". ").split()
        spaced = self.pick(["  ", " ", ", ", ". ", " - "]).join(words)
        value = spaced[rng.randint(0, len(spaced) // 2) if modifier else 0 :]
        value = value[: rng.randint(1, len(value))] if rng.random() < 0.6 else value
        value = self.pick([value, value.lower(), value.upper(), fold(value)])
        if not fold(value):
            value = "a"
        key = f"{name}:{modifier}" if modifier else name
        return key, value

    def token(self, resource_type: str, name: str, held: list[dict[str, Any]]) -> str:
        rng = self.rng
        pairs = [p for r in held for p in tokens_of(resource_type, name, r) or []]
        values = []
        for _ in range(rng.choice([1, 1, 2])):
            system, code = self.pick(pairs) if pairs else (None, "x")
            if name in CODES and rng.random() < 0.3:
                code = self.pick(CODES[name])
            if name in ("email", "active"):
                values.append(code)  # ContactPoint and boolean: a value, no system
                continue
            forms = [code, f"|{code}", "urn:other|" + code]
            if system:
                forms += [f"{system}|{code}", f"{system}|{code}", f"{system}|"]
            values.append(self.pick(forms))
        return ",".join(values)

    def reference(self, resource_type: str, name: str, held: list[dict[str, Any]]) -> str:
        refs = [f for r in held for f in references_of(resource_type, name, r) or []]
        if not refs or self.rng.random() < 0.05:
            return "Patient/nyra-b.nobody"
        ref = self.pick(refs)
        return self.pick([ref, ref, ref.partition("/")[2], f"{BASE}/{ref}"])

    def dates(self, held: list[dict[str, Any]], element: str) -> str:
        rng = self.rng
        values = []
        for _ in range(rng.choice([1, 1, 1, 2])):
            r = self.pick(held)
            zone = ZoneInfo(ZONES[r["meta"]["source"]])
            written = r["meta"]["lastUpdated"] if element == "_lastUpdated" else r.get(element)
            if written is None:
                written = "1980-01-01"
            moment = datetime.fromisoformat(written.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
            moment += timedelta(microseconds=self.pick(STEPS))
            values.append(self.pick(PREFIXES) + self.written(moment, zone))
        return ",".join(values)

    def written(self, moment: datetime, zone: ZoneInfo) -> str:
        """``moment`` at a drawn precision, zoneless (in ``zone``), in UTC or an offset."""
        rng = self.rng
        kind = rng.choice(["local", "local", "utc", "offset"])
        if kind == "local":
            moment = moment.astimezone(zone)
        elif kind == "utc":
            moment = moment.astimezone(ZoneInfo("UTC"))
        else:
            moment = moment.astimezone(ZoneInfo(self.pick(["Asia/Tokyo", "America/Chicago"])))
        precision = rng.choice(["year", "month", "day", "day", "minute", "second", "fraction"])
        text = {
            "year": f"{moment:%Y}",
            "month": f"{moment:%Y-%m}",
            "day": f"{moment:%Y-%m-%d}",
            "minute": f"{moment:%Y-%m-%dT%H:%M}",
            "second": f"{moment:%Y-%m-%dT%H:%M:%S}",
            "fraction": f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}"[
                : 20 + rng.randint(1, 6)
            ],
        }[precision]
        if precision in ("year", "month", "day") or (kind == "local" and rng.random() < 0.6):
            return text
        if kind == "utc":
            return text + "Z"
        offset = moment.strftime("%z")
        return f"{text}{offset[:3]}:{offset[3:]}"


def _expected(
    oracle: Oracle,
    universe: Universe,
    resource_type: str,
    items: list[tuple[str, str]],
    held: list[dict[str, Any]],
) -> set[str]:
    """What R4 finds, at the sources the facade asks: those serving the type that take
    every parameter given, narrowed by ``_source``."""
    supported = universe.supported[resource_type]
    sources = {r["meta"]["source"] for r in held}
    searched = [(k, v) for k, v in items if k != "_count"]
    for key, _ in searched:
        name = key.partition(":")[0]
        if name not in ("_source", "_lastUpdated"):
            sources &= supported.get(name, set())
    return {
        r["id"]
        for r in held
        if r["meta"]["source"] in sources and oracle.matches(resource_type, r, searched)
    }


@pytest.mark.parametrize("resource_type", list(SEARCHES))
async def test_the_facade_finds_what_r4_finds(world, resource_type):
    made, universe = world
    zones = {source: ZoneInfo(zone) for source, zone in ZONES.items()}
    oracle = Oracle(zones, BASE, universe.resources["Schedule"])
    rng = random.Random(f"{resource_type}-{ANCHOR}")
    draw = Draw(rng, universe)
    disagreements = []
    for _ in range(SEARCHES[resource_type]):
        items = draw.search(resource_type)
        if resource_type == "Slot":
            actor = items[0][1].rpartition("/")[2]
            held = next(s for b, s in universe.slots.values() if b[0][1].endswith(actor))
        else:
            held = universe.resources[resource_type]
        expected = _expected(oracle, universe, resource_type, items, held)
        found, totals = await _all(made.http, resource_type, items)
        got = [r["id"] for r in found]
        if set(got) != expected or len(got) != len(set(got)) or any(t != len(got) for t in totals):
            disagreements.append(
                f"{resource_type}?{items}: facade {len(got)} (totals {totals}), R4 "
                f"{len(expected)}; only the facade: {sorted(set(got) - expected)[:3]}, "
                f"only R4: {sorted(expected - set(got))[:3]}"
            )
    assert not disagreements, "\n".join(disagreements[:8])
