"""Where Subscriptions are kept: Redis when ``[server] redis_url`` is set (every worker
shares them), else one JSON file per Subscription in a directory.

A record is ``{"owner": client, "resource": Subscription, "seen": {id: digest},
"failures": n, "next_at": epoch seconds}``; the resource keeps its ``channel.header``
(the subscriber's secrets), which only delivery uses. Each Subscription has a lease
(Redis ``SET NX PX``, else a lock file), held by the worker that polls it, so that each
change is delivered once whatever the number of workers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis

__all__ = ["FileSubscriptionStore", "RedisSubscriptionStore", "Store"]

_PREFIX = "fhir-adapter:subscription:"
_IDS = "fhir-adapter:subscriptions"


class Store(Protocol):
    async def create(self, record: dict[str, Any]) -> None: ...
    async def get(self, sub_id: str) -> dict[str, Any] | None: ...
    async def all(self) -> list[dict[str, Any]]: ...
    async def update(self, record: dict[str, Any]) -> bool:
        """Write back a record that still exists (a deleted one stays deleted)."""
        ...

    async def delete(self, sub_id: str) -> bool: ...
    async def lease(self, sub_id: str, seconds: float) -> bool: ...
    async def release(self, sub_id: str) -> None: ...
    async def aclose(self) -> None: ...


def _id(record: dict[str, Any]) -> str:
    return str(record["resource"]["id"])


class FileSubscriptionStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, sub_id: str, suffix: str = ".json") -> Path:
        return self.directory / f"{sub_id}{suffix}"

    def _write(self, record: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(_id(record))
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(orjson.dumps(record))
        os.chmod(temporary, 0o600)  # channel headers are secrets
        os.replace(temporary, path)

    async def create(self, record: dict[str, Any]) -> None:
        await asyncio.to_thread(self._write, record)

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            value = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return value if isinstance(value, dict) else None

    async def get(self, sub_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._read, self._path(sub_id))

    async def all(self) -> list[dict[str, Any]]:
        def read_all() -> list[dict[str, Any]]:
            if not self.directory.is_dir():
                return []
            found = (self._read(p) for p in sorted(self.directory.glob("*.json")))
            return [r for r in found if r is not None]

        return await asyncio.to_thread(read_all)

    async def update(self, record: dict[str, Any]) -> bool:
        def write_if_there() -> bool:
            if not self._path(_id(record)).exists():
                return False
            self._write(record)
            return True

        return await asyncio.to_thread(write_if_there)

    async def delete(self, sub_id: str) -> bool:
        def remove() -> bool:
            try:
                self._path(sub_id).unlink()
            except FileNotFoundError:
                return False
            return True

        return await asyncio.to_thread(remove)

    async def lease(self, sub_id: str, seconds: float) -> bool:
        def take() -> bool:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = self._path(sub_id, ".lock")
            with contextlib.suppress(OSError):
                if time.time() - lock.stat().st_mtime > seconds:  # a dead holder's
                    lock.unlink()
            try:
                os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                return False
            return True

        return await asyncio.to_thread(take)

    async def release(self, sub_id: str) -> None:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self._path(sub_id, ".lock").unlink)

    async def aclose(self) -> None:
        return None


class RedisSubscriptionStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._token = os.urandom(8).hex()

    async def create(self, record: dict[str, Any]) -> None:
        sub_id = _id(record)
        await self.redis.set(_PREFIX + sub_id, orjson.dumps(record))
        await self.redis.sadd(_IDS, sub_id)

    async def get(self, sub_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(_PREFIX + sub_id)
        return None if raw is None else orjson.loads(raw)

    async def all(self) -> list[dict[str, Any]]:
        ids = sorted(
            i.decode() if isinstance(i, bytes) else i for i in await self.redis.smembers(_IDS)
        )
        if not ids:
            return []
        raws = await self.redis.mget([_PREFIX + i for i in ids])
        return [orjson.loads(raw) for raw in raws if raw is not None]

    async def update(self, record: dict[str, Any]) -> bool:
        return bool(await self.redis.set(_PREFIX + _id(record), orjson.dumps(record), xx=True))

    async def delete(self, sub_id: str) -> bool:
        await self.redis.srem(_IDS, sub_id)
        return bool(await self.redis.delete(_PREFIX + sub_id))

    async def lease(self, sub_id: str, seconds: float) -> bool:
        key = f"{_PREFIX}{sub_id}:lease"
        return bool(await self.redis.set(key, self._token, nx=True, px=int(seconds * 1000)))

    async def release(self, sub_id: str) -> None:
        key = f"{_PREFIX}{sub_id}:lease"
        if (await self.redis.get(key)) == self._token.encode():
            await self.redis.delete(key)

    async def aclose(self) -> None:
        await self.redis.aclose()
