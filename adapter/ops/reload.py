"""Configuration re-read on SIGHUP, with no request dropped (one worker).

:class:`Reloadable` serves whatever app it holds. On reload it builds a new one from the
configuration as it is now (keys, secrets, clients, sources); requests that began on the
old app finish on it, new ones go to the new app, and the old app is closed once its last
request is done. A configuration that does not load is refused with one log line and the
service goes on with the one it had. (With several workers, uvicorn's own SIGHUP starts
fresh workers, which read the configuration anew, before it retires the old ones.)
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Receive, Scope, Send

from adapter.ops import metrics

__all__ = ["Reloadable"]

log = logging.getLogger("fhir_adapter")

App = Any  # an ASGI app whose ``state.aclose()`` releases what it holds (and whose
# ``state.astart()``, if it has one, starts its background work)


class Reloadable:
    def __init__(self, app: App, build: Callable[[], App]) -> None:
        self.app = app
        self._build = build
        self._in_flight: dict[int, int] = {}
        self._retired: list[App] = []
        self._closing: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        app = self.app
        key = id(app)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            await app(scope, receive, send)
        finally:
            self._in_flight[key] -= 1
            if app in self._retired and self._in_flight[key] == 0:
                self._close_later(app)

    def reload(self) -> bool:
        """Build the app anew from the configuration; False (logged) when it is refused."""
        try:
            fresh = self._build()
        except Exception as exc:  # one clear line; the service keeps the configuration it has
            log.error(
                "configuration not reloaded: %s; still serving the previous one",
                str(exc).replace("\n", "; "),
            )
            return False
        old, self.app = self.app, fresh
        task = asyncio.get_running_loop().create_task(_start(fresh))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        self._retired.append(old)
        if self._in_flight.get(id(old), 0) == 0:
            self._close_later(old)
        # what the new app says of itself (in-process sandboxes made anew, say)
        log.warning("configuration reloaded%s", getattr(fresh.state, "reload_note", ""))
        return True

    def _close_later(self, app: App) -> None:
        if app not in self._retired:
            return
        self._retired.remove(app)
        self._in_flight.pop(id(app), None)
        task = asyncio.get_running_loop().create_task(_close(app))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                gc.freeze()  # what start-up made lives as long as the process
                await _start(self.app)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for app in [self.app, *self._retired]:
                    await _close(app)
                if self._closing:
                    await asyncio.gather(*self._closing, return_exceptions=True)
                metrics.worker_exiting()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _start(app: App) -> None:
    start: Callable[[], Awaitable[None]] | None = getattr(app.state, "astart", None)
    if start is not None:
        try:
            await start()
        except Exception as exc:
            log.error("starting an app's background work failed: %s", type(exc).__name__)


async def _close(app: App) -> None:
    close: Callable[[], Awaitable[None]] | None = getattr(app.state, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception as exc:
            log.error("closing a replaced app failed: %s", type(exc).__name__)
