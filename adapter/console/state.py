"""What the console keeps for the app's life: its sessions, the log-in throttle, when the
configuration was loaded, and (with Redis) the flushing of this worker's activity so
that every worker's counts are seen whichever worker serves the page."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis

from adapter.api.auth import LoginThrottle
from adapter.console.sessions import MemorySessions, RedisSessions, Sessions
from adapter.ops.activity import Figures, activity
from adapter.settings import Settings

__all__ = ["FLUSH_SECONDS", "ConsoleState"]

log = logging.getLogger("fhir_adapter")
FLUSH_SECONDS = 5.0


class ConsoleState:
    def __init__(self, settings: Settings, redis: Any = None) -> None:
        self.redis = redis
        self.prefix = f"{settings.redis_prefix}console"  # the activity counts' keys
        self.sessions: Sessions = (
            RedisSessions(redis, prefix=f"{self.prefix}:session:")
            if redis is not None
            else MemorySessions()
        )
        self.throttle = LoginThrottle()  # failed log-ins, per operator and address
        self.loaded = time.time()
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, settings: Settings) -> ConsoleState:
        redis = (
            aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
            if settings.redis_url
            else None
        )
        return cls(settings, redis)

    async def figures(self) -> Figures:
        """The activity counts: every worker's through Redis, else this process's."""
        if self.redis is None:
            return activity.local()
        return await activity.shared(self.redis, self.prefix)

    def start(self) -> None:
        if self.redis is not None and self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="console-activity")

    async def _flush(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await activity.flush(self.redis, self.prefix)
            except Exception as exc:  # lost to the shared view; this worker keeps its own
                log.warning("console counts not shared: %s", type(exc).__name__)

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if self.redis is not None:
            await self.redis.aclose()
