"""Where Subscriptions and the poller's state are kept: Redis when ``[server] redis_url``
is set (every worker shares them), else files in a directory (one process).

- A Subscription's record: ``{"owner": client, "resource": Subscription, "failures": n,
  "next_at": epoch seconds}``; the resource keeps its ``channel.header`` (the subscriber's
  secrets), which only delivery uses. Written only by the worker holding its lease.
- Its outbox: the changed resources waiting to be delivered, oldest first (a topic-based
  Subscription's: its events, ``{"number": n, "resource": ...}``, numbered by
  :meth:`Store.push_events` from its count, which it keeps beside them).
- A topic-based Subscription's event log: its last :data:`EVENTS_MAX` events, delivered
  or not, for ``$events`` (:meth:`Store.events`); kept while the Subscription is, in
  ``error`` too, and gone with it. Any worker
  appends (:meth:`Store.push`); the holder of the Subscription's lease takes them from the
  front once the endpoint has them (:meth:`Store.peek`, :meth:`Store.drop`).
- A source's sweep: where the poller is in that source's listing, per resource type, and
  the vendor calls it made lately (its budget). Written by the holder of the source's lease.
- A feed's digests (source and resource type): per id, the digest of the content last
  told, then ``|`` and what a topic's trigger needs to know of it (its status, where and
  with whom). :meth:`Store.exchange` sets them and answers what they were in one atomic
  step (:meth:`Store.swap`: which digests changed), so that a change is found once,
  whichever worker (a sweep, a write through the facade) sees it first.

Leases (Redis ``SET NX PX``, else a lock file) give each Subscription and each source one
holder at a time, so that each change is delivered once whatever the number of workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis

__all__ = ["EVENTS_MAX", "FileSubscriptionStore", "RedisSubscriptionStore", "Store"]

_OUTBOX_MAX = 10_000  # changes kept for one Subscription whose endpoint does not take them
EVENTS_MAX = 10_000  # the last events of a topic-based Subscription kept for $events

# Number a topic-based Subscription's events on from its count, append them to its outbox
# and to its event log (its last EVENTS_MAX kept), in one step; answer the count.
_NUMBER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local last = redis.call('INCRBY', KEYS[2], #ARGV)
local first = last - #ARGV + 1
for i = 1, #ARGV do
  local event = '{"number":' .. (first + i - 1) .. ',"resource":' .. ARGV[i] .. '}'
  redis.call('RPUSH', KEYS[3], event)
  redis.call('RPUSH', KEYS[4], event)
end
redis.call('LTRIM', KEYS[3], -tonumber(KEYS[5]), -1)
redis.call('LTRIM', KEYS[4], -tonumber(KEYS[5]), -1)
return last
"""

# Set each id's value; answer what each was ("" for none).
_EXCHANGE = """
local out = {}
for i = 1, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if old ~= ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
  out[#out + 1] = old or ''
end
return out
"""


def _changed(old: str | None, new: str) -> bool:
    """Whether a feed's value says the content changed: its digest (what comes before a
    ``|``; after it, what a topic's trigger needs to know) is another, or there was none."""
    return old is None or old.partition("|")[0] != new.partition("|")[0]


