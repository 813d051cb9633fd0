"""Vendor-shaped records for benchmarks: ``n`` of each kind, from the sandboxes' seeded
generators (so the benchmarks read the same shapes the sandboxes serve)."""

from __future__ import annotations

from datetime import date

from adapter.sandbox.data import generate_leyr, generate_nyra

ANCHOR = date(2026, 4, 1)


def leyr_patients(n: int) -> list[dict]:
    return generate_leyr(1, n, ANCHOR).patients


def leyr_appointments(n: int) -> list[dict]:
    return generate_leyr(2, (n + 1) // 2, ANCHOR).appointments[:n]


def nyra_patients(n: int) -> list[dict]:
    return generate_nyra(3, n, ANCHOR).patients


def nyra_appointments(n: int) -> list[dict]:
    return generate_nyra(4, (n + 1) // 2, ANCHOR).appointments[:n]
