"""The records of one simulated hospital, its doctors' weekly availability, the API keys
it issued, and the lookups the routes and rules make (branch visibility, free slots)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

from adapter.sandbox.common import Record, Table, random_hex, seeded_uuid, zulu
from adapter.sandbox.data import NyraData, generate_nyra
from adapter.sandbox.faults import Faults
from adapter.sandbox.nyra.errors import not_found
from adapter.sandbox.nyra.keys import ALL_PERMISSIONS, NyraGrant, RateLimits

__all__ = ["WEEKDAYS", "NyraState", "sees"]

WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")


class NyraState:
    """Seeded (or loaded) data of one hospital, its keys, and the lookups over them."""

    def __init__(
        self,
        data: NyraData | None,
        *,
        seed: int,
        patients: int,
        keys: int,
        timezone: str,
        limits: RateLimits,
        faults: Faults,
        clock: Callable[[], float],
    ) -> None:
        self.data = data if data is not None else generate_nyra(seed, patients)
        self.zone = ZoneInfo(timezone)
        self.timezone = timezone
        self.limits = limits
        self.faults = faults
        self.clock = clock
        # One generator, drawn in a fixed order: the same seed gives the same keys and ids.
        self.rng = random.Random(seed)
        self.patients = Table(self.data.patients)
        self.appointments = Table(self.data.appointments)
        self.doctors = Table(self.data.doctors)
        self.availability = {d["id"]: _default_availability(d) for d in self.doctors}
        self.grants: dict[str, NyraGrant] = {}
        for _ in range(keys):
            self.issue_key()

    # -- keys ---------------------------------------------------------------------------

    def issue_key(
        self,
        permissions: frozenset[str] | set[str] = ALL_PERMISSIONS,
        *,
        branch_id: str | None = None,
        ttl: float = 24 * 3600,
    ) -> NyraGrant:
        """A new API key (hospital token valid for ``ttl`` seconds, about 24 h by default)."""
        unknown = set(permissions) - ALL_PERMISSIONS
        if unknown:
            raise ValueError(f"unknown Nyra permission(s): {sorted(unknown)}")
        grant = NyraGrant(
            key="nyra_" + random_hex(16, self.rng),
            secret=random_hex(24, self.rng),
            token=random_hex(32, self.rng),
            permissions=frozenset(permissions),
            branch_id=branch_id,
            token_expires_at=self.clock() + ttl,
        )
        self.grants[grant.key] = grant
        return grant

    def expire_token(self, grant: NyraGrant) -> None:
        grant.token_expires_at = self.clock() - 1

    def api_keys(self) -> list[NyraGrant]:
        return list(self.grants.values())

    def limited_total(self) -> int:
        """429s answered so far, over every key."""
        return sum(g.limited for g in self.grants.values())

    def per_minute_window(self) -> Counter[int]:
        """Requests counted in each minute window (by its number), over every key."""
        return sum((g.minutes for g in self.grants.values()), Counter())

    # -- lookups ------------------------------------------------------------------------

    def new_id(self) -> str:
        return seeded_uuid(self.rng)

    def today(self) -> date:
        return datetime.fromtimestamp(self.clock(), self.zone).date()

    def now_z(self) -> str:
        return zulu(datetime.fromtimestamp(self.clock(), UTC))

    def visible(self, table: Table, grant: NyraGrant, branch: str | None) -> list[Record]:
        # A branch-locked key ignores the branch_id filter and sees only its branch.
        branch = grant.branch_id or branch
        return [r for r in table if r.get("branch_id") == branch] if branch else list(table)

    def one(self, table: Table, record_id: str, grant: NyraGrant, kind: str) -> Record:
        record = table.get(record_id)
        if record is None or not sees(grant, record):
            raise not_found(kind)
        return record

    def local_day(self, appointment: Record) -> date | None:
        try:
            return (
                datetime.fromisoformat(appointment["appointment_time"]).astimezone(self.zone).date()
            )
        except (KeyError, TypeError, ValueError):
            return None

    def first_branch(self) -> str | None:
        for doctor in self.doctors:
            if doctor.get("branch_id"):
                branch: str = doctor["branch_id"]
                return branch
        return None

    def free_slots(self, doctor_id: str, day: date) -> list[tuple[datetime, datetime]]:
        """The doctor's slots on ``day`` (naive local times) that no active appointment
        holds."""
        plan = self.availability[doctor_id]
        step = timedelta(minutes=plan["slot_duration_minutes"])
        taken_at = self._taken(doctor_id)
        out = []
        for r in plan["weekly"].get(WEEKDAYS[day.weekday()], []):
            start = datetime.combine(day, clock_time.fromisoformat(r["start"]))
            end = datetime.combine(day, clock_time.fromisoformat(r["end"]))
            while start + step <= end:
                if start not in taken_at:
                    out.append((start, start + step))
                start += step
        return out

    def _taken(self, doctor_id: str) -> set[datetime]:
        taken = {
            a["appointment_time"]
            for a in self.appointments
            if a.get("doctor_id") == doctor_id and a.get("status") != "CANCELLED"
        }
        taken_at = set()
        for text in taken:
            try:
                taken_at.add(
                    datetime.fromisoformat(text).astimezone(self.zone).replace(tzinfo=None)
                )
            except (TypeError, ValueError):
                continue
        return taken_at


def sees(grant: NyraGrant, record: Record) -> bool:
    return grant.branch_id is None or record.get("branch_id") == grant.branch_id


def _default_availability(doctor: Record) -> Record:
    hours = [{"start": "09:00", "end": "17:00"}]
    return {
        "doctor_id": doctor["id"],
        "slot_duration_minutes": doctor.get("slot_duration_minutes", 15),
        "consultation_fee": doctor.get("consultation_fee", 500),
        "weekly": {day: (hours if i < 5 else []) for i, day in enumerate(WEEKDAYS)},
    }
