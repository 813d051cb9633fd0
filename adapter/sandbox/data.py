"""Synthetic vendor data, generated deterministically from a seed, or loaded from a file.

Generated records are shaped exactly as the vendor contracts show them. For a seed and an
anchor date the data is always the same; appointments lie within about a year either side
of the anchor (by default today), so there are always past and future ones, and every
status the vendor documents occurs.

A data file is vendor-shaped JSON (README, Configuration): ``{"patients": [...],
"appointments": [...]}`` plus ``care_units``, ``resources`` and ``healthcare_services``
(Leyr) or ``doctors`` (Nyra).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from adapter.sandbox.common import seeded_uuid, zulu

__all__ = [
    "LeyrData",
    "NyraData",
    "generate_leyr",
    "generate_nyra",
    "leyr_appointments",
    "leyr_patients",
    "load_leyr",
    "load_nyra",
    "luhn_digit",
    "nyra_appointments",
    "nyra_patients",
]

SWEDISH_FIRST = {
    "male": ["Erik", "Lars", "Karl", "Anders", "Johan", "Per", "Nils", "Sven", "Björn", "Olof"],
    "female": [
        "Anna",
        "Maria",
        "Karin",
        "Eva",
        "Kristina",
        "Lena",
        "Sara",
        "Åsa",
        "Elin",
        "Ingrid",
    ],
}
SWEDISH_LAST = [
    "Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson",
    "Persson", "Svensson", "Gustafsson", "Lindqvist", "Öberg", "Lindström", "Bergström",
]  # fmt: skip
INDIAN_FIRST = {
    "MALE": ["Ravi", "Arjun", "Vikram", "Rahul", "Rohan", "Suresh", "Anil", "Karthik", "Imran"],
    "FEMALE": ["Priya", "Ananya", "Sneha", "Kavya", "Lakshmi", "Divya", "Meera", "Fatima"],
}
INDIAN_LAST = [
    "Kumar", "Rao", "Sharma", "Reddy", "Iyer", "Nair", "Patel", "Gupta", "Singh", "Das",
    "Menon", "Khan", "Joshi", "Naidu",
]  # fmt: skip
HYDERABAD_AREAS = ["Kukatpally", "Madhapur", "Gachibowli", "Ameerpet", "Begumpet", "Kondapur"]
STOCKHOLM_STREETS = ["Storgatan", "Drottninggatan", "Sveavägen", "Götgatan", "Hornsgatan"]

LEYR_STATUSES = ("booked", "awaiting_confirmation", "completed", "cancelled", "no_show")
NYRA_STATUSES = ("BOOKED", "CONFIRMED", "COMPLETED", "NO_SHOW", "CANCELLED")
NYRA_TYPES = ("CONSULTATION", "FOLLOW_UP", "CHECKUP", "EMERGENCY")
STOCKHOLM = ZoneInfo("Europe/Stockholm")
KOLKATA = ZoneInfo("Asia/Kolkata")


def luhn_digit(digits: str) -> str:
    """The Luhn check digit for ``digits`` (as in a personnummer's last 10 digits)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def _birth(rng: random.Random, anchor: date) -> date:
    return anchor - timedelta(days=rng.randrange(365, 95 * 365))


def _personnummer(rng: random.Random, born: date, male: bool) -> str:
    serial = rng.randrange(100) * 10 + rng.choice((1, 3, 5, 7, 9) if male else (0, 2, 4, 6, 8))
    body = f"{born:%y%m%d}{serial:03d}"
    return f"{born.year // 100}{body}{luhn_digit(body)}"


def _indian_mobile(rng: random.Random) -> str:
    # Indian mobile numbers: 10 digits starting 6-9; Nyra stores some with +91, most without.
    number = f"{rng.choice('6789')}{rng.randrange(10**9):09d}"
    return f"+91{number}" if rng.random() < 0.2 else number


def _slot_start(rng: random.Random, anchor: date, zone: ZoneInfo, step: int) -> datetime:
    """A working-hours slot (09:00-16:45 local, on a ``step``-minute grid) within a year
    either side of the anchor."""
    day = anchor + timedelta(days=rng.randrange(-365, 366))
    while day.weekday() >= 5:
        day += timedelta(days=1)
    minutes = rng.randrange(0, (8 * 60) // step) * step
    return datetime.combine(day, time(9), zone) + timedelta(minutes=minutes)


# -- Leyr -----------------------------------------------------------------------------


@dataclass
class LeyrData:
    care_units: list[dict[str, Any]]
    patients: list[dict[str, Any]] = field(default_factory=list)
    appointments: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    healthcare_services: list[dict[str, Any]] = field(default_factory=list)


def leyr_patients(
    n: int,
    seed: int = 1,
    *,
    care_units: Sequence[str] = ("L0_1", "L0_2"),
    anchor: date | None = None,
) -> list[dict[str, Any]]:
    """``n`` Leyr patients from Swedish EHRs: valid personnummer, Swedish names."""
    rng = random.Random(seed)
    anchor = anchor or date(2026, 4, 1)
    out = []
    for i in range(n):
        gender = rng.choice(("male", "female"))
        born = _birth(rng, anchor)
        first, last = rng.choice(SWEDISH_FIRST[gender]), rng.choice(SWEDISH_LAST)
        record: dict[str, Any] = {
            "id": f"p-{1000 + i}",
            "emr_id": str(4000 + i),
            "care_unit_id": care_units[i % len(care_units)],
            "first_name": first,
            "last_name": last,
            "external_id": _personnummer(rng, born, gender == "male"),
            "phones": [f"+4670{rng.randrange(10**7):07d}"],
            "emails": [f"{first.lower()}.{last.lower()}{i}@example.se"],
            "birth_date": born.isoformat(),
            "gender": gender,
            "address": {
                "line": [f"{rng.choice(STOCKHOLM_STREETS)} {rng.randrange(1, 99)}"],
                "postal_code": f"{rng.randrange(10000, 99999)}",
                "city": "Stockholm",
                "country": "SE",
            },
        }
        if i % 17 == 5:
            record["gender"] = rng.choice(("other", "unknown"))
        if i % 23 == 7:
            del record["emails"]
        out.append(record)
    return out


def leyr_appointments(
    patients: list[dict[str, Any]],
    per_patient: float,
    seed: int = 2,
    *,
    resources: dict[str, list[str]],
    services: dict[str, list[tuple[str, int]]],
    anchor: date | None = None,
) -> list[dict[str, Any]]:
    """About ``per_patient`` appointments per patient, in the patient's care unit."""
    rng = random.Random(seed)
    anchor = anchor or date(2026, 4, 1)
    out = []
    count = round(len(patients) * per_patient)
    for i in range(count):
        patient = patients[rng.randrange(len(patients))]
        cu = patient["care_unit_id"]
        service, minutes = rng.choice(services[cu])
        start = _slot_start(rng, anchor, STOCKHOLM, 15)
        # The first appointments cycle through every status; then mostly booked/completed.
        if i < len(LEYR_STATUSES):
            status = LEYR_STATUSES[i]
        else:
            past = start.date() < anchor
            status = rng.choice(
                ("completed", "completed", "cancelled", "no_show") if past else ("booked",) * 4
            )
        out.append(
            {
                "id": f"a-{500 + i}",
                "status": status,
                "care_unit_id": cu,
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=minutes)).isoformat(),
                "patient_id": patient["id"],
                "resource_id": rng.choice(resources[cu]),
                "healthcare_service_id": service,
                "comment": rng.choice(("First consultation", "Follow-up", "Vaccination", "")),
            }
        )
    for a in out:
        if not a["comment"]:
            del a["comment"]
    return out


