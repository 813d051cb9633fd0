"""What the transport reports, turned into metrics and console lines.

The transport reports through hooks that do nothing until an observer is installed, so it
never depends on how it is watched. :data:`observer` is the service's: each method is one
dictionary lookup and one metric update (or one log line), cheap enough for every vendor
call, and none raises.
"""

from __future__ import annotations

from adapter.ops import logs, metrics
from adapter.ops.activity import activity

__all__ = ["OpsObserver", "observer"]


class OpsObserver:
    """Vendor calls, rate limits, failures, cache hits, circuits and key budgets, as
    :mod:`adapter.ops.metrics` and :func:`adapter.ops.logs.log_vendor_failure` record them."""

    def vendor_call(self, source: str, status: str, seconds: float) -> None:
        metrics.observe_vendor_call(source, status, seconds)
        activity.vendor_call(source)

    def rate_limited(self, source: str) -> None:
        metrics.count_rate_limited(source)

    def vendor_failure(self, source: str, status: int | str | None, kind: str) -> None:
        logs.log_vendor_failure(source, status, kind)

    def cache_hit(self, source: str) -> None:
        metrics.count_cache_hit(source)

    def circuit(self, source: str, is_open: bool) -> None:
        metrics.set_circuit(source, is_open)

    def key_budget(self, source: str, key: str, remaining: float) -> None:
        metrics.set_key_budget(source, key, remaining)

    def lane_call(self, source: str, lane: str, client: str, outcome: str) -> None:
        metrics.count_lane_call(source, lane, client, outcome)


observer = OpsObserver()