class Store(Protocol):
    async def create(self, record: dict[str, Any]) -> None: ...
    async def get(self, sub_id: str) -> dict[str, Any] | None: ...
    async def all(self) -> list[dict[str, Any]]: ...
    async def update(self, record: dict[str, Any]) -> bool:
        """Write back a record that still exists (a deleted one stays deleted)."""
        ...

    async def delete(self, sub_id: str) -> bool:
        """The Subscription, its outbox and its lease gone."""
        ...

    async def lease(self, name: str, seconds: float) -> bool: ...
    async def release(self, name: str) -> None: ...
    async def push(self, sub_id: str, resources: Sequence[dict[str, Any]]) -> None: ...
    async def push_events(self, sub_id: str, resources: Sequence[dict[str, Any]]) -> None:
        """Number each resource as the Subscription's next event, to its outbox and log."""
        ...

    async def counted(self, sub_id: str) -> int:
        """The number of the Subscription's last event (0: none yet)."""
        ...

    async def events(self, sub_id: str, since: int, until: int | None) -> list[dict[str, Any]]:
        """The logged events numbered from ``since`` to ``until`` (None: the last)."""
        ...

    async def peek(self, sub_id: str, count: int) -> list[dict[str, Any]]: ...
    async def drop(self, sub_id: str, count: int) -> None: ...
    async def sweep(self, source: str) -> dict[str, Any]: ...
    async def save_sweep(self, source: str, state: dict[str, Any]) -> None: ...
    async def swap(self, feed: str, digests: Sequence[tuple[str, str]]) -> list[bool]: ...
    async def exchange(self, feed: str, values: Sequence[tuple[str, str]]) -> list[str | None]: ...
    async def aclose(self) -> None: ...


def _id(record: dict[str, Any]) -> str:
    return str(record["resource"]["id"])


