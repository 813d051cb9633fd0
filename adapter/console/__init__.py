"""The operator's web console at ``/console`` (:mod:`adapter.console.routes`)."""

from adapter.console.routes import router
from adapter.console.state import ConsoleState

__all__ = ["ConsoleState", "router"]
