"""How the conformance suite drives each registered connector against its sandbox.

A connector joins the suite by having a :class:`Harness` here: how to start its vendor's
simulator, the source configuration that reaches it, and how to spoil that
configuration (bad credentials, a missing permission) for the failure cases. A connector
installed as its own package brings its harness under the entry point group
``fhir_adapter.harnesses``, named as the connector: an object with the same fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from adapter.connectors.registry import create_connector
from adapter.sandbox import ALL_PERMISSIONS, LeyrSandbox, NyraSandbox, RateLimits

# Nyra's limits with time scaled down 2,400-fold: the same counts per window, so the
# client's limiter is exercised, but a suite of hundreds of calls takes no minutes.
FAST = RateLimits(second_window=1 / 2400, minute_window=60 / 2400)


@dataclass(frozen=True)
class Harness:
    name: str
    make: Callable[..., Any]  # (seed, patients) -> sandbox
    spoil_credentials: Callable[[dict[str, Any]], dict[str, Any]]
    # (sandbox, config, permission) -> a config whose key lacks it; None: no permissions
    without_permission: Callable[[Any, dict[str, Any], str], dict[str, Any]] | None
    read_permission: dict[str, str]  # resource type -> vendor permission name


def _nyra_without(sandbox: NyraSandbox, config: dict[str, Any], permission: str) -> dict:
    grant = sandbox.issue_key(ALL_PERMISSIONS - {permission})
    return {**config, "keys": [grant.credentials()]}


HARNESSES = {
    "leyr": Harness(
        "leyr",
        lambda seed, patients: LeyrSandbox(seed=seed, patients=patients),
        lambda config: {**config, "client_secret": "not-the-secret"},
        None,
        {},
    ),
    "nyra": Harness(
        "nyra",
        lambda seed, patients: NyraSandbox(seed=seed, patients=patients, limits=FAST),
        lambda config: {
            **config,
            "keys": [{**config["keys"][0], "secret": "not-the-secret"}],
        },
        _nyra_without,
        {"Patient": "patients:read", "Appointment": "appointments:read"},
    ),
}


for _entry in entry_points(group="fhir_adapter.harnesses"):
    _plugged = _entry.load()
    HARNESSES[_entry.name] = Harness(
        _entry.name,
        _plugged.make,
        _plugged.spoil_credentials,
        _plugged.without_permission,
        dict(_plugged.read_permission),
    )


def source_config(name: str, sandbox: Any, **extra: Any) -> dict[str, Any]:
    return {"connector": name, **sandbox.defaults(), **extra}


def connect(name: str, sandbox: Any, config: dict[str, Any] | None = None, source: str = ""):
    config = config if config is not None else source_config(name, sandbox)
    return create_connector(source or f"{name}-test", config, transport=sandbox.transport())
