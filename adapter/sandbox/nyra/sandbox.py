""":class:`NyraSandbox`: one simulated hospital, its state and the app that serves it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from adapter.sandbox.data import NyraData
from adapter.sandbox.faults import FaultMiddleware, Faults, SandboxTransport
from adapter.sandbox.nyra.errors import error_body
from adapter.sandbox.nyra.keys import RateLimits
from adapter.sandbox.nyra.routes import build_app
from adapter.sandbox.nyra.state import NyraState

__all__ = ["NyraSandbox"]


class NyraSandbox(NyraState):
    """State and app of one simulated hospital; ``.app`` is the ASGI app to serve."""

    vendor = "nyra"

    def __init__(
        self,
        data: NyraData | None = None,
        *,
        seed: int = 7,
        patients: int = 200,
        keys: int = 1,
        timezone: str = "Asia/Kolkata",
        limits: RateLimits | None = None,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            data,
            seed=seed,
            patients=patients,
            keys=keys,
            timezone=timezone,
            limits=limits or RateLimits(),
            faults=faults or Faults(),
            clock=clock,
        )
        self.app = FaultMiddleware(build_app(self), self.faults, error_body)

    def defaults(self) -> dict[str, Any]:
        """Source configuration that reaches this sandbox with every key it issued."""
        keys = [g.credentials() for g in self.grants.values()]
        config: dict[str, Any] = {"keys": keys, "timezone": self.timezone}
        if self.limits != RateLimits():  # scaled down: the client must keep the same pace
            config["rate_limit"] = asdict(self.limits)
        return config

    def transport(self) -> SandboxTransport:
        return SandboxTransport(app=self.app)
