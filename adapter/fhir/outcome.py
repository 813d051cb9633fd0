"""OperationOutcome: every answer of the facade that is not 2xx is one.

:class:`FhirError` is what routes and the facade raise; the app's one exception handler
turns it (and anything unexpected) into an OperationOutcome with the right status.
Diagnostics name sources, parameters and vendor vocabulary, never patient data or
credentials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapter.transport import (
    AuthenticationRejected,
    MalformedResponse,
    NotFound,
    PermissionMissing,
    RateLimited,
    VendorError,
    VendorTimeout,
    VendorUnavailable,
    VendorValidation,
)
from mappings import MappingError

__all__ = ["FhirError", "Issue", "from_exception", "issue", "operation_outcome"]


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


def issue(severity: str, code: str, diagnostics: str, *expression: str) -> Issue:
    return Issue(severity, code, diagnostics, expression)


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


def _retry_headers(exc: VendorError) -> dict[str, str]:
    after = getattr(exc, "retry_after", None)
    return {"Retry-After": str(max(1, round(after)))} if after is not None else {}


def vendor_issue(exc: VendorError | MappingError, source: str | None = None) -> tuple[int, Issue]:
    """The status and issue a vendor failure becomes (for one source)."""
    where = getattr(exc, "source", None) or source or "a source"
    if isinstance(exc, MappingError):
        return 502, Issue(
            "error", "processing", f"source {where} sent a record that cannot be mapped: {exc}"
        )
    if isinstance(exc, VendorTimeout):
        return 504, Issue("error", "timeout", f"source {where} did not answer in time")
    if isinstance(exc, RateLimited):
        return 503, Issue("error", "throttled", f"source {where} is rate limiting; try later")
    if isinstance(exc, VendorUnavailable):
        status = 503 if exc.status in (None, 503) else 502
        return status, Issue("error", "transient", f"source {where} is unavailable")
    if isinstance(exc, AuthenticationRejected):
        return 502, Issue(
            "error",
            "security",
            f"source {where} refused this service's credentials; they must be rotated",
        )
    if isinstance(exc, PermissionMissing):
        what = f"the permission {exc.permission}" if exc.permission else "a permission"
        return 502, Issue("error", "security", f"source {where}: the API key lacks {what}")
    if isinstance(exc, NotFound):
        return 404, Issue("error", "not-found", f"source {where}: not found")
    if isinstance(exc, VendorValidation):
        codes = ", ".join(exc.error_codes) or "no error code"
        return 502, Issue("error", "processing", f"source {where} refused the request ({codes})")
    if isinstance(exc, MalformedResponse):
        return 502, Issue("error", "processing", f"source {where} sent an unreadable answer")
    return 502, Issue("error", "exception", f"source {where} failed ({exc.status or 'no status'})")


def from_exception(exc: BaseException) -> FhirError:
    """Any exception as a FhirError; an unexpected one as 500 with no detail leaked."""
    if isinstance(exc, FhirError):
        return exc
    if isinstance(exc, VendorError | MappingError):
        status, one = vendor_issue(exc)
        headers = _retry_headers(exc) if isinstance(exc, VendorError) else {}
        return FhirError(status, [one], headers)
    return FhirError.one(500, "exception", "internal error; the incident was logged")
