"""What the facade's conformance suite needs to run this connector: its harness.

Found through the entry point group ``fhir_adapter.harnesses`` under the connector's own
name; the suite builds the sandbox with ``make(seed, patients)``, configures a source
with ``sandbox.defaults()`` and reaches it through ``sandbox.transport()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_upstream_connector.sandbox import FhirSandbox

__all__ = ["HARNESS", "UpstreamHarness"]


def _spoiled(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "auth": {"type": "bearer", "token": "not-the-secret"}}


@dataclass(frozen=True)
class UpstreamHarness:
    name: str = "fhir-upstream"
    # A bearer token has no per-resource permissions: those cases do not apply.
    without_permission: Any = None
    read_permission: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def make(seed: int, patients: int) -> FhirSandbox:
        return FhirSandbox(seed=seed, patients=patients)

    @staticmethod
    def spoil_credentials(config: dict[str, Any]) -> dict[str, Any]:
        return _spoiled(config)


HARNESS = UpstreamHarness()
