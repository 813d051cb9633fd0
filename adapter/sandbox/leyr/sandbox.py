""":class:`LeyrSandbox`: one simulated EHR, its state and the app that serves it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from adapter.sandbox.data import LeyrData
from adapter.sandbox.faults import FaultMiddleware, Faults, SandboxTransport
from adapter.sandbox.leyr.errors import error_body
from adapter.sandbox.leyr.routes import build_app
from adapter.sandbox.leyr.state import LeyrState

__all__ = ["LeyrSandbox"]


class LeyrSandbox(LeyrState):
    """State and app of one simulated EHR; ``.app`` is the ASGI app to serve."""

    vendor = "leyr"

    def __init__(
        self,
        data: LeyrData | None = None,
        *,
        seed: int = 7,
        patients: int = 200,
        emr: str = "webdoc",
        timezone: str = "Europe/Stockholm",
        id_types: tuple[str, ...] = ("emr_id", "se_personal_number"),
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            data,
            seed=seed,
            patients=patients,
            emr=emr,
            timezone=timezone,
            id_types=id_types,
            clock=clock,
        )
        self.faults = faults or Faults()
        self.app = FaultMiddleware(build_app(self), self.faults, error_body)

    def defaults(self) -> dict[str, Any]:
        """Source configuration that reaches this sandbox."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "emr": self.emr,
            "care_units": list(self.care_units),
            "timezone": self.timezone,
        }

    def transport(self) -> SandboxTransport:
        return SandboxTransport(app=self.app)

    def confirmation_code(self, appointment_id: str) -> str | None:
        """The code that confirms a cancel (a real EHR sends it to the patient)."""
        return self.codes.get(appointment_id)