def generate_leyr(seed: int = 7, patients: int = 200, anchor: date | None = None) -> LeyrData:
    """A Swedish EHR with two care units (``L0_1``, ``L0_2``, as in Leyr's test data)."""
    anchor = anchor or datetime.now(UTC).date()
    rng = random.Random(seed)
    units: list[dict[str, Any]] = [
        {"id": "L0_1", "name": "Vårdcentralen Söder"},
        {"id": "L0_2", "name": "Vårdcentralen Norr", "cancel_requires_confirmation": True},
    ]
    resources: list[dict[str, Any]] = []
    by_unit: dict[str, list[str]] = {}
    for n, cu in enumerate(u["id"] for u in units):
        ids = []
        for j in range(3):
            gender = rng.choice(("male", "female"))
            rid = f"doctor-{n * 10 + j + 1}"
            resources.append(
                {
                    "id": rid,
                    "name": f"Dr. {rng.choice(SWEDISH_FIRST[gender])} {rng.choice(SWEDISH_LAST)}",
                    "type": "practitioner",
                    "hsa_id": f"SE2321000131-E{rng.randrange(10**12):012d}",
                    "care_unit_id": cu,
                }
            )
            ids.append(rid)
        by_unit[cu] = ids
        # A room each: Leyr's resources are practitioners and equipment.
        resources.append(
            {
                "id": f"room-{n + 1}",
                "name": f"Ultraljudsrum {n + 1}",
                "type": "equipment",
                "care_unit_id": cu,
            }
        )
    services: list[dict[str, Any]] = []
    svc_by_unit: dict[str, list[tuple[str, int]]] = {}
    for cu in by_unit:
        svc_by_unit[cu] = []
        for k, (name, minutes) in enumerate(
            (("Läkarbesök", 30), ("Sjuksköterskebesök", 15), ("Vaccination", 15))
        ):
            sid = f"service-{cu.lower()}-{k + 1}"
            services.append(
                {"id": sid, "name": name, "duration_minutes": minutes, "care_unit_id": cu}
            )
            svc_by_unit[cu].append((sid, minutes))
    people = leyr_patients(patients, seed, care_units=[u["id"] for u in units], anchor=anchor)
    appts = (
        leyr_appointments(
            people, 2.0, seed + 1, resources=by_unit, services=svc_by_unit, anchor=anchor
        )
        if people
        else []
    )
    return LeyrData(units, people, appts, resources, services)


