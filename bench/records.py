"""Deterministic vendor-shaped records for benchmarks (no hypothesis: it is too slow to
make 100,000 records)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

SV_FIRST = ["Tolvan", "Anna", "Erik", "Karin", "Lars", "Maria", "Sven", "Åsa", "Björn", "Elin"]
SV_LAST = ["Tolvansson", "Andersson", "Johansson", "Karlsson", "Nilsson", "Öberg", "Lindqvist"]
IN_FIRST = ["Ravi", "Priya", "Arjun", "Ananya", "Vikram", "Sneha", "Rahul", "Kavya", "Rohan"]
IN_LAST = ["Kumar", "Rao", "Sharma", "Reddy", "Iyer", "Nair", "Patel", "Gupta", "Singh"]
STOCKHOLM = ZoneInfo("Europe/Stockholm")
KOLKATA = ZoneInfo("Asia/Kolkata")
BASE = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)


def _luhn(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def leyr_patients(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        born = datetime(1930, 1, 1) + timedelta(days=rng.randrange(30000))
        body = f"{born:%y%m%d}{rng.randrange(1000):03d}"
        first, last = rng.choice(SV_FIRST), rng.choice(SV_LAST)
        out.append(
            {
                "id": f"p-{i}",
                "emr_id": str(4000 + i),
                "care_unit_id": rng.choice(["L0_1", "L0_2"]),
                "first_name": first,
                "last_name": last,
                "external_id": f"{born.year // 100}{body}{_luhn(body)}",
                "phones": [f"+4670{rng.randrange(10**7):07d}"],
                "emails": [f"{first.lower()}.{i}@example.se"],
                "birth_date": born.date().isoformat(),
                "gender": rng.choice(["male", "female"]),
                "address": {
                    "line": [f"Storgatan {rng.randrange(1, 99)}"],
                    "postal_code": f"{rng.randrange(10000, 99999)}",
                    "city": "Stockholm",
                    "country": "SE",
                },
            }
        )
    return out


def leyr_appointments(n: int, seed: int = 2) -> list[dict]:
    rng = random.Random(seed)
    statuses = ["booked", "completed", "cancelled", "awaiting_confirmation", "no_show"]
    out = []
    for i in range(n):
        start = BASE + timedelta(minutes=15 * rng.randrange(-20000, 20000))
        end = (start + timedelta(minutes=30)).astimezone(STOCKHOLM)
        start = start.astimezone(STOCKHOLM)
        out.append(
            {
                "id": f"a-{i}",
                "status": rng.choice(statuses),
                "care_unit_id": "L0_1",
                "start": start.isoformat(),
                "end": end.isoformat(),
                "patient_id": f"p-{rng.randrange(n)}",
                "resource_id": f"doctor-{rng.randrange(50)}",
                "healthcare_service_id": f"service-{rng.randrange(10)}",
                "comment": "Follow-up consultation",
            }
        )
    return out


def nyra_patients(n: int, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        born = datetime(1940, 1, 1) + timedelta(days=rng.randrange(28000))
        created = BASE - timedelta(minutes=rng.randrange(500000))
        out.append(
            {
                "id": _uuid(rng),
                "name": f"{rng.choice(IN_FIRST)} {rng.choice(IN_LAST)}",
                "phone": f"{rng.choice('6789')}{rng.randrange(10**9):09d}",
                "age": 2026 - born.year,
                "gender": rng.choice(["MALE", "FEMALE"]),
                "date_of_birth": born.date().isoformat(),
                "email": f"user{rng.randrange(10**6)}@example.in",
                "address": "Kukatpally, Hyderabad",
                "status": "ACTIVE",
                "branch_id": _uuid(rng),
                "doctor_id": _uuid(rng),
                "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "updated_at": (created + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            }
        )
    return out


def nyra_appointments(n: int, seed: int = 4) -> list[dict]:
    rng = random.Random(seed)
    statuses = ["BOOKED", "CONFIRMED", "COMPLETED", "NO_SHOW", "CANCELLED"]
    out = []
    for _ in range(n):
        start = (BASE + timedelta(minutes=15 * rng.randrange(-20000, 20000))).astimezone(KOLKATA)
        out.append(
            {
                "id": _uuid(rng),
                "patient_id": _uuid(rng),
                "patient_name": f"{rng.choice(IN_FIRST)} {rng.choice(IN_LAST)}",
                "doctor_id": _uuid(rng),
                "doctor_name": "Dr. Priya Rao",
                "appointment_time": start.isoformat(),
                "status": rng.choice(statuses),
                "branch_id": _uuid(rng),
                "type": rng.choice(["CONSULTATION", "FOLLOW_UP", "CHECKUP"]),
                "notes": "Review of blood reports",
                "created_at": "2026-04-01T10:00:00.000Z",
            }
        )
    return out
