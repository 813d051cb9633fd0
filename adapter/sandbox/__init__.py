"""Vendor simulators: FastAPI apps that behave as the vendor contracts say.

Each runs in-process (``sandbox.transport()``, an httpx ASGI transport) or standalone
(``fhir-adapter sandbox nyra --port 5001``). :func:`sandbox_for` builds one from a
source's ``sandbox = {...}`` configuration (README, Configuration).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from adapter.sandbox.data import load_leyr, load_nyra
from adapter.sandbox.faults import Faults, SandboxTransport
from adapter.sandbox.leyr import LeyrSandbox
from adapter.sandbox.nyra import ALL_PERMISSIONS, NyraGrant, NyraSandbox, RateLimits

__all__ = [
    "ALL_PERMISSIONS",
    "Faults",
    "LeyrSandbox",
    "NyraGrant",
    "NyraSandbox",
    "RateLimits",
    "SandboxTransport",
    "sandbox_for",
]

Sandbox = LeyrSandbox | NyraSandbox
_KEYS = {"seed", "patients", "data", "faults", "keys", "rate_limit", "id_types"}


def sandbox_for(vendor: str, spec: Mapping[str, Any], source: Mapping[str, Any]) -> Sandbox:
    """The simulator a source's ``sandbox`` table asks for.

    ``spec``: ``seed`` and ``patients`` (generated data) or ``data`` (a vendor-shaped JSON
    file); optionally ``faults`` (see :class:`Faults`), and for Nyra ``keys`` (how many to
    issue) and ``rate_limit`` (default: the source's own ``rate_limit``, so both sides
    agree when windows are scaled down). The source's ``timezone`` (and for Leyr ``emr``)
    are used when given.
    """
    if not isinstance(spec, Mapping):
        raise ValueError("'sandbox' must be a table")
    unknown = set(spec) - _KEYS
    if unknown:
        raise ValueError(f"unknown sandbox key(s): {', '.join(sorted(unknown))}")
    faults = Faults.from_config(spec.get("faults"))
    seed = int(spec.get("seed", 7))
    patients = int(spec.get("patients", 200))
    zone = {"timezone": source["timezone"]} if source.get("timezone") else {}
    if vendor == "leyr":
        leyr_data = load_leyr(spec["data"]) if spec.get("data") else None
        extra = {"emr": source["emr"]} if source.get("emr") else {}
        if spec.get("id_types"):
            extra["id_types"] = tuple(spec["id_types"])
        return LeyrSandbox(leyr_data, seed=seed, patients=patients, faults=faults, **zone, **extra)
    if vendor == "nyra":
        nyra_data = load_nyra(spec["data"]) if spec.get("data") else None
        table = spec.get("rate_limit") or source.get("rate_limit") or {}
        known = {f.name for f in fields(RateLimits)}
        limits = RateLimits(**{k: v for k, v in table.items() if k in known})
        return NyraSandbox(
            nyra_data,
            seed=seed,
            patients=patients,
            keys=int(spec.get("keys", 1)),
            limits=limits,
            faults=faults,
            **zone,
        )
    raise ValueError(f"no sandbox for connector {vendor!r}")