def load_leyr(path: str | Path) -> LeyrData:
    body = _load(path)
    patients = body.get("patients", [])
    units = body.get("care_units") or [
        {"id": cu} for cu in sorted({str(p.get("care_unit_id")) for p in patients})
    ]
    return LeyrData(
        units,
        patients,
        body.get("appointments", []),
        body.get("resources", []),
        body.get("healthcare_services", []),
    )


# -- Nyra -----------------------------------------------------------------------------


@dataclass
class NyraData:
    patients: list[dict[str, Any]] = field(default_factory=list)
    appointments: list[dict[str, Any]] = field(default_factory=list)
    doctors: list[dict[str, Any]] = field(default_factory=list)


def nyra_patients(
    n: int,
    seed: int = 3,
    *,
    branches: Sequence[str] | None = None,
    doctors: Sequence[str] | None = None,
    anchor: date | None = None,
) -> list[dict[str, Any]]:
    """``n`` Nyra patients of a Hyderabad hospital: Indian names and mobile numbers."""
    rng = random.Random(seed)
    anchor = anchor or date(2026, 4, 1)
    branches = branches or [seeded_uuid(rng)]
    doctors = doctors or [seeded_uuid(rng)]
    out = []
    for i in range(n):
        gender = rng.choice(("MALE", "FEMALE"))
        born = _birth(rng, anchor)
        created = datetime.combine(anchor, time(8), UTC) - timedelta(minutes=rng.randrange(500000))
        first, last = rng.choice(INDIAN_FIRST[gender]), rng.choice(INDIAN_LAST)
        record: dict[str, Any] = {
            "id": seeded_uuid(rng),
            "name": f"{first} {last}",
            "phone": _indian_mobile(rng),
            "age": anchor.year - born.year - ((anchor.month, anchor.day) < (born.month, born.day)),
            "gender": gender,
            "date_of_birth": born.isoformat(),
            "email": f"{first.lower()}.{last.lower()}{i}@example.in",
            "address": f"{rng.choice(HYDERABAD_AREAS)}, Hyderabad",
            "status": "INACTIVE" if i % 13 == 4 else "ACTIVE",
            "branch_id": branches[i % len(branches)],
            "doctor_id": rng.choice(doctors),
            "created_at": zulu(created),
            "updated_at": zulu(created + timedelta(hours=rng.randrange(1, 48))),
        }
        if i % 11 == 3:
            record["gender"] = "OTHER"
        if i % 19 == 6:
            del record["email"]
        out.append(record)
    return out


