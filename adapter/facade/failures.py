"""The one place an exception becomes a status and an OperationOutcome.

:func:`outcome_of` is used by the app's exception handler, by the request guard, and by
the fan-out for each source that fails (there as that source's ``search.mode = outcome``
entry). Which exception means what:

    FhirError                        as raised (the facade's own refusals)
    ResourceNotFound                 404
    UnsupportedParameter             400, naming the parameter
    PaginationLoop                   502: the vendor repeated a page
    CallBudgetExceeded               400: the request needs more vendor calls than allowed
    MappingError                     502: a vendor record that cannot be mapped
    VendorError                      502/503/504 by kind; Retry-After (whole seconds) on
                                     every 503 and 504: the vendor's wait, the circuit's,
                                     the budget's, else a few seconds
    during a write, besides:
      WriteRefused, InvalidResource  its status (422; 409 for a Slot taken), naming the element
      WriteNotSupported              422
      VendorValidation               409 for a time that is not free, else 422
      WriteNotMade                   503: the vendor failed without a clear answer, and the
                                     connector looked: nothing was made; send again
      WriteOutcomeUnknown            504: the connector could not look; search before sending
    an HTTP error of the framework   404 (no such path), 405 (method), its own status
    anything else                    500 that quotes nothing; logged by type and place

Diagnostics name sources, parameters and vendor vocabulary, never patient data.
"""

from __future__ import annotations

import logging
import traceback

import redis.exceptions

from adapter.fhir.outcome import FhirError, Issue, whole_seconds
from adapter.fhir.search import UnsupportedParameter
from adapter.ops.activity import activity
from adapter.protocol import (
    PaginationLoop,
    ResourceNotFound,
    WriteNotMade,
    WriteNotSupported,
    WriteOutcomeUnknown,
    WriteRefusals,
    WriteRefused,
)
from adapter.transport import (
    AuthenticationRejected,
    BudgetRefused,
    CircuitRefused,
    MalformedResponse,
    NotFound,
    PermissionMissing,
    RateLimited,
    ShareExceeded,
    VendorError,
    VendorTimeout,
    VendorUnavailable,
    VendorValidation,
)
from adapter.transport.scope import CallBudgetExceeded
from mappings import MappingError
from mappings.errors import InvalidResource

__all__ = ["all_failed", "not_found", "outcome_of", "too_costly"]

log = logging.getLogger("fhir_adapter")
_SOON = 5.0  # seconds: the wait suggested when nothing better is known
_CONFLICT_CODES = {"NO_TIMESLOTS_AVAILABLE", "AMBIGUOUS_TIMESLOTS"}


def outcome_of(
    exc: BaseException, source: str | None = None, *, writing: bool = False, where: str = ""
) -> FhirError:
    """``exc`` as a status, its issues and headers. ``source``: the source it concerns
    (when the exception does not say); ``writing``: it ended a write; ``where``: what was
    being done, for the log line of an unexpected failure. One answered with a 5xx, or
    caused by a vendor, is noted for the operator's console (its code and the
    exception's type, never its text)."""
    error = _outcome(exc, source, writing=writing, where=where)
    if error.status >= 500 or isinstance(exc, VendorError):
        activity.error(
            error.status,
            error.issues[0].code if error.issues else "exception",
            type(exc).__name__,
            source or getattr(exc, "source", None),
            where,
        )
    return error


def _outcome(exc: BaseException, source: str | None, *, writing: bool, where: str) -> FhirError:
    if isinstance(exc, FhirError):
        return exc
    if isinstance(exc, ResourceNotFound):
        what = f"{exc.resource_type}/{exc.fhir_id}"
        return FhirError.one(404, "not-found", f"{what} is not known here")
    if isinstance(exc, UnsupportedParameter):
        who = f"source {source} cannot search by" if source else "cannot search by"
        return FhirError(
            400,
            [
                Issue(
                    "error",
                    "not-supported",
                    f"{who} {exc.parameter}: {exc.reason}",
                    (exc.parameter,),
                )
            ],
        )
    if isinstance(exc, CallBudgetExceeded):
        return FhirError.one(
            400,
            "too-costly",
            f"the request needs more than {exc.limit} vendor calls ([server] max_vendor_calls): "
            "narrow the search or ask for fewer at a time",
        )
    if isinstance(exc, PaginationLoop):
        return FhirError.one(
            502, "processing", f"source {source or 'a source'} repeated a page of results"
        )
    if writing:
        refused = _write_refusal(exc, source or "?")
        if refused is not None:
            return refused
    if isinstance(exc, VendorError | MappingError):
        status, issue = vendor_issue(exc, source)
        after = getattr(exc, "retry_after", None)
        if after is None and status in (503, 504):
            after = _SOON
        headers = {"Retry-After": str(whole_seconds(after))} if after is not None else {}
        return FhirError(status, [issue], headers)
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        # The state the workers share (budgets, idempotent writes, jobs) is out of reach:
        # the outage is said once in the log (adapter.ops.redis_watch), not per request.
        return FhirError.one(
            503,
            "transient",
            "the service's shared state (Redis) is unreachable; try again later",
            **{"Retry-After": str(whole_seconds(_SOON))},
        )
    http_status = getattr(exc, "status_code", None)
    if isinstance(http_status, int) and 400 <= http_status < 500:
        error = _http_error(http_status, str(getattr(exc, "detail", "") or ""), where)
        error.headers.update(getattr(exc, "headers", None) or {})
        return error
    _log_unexpected(exc, where)
    if source is not None:
        return FhirError.one(500, "exception", f"source {source} failed; the incident was logged")
    return FhirError.one(500, "exception", "internal error; the incident was logged")