def _safe(name: str) -> str:
    """A name (a source, a feed) as part of a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


class FileSubscriptionStore:
    """One JSON file per Subscription, a JSON-lines outbox beside it, and the sweeps and
    feeds under ``_poller/``; read-modify-writes hold an ``flock``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, sub_id: str, suffix: str = ".json") -> Path:
        return self.directory / f"{sub_id}{suffix}"

    def _poller(self, name: str) -> Path:
        return self.directory / "_poller" / _safe(name)

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".flock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _write_json(path: Path, value: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(orjson.dumps(value))
        os.chmod(temporary, 0o600)  # channel headers are secrets
        os.replace(temporary, path)

    @staticmethod
    def _read_json(path: Path) -> Any:
        try:
            return orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None

    def _write(self, record: dict[str, Any]) -> None:
        self._write_json(self._path(_id(record)), record)

    async def create(self, record: dict[str, Any]) -> None:
        await asyncio.to_thread(self._write, record)

    def _read(self, path: Path) -> dict[str, Any] | None:
        value = self._read_json(path)
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
            for suffix in (".outbox", ".outbox.flock", ".lock", ".events", ".count"):
                with contextlib.suppress(OSError):
                    self._path(sub_id, suffix).unlink()
            try:
                self._path(sub_id).unlink()
            except FileNotFoundError:
                return False
            return True

        return await asyncio.to_thread(remove)

    def _lock_path(self, name: str) -> Path:
        return self.directory / f"{_safe(name)}.lock"

    async def lease(self, name: str, seconds: float) -> bool:
        def take() -> bool:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = self._lock_path(name)
            with contextlib.suppress(OSError):
                if time.time() - lock.stat().st_mtime > seconds:  # a dead holder's
                    lock.unlink()
            try:
                os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                return False
            return True

        return await asyncio.to_thread(take)

    async def release(self, name: str) -> None:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self._lock_path(name).unlink)

    async def push(self, sub_id: str, resources: Sequence[dict[str, Any]]) -> None:
        def append() -> None:
            path = self._path(sub_id, ".outbox")
            with self._locked(path):
                if not self._path(sub_id).exists():
                    return  # deleted meanwhile
                lines = [orjson.dumps(r) + b"\n" for r in resources]
                with open(path, "ab") as handle:
                    os.fchmod(handle.fileno(), 0o600)
                    handle.writelines(lines)
                with open(path, "rb") as handle:
                    kept = handle.readlines()
                if len(kept) > _OUTBOX_MAX:
                    path.write_bytes(b"".join(kept[-_OUTBOX_MAX:]))

        if resources:
            await asyncio.to_thread(append)

    async def push_events(self, sub_id: str, resources: Sequence[dict[str, Any]]) -> None:
        def append() -> None:
            path = self._path(sub_id, ".outbox")
            with self._locked(path):  # the count, the outbox and the log together
                if not self._path(sub_id).exists():
                    return  # deleted meanwhile
                last = self._count(sub_id)
                lines = [
                    orjson.dumps({"number": last + i, "resource": r}) + b"\n"
                    for i, r in enumerate(resources, 1)
                ]
                for suffix, most in ((".outbox", _OUTBOX_MAX), (".events", EVENTS_MAX)):
                    target = self._path(sub_id, suffix)
                    with open(target, "ab") as handle:
                        os.fchmod(handle.fileno(), 0o600)
                        handle.writelines(lines)
                    with open(target, "rb") as handle:
                        kept = handle.readlines()
                    if len(kept) > most:
                        target.write_bytes(b"".join(kept[-most:]))
                self._write_json(self._path(sub_id, ".count"), last + len(resources))

        if resources:
            await asyncio.to_thread(append)

    def _count(self, sub_id: str) -> int:
        value = self._read_json(self._path(sub_id, ".count"))
        return value if isinstance(value, int) else 0

    async def counted(self, sub_id: str) -> int:
        return await asyncio.to_thread(self._count, sub_id)

    async def events(self, sub_id: str, since: int, until: int | None) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            with self._locked(self._path(sub_id, ".outbox")):
                lines = self._lines(sub_id, ".events")
            found = (orjson.loads(line) for line in lines)
            return [
                e for e in found if since <= e["number"] and (until is None or e["number"] <= until)
            ]

        return await asyncio.to_thread(read)

    def _lines(self, sub_id: str, suffix: str = ".outbox") -> list[bytes]:
        try:
            with open(self._path(sub_id, suffix), "rb") as handle:
                return handle.readlines()
        except FileNotFoundError:
            return []

    async def peek(self, sub_id: str, count: int) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            with self._locked(self._path(sub_id, ".outbox")):
                return [orjson.loads(line) for line in self._lines(sub_id)[:count]]

        return await asyncio.to_thread(read)

    async def drop(self, sub_id: str, count: int) -> None:
        def cut() -> None:
            path = self._path(sub_id, ".outbox")
            with self._locked(path):
                rest = self._lines(sub_id)[count:]
                if path.exists():
                    path.write_bytes(b"".join(rest))

        await asyncio.to_thread(cut)

    async def sweep(self, source: str) -> dict[str, Any]:
        value = await asyncio.to_thread(self._read_json, self._poller(f"sweep.{source}.json"))
        return value if isinstance(value, dict) else {}

    async def save_sweep(self, source: str, state: dict[str, Any]) -> None:
        await asyncio.to_thread(self._write_json, self._poller(f"sweep.{source}.json"), state)

    async def swap(self, feed: str, digests: Sequence[tuple[str, str]]) -> list[bool]:
        olds = await self.exchange(feed, digests)
        return [_changed(old, new) for old, (_, new) in zip(olds, digests, strict=True)]

    async def exchange(self, feed: str, values: Sequence[tuple[str, str]]) -> list[str | None]:
        def trade() -> list[str | None]:
            path = self._poller(f"feed.{feed}.json")
            with self._locked(path):
                held = self._read_json(path)
                known: dict[str, str] = held if isinstance(held, dict) else {}
                olds = [known.get(key) for key, _ in values]
                known.update(values)
                self._write_json(path, known)
            return olds

        return await asyncio.to_thread(trade) if values else []

    async def aclose(self) -> None:
        return None


