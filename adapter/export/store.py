"""Where export jobs are kept: a JSON file per job under ``[export] dir``, or Redis.

Either way a job's files live under ``[export] dir``/``files/<job id>/`` (with Redis, on
storage every process reaches). One process runs a job at a time: it *claims* the job
with a lease (Redis: ``SET NX`` with an expiry; files: a lock file created exclusively,
taken over once its lease has run out), renews the lease while it works, and releases it
at the end. Any process answers a job's status from the store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Any, Protocol

import orjson

__all__ = ["FileJobStore", "JobStore", "RedisJobStore"]


class JobStore(Protocol):
    root: Path

    async def put(self, job: dict[str, Any]) -> None: ...

    async def get(self, job_id: str) -> dict[str, Any] | None: ...

    async def ids(self) -> list[str]: ...

    async def delete(self, job_id: str) -> None: ...

    async def claim(self, job_id: str, owner: str, lease: float) -> bool:
        """Take (or renew, for its ``owner``) the job's lease; False if another holds it."""
        ...

    async def release(self, job_id: str, owner: str) -> None: ...

    async def aclose(self) -> None: ...


def files_of(root: Path, job_id: str) -> Path:
    return root / "files" / job_id


class FileJobStore:
    """Jobs as JSON files in ``root/jobs``; leases as lock files next to them."""

    def __init__(self, root: Path, clock: Any = time.time) -> None:
        self.root = root
        self.jobs = root / "jobs"  # made with the first job
        self.clock = clock

    async def put(self, job: dict[str, Any]) -> None:
        self.jobs.mkdir(parents=True, exist_ok=True)
        path = self.jobs / f"{job['id']}.json"
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(orjson.dumps(job))
        os.replace(temporary, path)

    async def get(self, job_id: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = orjson.loads((self.jobs / f"{job_id}.json").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        return data

    async def ids(self) -> list[str]:
        return sorted(p.stem for p in self.jobs.glob("*.json"))

    async def delete(self, job_id: str) -> None:
        shutil.rmtree(files_of(self.root, job_id), ignore_errors=True)
        for suffix in (".json", ".lock"):
            with contextlib.suppress(FileNotFoundError):
                (self.jobs / f"{job_id}{suffix}").unlink()

    async def claim(self, job_id: str, owner: str, lease: float) -> bool:
        lock = self.jobs / f"{job_id}.lock"
        until = self.clock() + lease
        try:
            held = orjson.loads(lock.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            held = None
        if held is not None and held["owner"] != owner and held["until"] > self.clock():
            return False
        if held is None:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as handle:
                handle.write(orjson.dumps({"owner": owner, "until": until}))
            return True
        lock.write_bytes(orjson.dumps({"owner": owner, "until": until}))
        return True

    async def release(self, job_id: str, owner: str) -> None:
        lock = self.jobs / f"{job_id}.lock"
        try:
            held = orjson.loads(lock.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return
        if held["owner"] == owner:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

    async def aclose(self) -> None:
        return None


class RedisJobStore:
    """Jobs as JSON strings in Redis (every process sees them); leases as ``SET NX PX``."""

    # A finished job's record outlives its keeping by this much, so that the sweep that
    # deletes its files finds it first; Redis drops it after that whatever happens.
    GRACE = 3600.0

    def __init__(
        self,
        redis: Any,
        root: Path,
        namespace: str = "fhir-adapter:",
        keep_seconds: float | None = None,
        clock: Any = time.time,
    ) -> None:
        self.redis = redis
        self.root = root
        self._p = f"{namespace}export:"
        self.keep_seconds = keep_seconds
        self.clock = clock

    @property
    def prefix(self) -> str:
        """What every key of the job store begins with (the files' tails use it too)."""
        return self._p

    async def put(self, job: dict[str, Any]) -> None:
        finished = job.get("finished")
        expiry = None
        if finished is not None and self.keep_seconds is not None:
            left = finished + self.keep_seconds + self.GRACE - self.clock()
            expiry = max(1, int(left))
        await self.redis.set(f"{self._p}job:{job['id']}", orjson.dumps(job), ex=expiry)
        await self.redis.sadd(f"{self._p}jobs", job["id"])

    async def get(self, job_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(f"{self._p}job:{job_id}")
        if raw is None:
            return None
        data: dict[str, Any] = orjson.loads(raw)
        return data

    async def ids(self) -> list[str]:
        members = await self.redis.smembers(f"{self._p}jobs")
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def delete(self, job_id: str) -> None:
        shutil.rmtree(files_of(self.root, job_id), ignore_errors=True)
        await self.redis.delete(f"{self._p}job:{job_id}", f"{self._p}lease:{job_id}")
        await self.redis.srem(f"{self._p}jobs", job_id)

    async def claim(self, job_id: str, owner: str, lease: float) -> bool:
        key = f"{self._p}lease:{job_id}"
        milliseconds = max(1, int(lease * 1000))
        if await self.redis.set(key, owner, nx=True, px=milliseconds):
            return True
        held = await self.redis.get(key)
        if held is not None and (held.decode() if isinstance(held, bytes) else held) == owner:
            await self.redis.pexpire(key, milliseconds)
            return True
        return False

    async def release(self, job_id: str, owner: str) -> None:
        key = f"{self._p}lease:{job_id}"
        held = await self.redis.get(key)
        if held is not None and (held.decode() if isinstance(held, bytes) else held) == owner:
            await self.redis.delete(key)

    async def aclose(self) -> None:
        await self.redis.aclose()
