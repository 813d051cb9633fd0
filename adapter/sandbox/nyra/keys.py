"""API keys: what a key grants (permissions, branch, token lifetime) and its rate limits
(fixed windows per key, with the ``X-RateLimit-*`` and ``Retry-After`` headers)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["ALL_PERMISSIONS", "NyraGrant", "RateLimits", "count_request"]

ALL_PERMISSIONS = frozenset(
    {
        "patients:read",
        "patients:create",
        "appointments:read",
        "appointments:write",
        "doctor_slots:read",
        "doctor_slots:write",
        "ws:ticket",
        "calls:read",
        "analytics:read",
    }
)

KEPT_WINDOWS = 4096  # minute windows a key's record keeps (a long-running sandbox's memory)


@dataclass(frozen=True)
class RateLimits:
    per_second: int = 12
    per_minute: int = 60
    second_window: float = 1.0
    minute_window: float = 60.0


@dataclass
class NyraGrant:
    """One issued API key: what ``POST /api/hospitals/:id/api-keys`` hands out."""

    key: str
    secret: str
    token: str
    permissions: frozenset[str] = ALL_PERMISSIONS
    branch_id: str | None = None
    token_expires_at: float = math.inf
    requests: int = 0
    limited: int = 0
    # Requests counted in each minute window, by the window's number (the sandbox clock's
    # time over ``minute_window``, rounded down): what the key was charged, window by
    # window, for a test to hold against the limit. The latest KEPT_WINDOWS only.
    minutes: Counter[int] = field(default_factory=Counter, repr=False)
    _windows: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)

    def credentials(self) -> dict[str, str]:
        return {"key": self.key, "secret": self.secret, "token": self.token}

    def __repr__(self) -> str:  # the secret and token stay out of logs
        return f"NyraGrant(key={self.key[:9]}..., permissions={sorted(self.permissions)})"


def count_request(
    limits: RateLimits, grant: NyraGrant | None, now: float, headers: dict[str, str]
) -> bool:
    """Count one request against ``grant`` and set the rate headers of its answer in
    ``headers``; False when it is over a limit (``Retry-After`` set too)."""
    minute = int(now // limits.minute_window)
    reset = (minute + 1) * limits.minute_window
    if grant is None:
        headers.update(_rate_headers(limits.per_minute, limits.per_minute, reset))
        return True
    second = int(now // limits.second_window)
    s_index, s_count = grant._windows.get("s", (second, 0))
    m_index, m_count = grant._windows.get("m", (minute, 0))
    s_count = s_count if s_index == second else 0
    m_count = m_count if m_index == minute else 0
    over_second, over_minute = s_count >= limits.per_second, m_count >= limits.per_minute
    grant._windows["s"] = (second, s_count + 1)
    grant._windows["m"] = (minute, m_count + 1)
    if minute not in grant.minutes and len(grant.minutes) >= KEPT_WINDOWS:
        del grant.minutes[next(iter(grant.minutes))]  # the oldest: windows come in order
    grant.minutes[minute] += 1
    grant.requests += 1
    remaining = max(0, limits.per_minute - m_count - 1)
    headers.update(_rate_headers(limits.per_minute, remaining, reset))
    if over_second or over_minute:
        grant.limited += 1
        until = reset if over_minute else (second + 1) * limits.second_window
        headers["Retry-After"] = _delay(until - now)
        return False
    return True


def _rate_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": _seconds(reset),
    }


def _seconds(value: float) -> str:
    """Whole seconds as the contract shows them; fractions only for scaled-down windows."""
    rounded = round(value, 3)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.3f}"


def _delay(seconds: float) -> str:
    """``Retry-After``: whole seconds, rounded up, at least one (RFC 9110, delay-seconds)."""
    return str(max(1, math.ceil(seconds)))
