"""OperationOutcome: every answer of the facade that is not 2xx is one.

:class:`FhirError` is a status, the issues that explain it, and headers (``Retry-After``).
:func:`adapter.facade.failures.outcome_of` is the one place any exception becomes one.
Diagnostics name sources, parameters and vendor vocabulary, never patient data or
credentials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FhirError", "Issue", "operation_outcome", "whole_seconds"]


@dataclass(frozen=True)
class Issue:
    severity: str  # fatal | error | warning | information
    code: str  # http://hl7.org/fhir/R4/valueset-issue-type.html
    diagnostics: str
    expression: tuple[str, ...] = ()

    def as_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(*issues: Issue) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.as_fhir() for i in issues]}


@dataclass
class FhirError(Exception):
    status: int
    issues: list[Issue]
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.status, "; ".join(i.diagnostics for i in self.issues))

    @classmethod
    def one(
        cls, status: int, code: str, diagnostics: str, *expression: str, **headers: str
    ) -> FhirError:
        return cls(status, [Issue("error", code, diagnostics, expression)], headers)

    def body(self) -> dict[str, Any]:
        return operation_outcome(*self.issues)

    @property
    def retry_after(self) -> int | None:
        value = self.headers.get("Retry-After")
        return int(value) if value is not None and value.isdigit() else None


def whole_seconds(seconds: float) -> int:
    """A wait as ``Retry-After`` says it: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds))