class RedisSubscriptionStore:
    def __init__(self, redis: aioredis.Redis, namespace: str = "fhir-adapter:") -> None:
        self.redis = redis
        self._p = f"{namespace}subscription:"
        self._ids = f"{namespace}subscriptions"
        self._sweeps = f"{namespace}sweep:"
        self._feeds = f"{namespace}feed:"
        self._token = os.urandom(8).hex()
        self._exchange = redis.register_script(_EXCHANGE)
        self._number = redis.register_script(_NUMBER)

    async def create(self, record: dict[str, Any]) -> None:
        sub_id = _id(record)
        await self.redis.set(self._p + sub_id, orjson.dumps(record))
        await self.redis.sadd(self._ids, sub_id)

    async def get(self, sub_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self._p + sub_id)
        return None if raw is None else orjson.loads(raw)

    async def all(self) -> list[dict[str, Any]]:
        ids = sorted(
            i.decode() if isinstance(i, bytes) else i for i in await self.redis.smembers(self._ids)
        )
        if not ids:
            return []
        raws = await self.redis.mget([self._p + i for i in ids])
        return [orjson.loads(raw) for raw in raws if raw is not None]

    async def update(self, record: dict[str, Any]) -> bool:
        return bool(await self.redis.set(self._p + _id(record), orjson.dumps(record), xx=True))

    async def delete(self, sub_id: str) -> bool:
        await self.redis.srem(self._ids, sub_id)
        await self.redis.delete(
            f"{self._p}{sub_id}:outbox", f"{self._p}{sub_id}:events", f"{self._p}{sub_id}:count"
        )
        return bool(await self.redis.delete(self._p + sub_id))

    async def lease(self, name: str, seconds: float) -> bool:
        key = f"{self._p}lease:{name}"
        return bool(await self.redis.set(key, self._token, nx=True, px=int(seconds * 1000)))

    async def release(self, name: str) -> None:
        key = f"{self._p}lease:{name}"
        if (await self.redis.get(key)) == self._token.encode():
            await self.redis.delete(key)

    async def push(self, sub_id: str, resources: Sequence[dict[str, Any]]) -> None:
        if not resources or not await self.redis.exists(self._p + sub_id):
            return
        key = f"{self._p}{sub_id}:outbox"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, *[orjson.dumps(r) for r in resources])
            pipe.ltrim(key, -_OUTBOX_MAX, -1)
            await pipe.execute()

    async def push_events(self, sub_id: str, resources: Sequence[dict[str, Any]]) -> None:
        if not resources:
            return
        keys = [
            self._p + sub_id,
            f"{self._p}{sub_id}:count",
            f"{self._p}{sub_id}:outbox",
            f"{self._p}{sub_id}:events",
            str(EVENTS_MAX),
        ]
        await self._number(keys=keys, args=[orjson.dumps(r) for r in resources])

    async def counted(self, sub_id: str) -> int:
        raw = await self.redis.get(f"{self._p}{sub_id}:count")
        return int(raw) if raw is not None else 0

    async def events(self, sub_id: str, since: int, until: int | None) -> list[dict[str, Any]]:
        raws = await self.redis.lrange(f"{self._p}{sub_id}:events", 0, -1)
        found = (orjson.loads(raw) for raw in raws)
        return [
            e for e in found if since <= e["number"] and (until is None or e["number"] <= until)
        ]

    async def peek(self, sub_id: str, count: int) -> list[dict[str, Any]]:
        raws = await self.redis.lrange(f"{self._p}{sub_id}:outbox", 0, count - 1)
        return [orjson.loads(raw) for raw in raws]

    async def drop(self, sub_id: str, count: int) -> None:
        await self.redis.ltrim(f"{self._p}{sub_id}:outbox", count, -1)

    async def sweep(self, source: str) -> dict[str, Any]:
        raw = await self.redis.get(self._sweeps + source)
        value = None if raw is None else orjson.loads(raw)
        return value if isinstance(value, dict) else {}

    async def save_sweep(self, source: str, state: dict[str, Any]) -> None:
        await self.redis.set(self._sweeps + source, orjson.dumps(state))

    async def swap(self, feed: str, digests: Sequence[tuple[str, str]]) -> list[bool]:
        olds = await self.exchange(feed, digests)
        return [_changed(old, new) for old, (_, new) in zip(olds, digests, strict=True)]

    async def exchange(self, feed: str, values: Sequence[tuple[str, str]]) -> list[str | None]:
        if not values:
            return []
        args = [part for pair in values for part in pair]
        answer = await self._exchange(keys=[self._feeds + feed], args=args)
        olds = [a.decode() if isinstance(a, bytes) else str(a) for a in answer]
        return [old or None for old in olds]

    async def aclose(self) -> None:
        await self.redis.aclose()