def nyra_appointments(
    patients: list[dict[str, Any]],
    per_patient: float,
    seed: int = 4,
    *,
    doctors: list[dict[str, Any]],
    anchor: date | None = None,
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    anchor = anchor or date(2026, 4, 1)
    out = []
    for i in range(round(len(patients) * per_patient)):
        patient = patients[rng.randrange(len(patients))]
        doctor = rng.choice(doctors)
        start = _slot_start(rng, anchor, KOLKATA, doctor.get("slot_duration_minutes", 15))
        if i < len(NYRA_STATUSES):
            status = NYRA_STATUSES[i]
        elif start.date() < anchor:
            status = rng.choice(("COMPLETED", "COMPLETED", "NO_SHOW", "CANCELLED"))
        else:
            status = rng.choice(("BOOKED", "BOOKED", "CONFIRMED"))
        created = min(start, datetime.combine(anchor, time(8), UTC)) - timedelta(days=3)
        out.append(
            {
                "id": seeded_uuid(rng),
                "patient_id": patient["id"],
                "patient_name": patient["name"],
                "doctor_id": doctor["id"],
                "doctor_name": doctor["name"],
                "appointment_time": start.isoformat(),
                "status": status,
                "branch_id": patient["branch_id"],
                "type": rng.choice(NYRA_TYPES),
                "notes": rng.choice(("Review of blood reports", "Fever for 3 days", "")),
                "created_at": zulu(created),
            }
        )
    return out


def generate_nyra(seed: int = 7, patients: int = 200, anchor: date | None = None) -> NyraData:
    """A hospital with two branches and four doctors, whose slots last 15, 20, 30 and 15
    minutes."""
    anchor = anchor or datetime.now(UTC).date()
    rng = random.Random(seed)
    branches = [seeded_uuid(rng), seeded_uuid(rng)]
    doctors: list[dict[str, Any]] = []
    for j in range(4):
        gender = rng.choice(("MALE", "FEMALE"))
        doctors.append(
            {
                "id": seeded_uuid(rng),
                "name": f"Dr. {rng.choice(INDIAN_FIRST[gender])} {rng.choice(INDIAN_LAST)}",
                "branch_id": branches[j % 2],
                "specialization": ("General Medicine", "Cardiology", "Paediatrics", "ENT")[j],
                "slot_duration_minutes": (15, 20, 30, 15)[j],
                "consultation_fee": 500 + 100 * j,
            }
        )
    people = nyra_patients(
        patients, seed, branches=branches, doctors=[d["id"] for d in doctors], anchor=anchor
    )
    appts = (
        nyra_appointments(people, 2.0, seed + 1, doctors=doctors, anchor=anchor) if people else []
    )
    return NyraData(people, appts, doctors)


def load_nyra(path: str | Path) -> NyraData:
    body = _load(path)
    return NyraData(body.get("patients", []), body.get("appointments", []), body.get("doctors", []))


def _load(path: str | Path) -> dict[str, Any]:
    body = orjson.loads(Path(path).read_bytes())
    if not isinstance(body, dict):
        raise ValueError(f"{path}: a sandbox data file holds one JSON object")
    return body
