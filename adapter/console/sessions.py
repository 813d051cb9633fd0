"""The console's sessions: who logged in, and the CSRF token of their forms.

A session id is 32 random bytes, sent only in the ``console_session`` cookie (HttpOnly,
SameSite=Strict, Secure behind https); what is stored is keyed by its SHA-256, so a
dump of the store gives no usable cookie. A session ends after :data:`IDLE_SECONDS`
without use, at :data:`MAX_SECONDS` whatever, or at log-out.

In Redis when the service has one (every worker sees every session; under the
deployment's ``redis_prefix`` followed by ``console:session:``), else in this process's
memory, at most :data:`MAX_SESSIONS` (the oldest used first out).
"""

from __future__ import annotations

import collections
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

__all__ = [
    "IDLE_SECONDS",
    "MAX_SECONDS",
    "MAX_SESSIONS",
    "MemorySessions",
    "RedisSessions",
    "Session",
    "Sessions",
]

IDLE_SECONDS = 30 * 60
MAX_SECONDS = 12 * 3600
MAX_SESSIONS = 1000
PREFIX = "fhir-adapter:console:session:"


@dataclass(frozen=True)
class Session:
    operator: str
    csrf: str
    started: float


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions(Protocol):
    async def open(self, operator: str) -> tuple[str, Session]: ...

    async def get(self, session_id: str) -> Session | None: ...

    async def close(self, session_id: str) -> None: ...


class MemorySessions:
    def __init__(self, clock: Callable[[], float] = time.time, limit: int = MAX_SESSIONS) -> None:
        self.clock = clock
        self.limit = limit
        self._held: collections.OrderedDict[str, tuple[Session, float]] = collections.OrderedDict()

    async def open(self, operator: str) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        session = Session(operator, secrets.token_urlsafe(32), self.clock())
        self._held[_key(session_id)] = (session, self.clock())
        while len(self._held) > self.limit:
            self._held.popitem(last=False)
        return session_id, session

    async def get(self, session_id: str) -> Session | None:
        key = _key(session_id)
        held = self._held.get(key)
        if held is None:
            return None
        session, used = held
        now = self.clock()
        if now - used > IDLE_SECONDS or now - session.started > MAX_SECONDS:
            del self._held[key]
            return None
        self._held[key] = (session, now)
        self._held.move_to_end(key)
        return session

    async def close(self, session_id: str) -> None:
        self._held.pop(_key(session_id), None)


class RedisSessions:
    """Sessions under ``fhir-adapter:console:session:<sha256>``, each expiring when idle."""

    def __init__(
        self, redis: Any, clock: Callable[[], float] = time.time, prefix: str = PREFIX
    ) -> None:
        self.redis = redis
        self.clock = clock
        self.prefix = prefix

    async def open(self, operator: str) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        session = Session(operator, secrets.token_urlsafe(32), self.clock())
        value = orjson.dumps(
            {"operator": operator, "csrf": session.csrf, "started": session.started}
        )
        await self.redis.set(self.prefix + _key(session_id), value, ex=IDLE_SECONDS)
        return session_id, session

    async def get(self, session_id: str) -> Session | None:
        key = self.prefix + _key(session_id)
        raw = await self.redis.get(key)
        if raw is None:
            return None
        held = orjson.loads(raw)
        session = Session(str(held["operator"]), str(held["csrf"]), float(held["started"]))
        if self.clock() - session.started > MAX_SECONDS:
            await self.redis.delete(key)
            return None
        await self.redis.expire(key, IDLE_SECONDS)
        return session

    async def close(self, session_id: str) -> None:
        await self.redis.delete(self.prefix + _key(session_id))