def _write_refusal(exc: BaseException, source: str) -> FhirError | None:
    if isinstance(exc, WriteOutcomeUnknown):
        return FhirError.one(
            504,
            "timeout",
            f"source {source} gave no clear answer, and whether it made the record could "
            "not be checked: search for it before sending the write again (the same "
            "Idempotency-Key looks for it first)",
            **{"Retry-After": str(whole_seconds(_SOON))},
        )
    if isinstance(exc, WriteNotMade):
        return FhirError.one(
            503,
            "transient",
            f"source {source} failed without a clear answer and holds no such record: "
            "send the request again with the same Idempotency-Key",
            **{"Retry-After": str(whole_seconds(exc.retry_after or _SOON))},
        )
    if isinstance(exc, WriteRefused):
        if exc.status == 409:  # taken meanwhile
            issue = Issue("error", "conflict", f"source {source}: {exc.reason}", (exc.expression,))
        else:
            issue = _vendor_limit(source, exc)
        return FhirError(exc.status, [issue])
    if isinstance(exc, InvalidResource):
        return FhirError(422, [_vendor_limit(source, exc)])
    if isinstance(exc, WriteRefusals):
        refused = [e for e in exc.refusals if isinstance(e, WriteRefused | InvalidResource)]
        return FhirError(422, [_vendor_limit(source, e) for e in refused])
    if isinstance(exc, WriteNotSupported):
        return FhirError.one(422, "not-supported", f"source {source} does not take this write")
    if isinstance(exc, VendorValidation):
        codes = ", ".join(exc.error_codes) or "no reason given"
        if exc.status == 409 or _CONFLICT_CODES & set(exc.error_codes):
            return FhirError.one(
                409, "conflict", f"source {source}: the time is not available ({codes})"
            )
        return FhirError.one(422, "business-rule", f"source {source} refused the write ({codes})")
    if isinstance(exc, VendorTimeout):
        return FhirError.one(
            504,
            "timeout",
            f"source {source} did not answer in time and holds no such record; "
            "send the request again with the same Idempotency-Key",
            **{"Retry-After": str(whole_seconds(exc.retry_after or _SOON))},
        )
    return None


def _vendor_limit(source: str | None, exc: WriteRefused | InvalidResource) -> Issue:
    """What a source cannot hold or do, said as the vendor's limit: the resource is valid
    FHIR (that was checked first), the vendor behind the source cannot take it."""
    code = "invalid" if isinstance(exc, InvalidResource) else "not-supported"
    reason = f"source {source}: {exc.reason} (a limit of the vendor, not of FHIR)"
    return Issue("error", code, reason, (exc.expression,))


def vendor_issue(exc: VendorError | MappingError, source: str | None = None) -> tuple[int, Issue]:
    """The status and issue a vendor failure becomes (for one source)."""
    where = getattr(exc, "source", None) or source or "a source"
    if isinstance(exc, MappingError):
        return 502, Issue(
            "error", "processing", f"source {where} sent a record that cannot be mapped: {exc}"
        )
    if isinstance(exc, VendorTimeout):
        return 504, Issue("error", "timeout", f"source {where} did not answer in time")
    if isinstance(exc, ShareExceeded):
        return 429, Issue(
            "error",
            "throttled",
            f"source {where}: this client has had its fair share of the vendor's budget "
            f"({exc.quota} call{'s' if exc.quota != 1 else ''} per {exc.window:g} s) while "
            "other clients ask for it too; try later",
        )
    if isinstance(exc, BudgetRefused):
        return 503, Issue(
            "error", "throttled", f"source {where}: its vendor budget is spent for now; try later"
        )
    if isinstance(exc, RateLimited):
        return 503, Issue("error", "throttled", f"source {where} is rate limiting; try later")
    if isinstance(exc, CircuitRefused):
        return 503, Issue(
            "error", "transient", f"source {where} keeps failing and is left alone for now"
        )
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


def _http_error(status: int, detail: str, where: str) -> FhirError:
    """What the HTTP framework refused before any route ran (``where``: method and path)."""
    if status == 404:
        return FhirError.one(404, "not-found", f"no such path: {where.partition(' ')[2]}")
    if status == 405:
        return FhirError.one(
            405, "not-supported", f"{where.partition(' ')[0]} is not supported here"
        )
    return FhirError.one(status, "processing", detail or "the request is not valid")


def _log_unexpected(exc: BaseException, where: str) -> None:
    # The exception's type and place, never its message or traceback text: they may
    # quote patient data.
    frames = traceback.extract_tb(exc.__traceback__)[-1:]
    place = f"{frames[0].filename}:{frames[0].lineno}" if frames else "?"
    log.error("unhandled %s at %s%s", type(exc).__name__, place, f" on {where}" if where else "")


def all_failed(failures: list[FhirError]) -> FhirError:
    """Every source asked failed: one status for all (502 when they differ), every issue,
    and the longest wait any of them asked for."""
    statuses = {f.status for f in failures}
    status = statuses.pop() if len(statuses) == 1 else 502
    waits = [f.retry_after for f in failures if f.retry_after is not None]
    headers = {"Retry-After": str(max(waits))} if waits else {}
    return FhirError(status, [i for f in failures for i in f.issues], headers)


def not_found(resource_type: str, fhir_id: str) -> FhirError:
    return FhirError.one(404, "not-found", f"{resource_type}/{fhir_id} is not known here")


def too_costly(cap: int, what: str, parameter: str) -> FhirError:
    """The refusal of what would surely need more vendor calls than a request may make."""
    return FhirError.one(
        400,
        "too-costly",
        f"{what}; a request may make at most {cap} vendor calls ([server] max_vendor_calls): "
        "narrow the search or ask for fewer at a time",
        parameter,
    )
