"""Vendor errors, classified where they are raised.

    VendorError
    ├── TemporaryVendorError        worth retrying (reads only); .retry_after in seconds
    │   ├── VendorTimeout           connect/read timeout
    │   ├── VendorUnavailable       500/502/503/504, connection errors
    │   │   └── CircuitRefused      the source's circuit is open: the vendor was not asked
    │   └── RateLimited             429
    │       └── BudgetRefused       no key free before the deadline, or the queue is full:
    │           │                   the vendor was not asked
    │           └── ShareExceeded   the caller had its fair share while others wait
    └── FatalVendorError            retrying would give the same answer
        ├── AuthenticationRejected  401: the source's credentials must be rotated
        ├── PermissionMissing       403; .permission (Nyra names it)
        ├── NotFound                404
        ├── VendorValidation        400/409/422; .error_codes (Leyr's error_code values)
        ├── MalformedResponse       a body that is not the shape the contract promises
        └── VendorRejected          any other 4xx

Raised by the transport besides these, each turned into an answer by the facade's
``outcome_of``: ``CallBudgetExceeded`` (:mod:`adapter.transport.scope`: a request's cap
of vendor calls), and, inside the key pool only, ``SlotTooFar``, ``QueueFull`` and
``NoKeysLeft`` (:mod:`adapter.transport.ratelimit`), which the client turns into
``BudgetRefused`` or ``AuthenticationRejected`` before they leave the transport.

Every error carries the configured ``source`` and the vendor's ``status``. On an error
that ended a write, ``committed_unknown`` says the vendor may have carried it out all the
same: a timeout, a connection lost after the request went out, a 5xx (a load balancer's
or a crashing worker's, after the vendor committed), or a success whose body cannot be
read. The connectors look such a write up before anyone is told to send it again. Messages hold
the source, the status and vendor vocabulary (error codes, permission names) only: never
credentials, request bodies or the vendor's free text, which may quote patient data.
"""

from __future__ import annotations

import email.utils
from typing import Any

import httpx
import orjson

__all__ = [
    "AuthenticationRejected",
    "BudgetRefused",
    "CircuitRefused",
    "FatalVendorError",
    "MalformedResponse",
    "NotFound",
    "PermissionMissing",
    "RateLimited",
    "ShareExceeded",
    "TemporaryVendorError",
    "VendorError",
    "VendorRejected",
    "VendorTimeout",
    "VendorUnavailable",
    "VendorValidation",
    "classify_status",
    "json_object",
    "parse_retry_after",
]


class VendorError(Exception):
    committed_unknown = False  # on a write: the vendor may have carried it out

    def __init__(self, source: str, status: int | None, detail: str) -> None:
        self.source = source
        self.status = status
        self.detail = detail
        where = f"{source}: vendor answered {status}" if status else f"{source}"
        super().__init__(f"{where}: {detail}")


class TemporaryVendorError(VendorError):
    def __init__(
        self, source: str, status: int | None, detail: str, retry_after: float | None = None
    ) -> None:
        super().__init__(source, status, detail)
        self.retry_after = retry_after


class VendorTimeout(TemporaryVendorError):
    pass


class VendorUnavailable(TemporaryVendorError):
    pass


class RateLimited(TemporaryVendorError):
    pass


class FatalVendorError(VendorError):
    pass


class AuthenticationRejected(FatalVendorError):
    """``retry_after``: when a refused key is next tried, when every key is refused."""

    def __init__(self, source: str, status: int | None = 401, detail: str = "") -> None:
        super().__init__(
            source,
            status,
            detail or "credentials rejected; they must be rotated in the source's configuration",
        )
        self.retry_after: float | None = None


class PermissionMissing(FatalVendorError):
    def __init__(self, source: str, permission: str | None) -> None:
        self.permission = permission
        what = f"permission {permission!r}" if permission else "a permission"
        super().__init__(source, 403, f"the API key lacks {what}")


class NotFound(FatalVendorError):
    pass


class VendorValidation(FatalVendorError):
    def __init__(self, source: str, status: int, error_codes: tuple[str, ...] = ()) -> None:
        self.error_codes = error_codes
        codes = ", ".join(error_codes) or "no error code"
        super().__init__(source, status, f"request refused ({codes})")


class MalformedResponse(FatalVendorError):
    pass


class VendorRejected(FatalVendorError):
    pass


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """An error answer's body as a JSON object, or None when it is not one."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` (delta-seconds or HTTP-date), never negative."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def classify_status(
    source: str,
    response: httpx.Response,
    *,
    error_codes: tuple[str, ...] = (),
    permission: str | None = None,
    detail: str | None = None,
    now: float | None = None,
) -> VendorError:
    """The error for a non-2xx vendor response, by status."""
    import time

    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"), now or time.time())
    text = detail or response.reason_phrase or "error"
    if status == 401:
        return AuthenticationRejected(source, status)
    if status == 403:
        return PermissionMissing(source, permission)
    if status == 404:
        return NotFound(source, status, "not found")
    if status == 429:
        return RateLimited(source, status, "rate limit exceeded", retry_after)
    if status in (408, 500, 502, 503, 504):
        return VendorUnavailable(source, status, text, retry_after)
    if status in (400, 409, 422):
        return VendorValidation(source, status, error_codes)
    if status >= 500:
        return VendorUnavailable(source, status, text, retry_after)
    return VendorRejected(source, status, text)


class CircuitRefused(VendorUnavailable):
    """The source's circuit is open: the vendor was not asked."""

    def __init__(self, source: str, retry_after: float) -> None:
        super().__init__(source, None, "circuit open: the vendor keeps failing", retry_after)


class BudgetRefused(RateLimited):
    """No key can call before the request's deadline (or the queue is full)."""

    def __init__(self, source: str, wait: float, queue_full: bool = False) -> None:
        what = "too many requests wait for its keys" if queue_full else "no key free in time"
        super().__init__(source, None, f"rate limited: {what}", wait)


class ShareExceeded(BudgetRefused):
    """The caller has had its fair share (``quota`` calls per ``window`` seconds) of the
    source's budget while other clients wait: its own limit, not the vendor's."""

    def __init__(self, source: str, wait: float, quota: int, window: float) -> None:
        super().__init__(source, wait)
        self.detail = f"the client's share of the budget ({quota} calls per {window:g} s) is used"
        self.quota = quota
        self.window = window
