"""Where a job's NDJSON files go: a local directory, or object storage.

The engine writes through a :class:`Writer`: ``append`` lines to a file, ``truncate`` it
back to its checkpointed size before a resumed run, ``create`` it empty, ``settle`` after
each checkpoint and ``seal`` it once it is whole. :class:`LocalOutput` writes files under
``[export] dir``; :class:`ObjectOutput` writes objects on S3-compatible storage
(:mod:`adapter.export.storage`).

**On object storage** each file is one multipart upload. Appended lines go to the file's
*tail*, a buffer kept beside the job (in Redis with the job, or a local file for the
``export`` command), never in this process's memory beyond one part. When the tail holds
``part_bytes`` it is uploaded as the file's next part and the next part's tail starts. The
tail of part *n* is dropped only after a checkpoint has recorded part *n* (``settle``), so a
run stopped anywhere resumes from its saved state: the tail is cut back to the saved
length, a part uploaded but not recorded is uploaded again under the same number
(replacing it). ``seal`` uploads what is left as the last part and completes the upload:
for a file the engine says is whole (``finished``), after the next checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from adapter.export.storage import ObjectStorage, StorageError
from adapter.export.store import JobStore, RedisJobStore

if TYPE_CHECKING:
    from adapter.export.engine import FileState
    from adapter.settings import ExportSettings

__all__ = [
    "PART_BYTES",
    "FileTails",
    "LocalOutput",
    "LocalWriter",
    "ObjectOutput",
    "ObjectWriter",
    "Output",
    "RedisTails",
    "Tails",
    "Writer",
    "output_for",
]

# A part of a multipart upload: S3 takes 5 MiB at least (but for the last one).
PART_BYTES = 8 * 1024 * 1024


class Writer(Protocol):
    async def truncate(self, file: FileState) -> None: ...

    async def create(self, file: FileState) -> None: ...

    async def append(self, file: FileState, lines: list[bytes]) -> None: ...

    async def settle(self) -> None: ...

    async def finished(self, file: FileState) -> None:
        """``file`` holds all it will: it may be sealed once a checkpoint has said so."""
        ...

    async def seal(self, file: FileState) -> None: ...


class Output(Protocol):
    """Where every job's files go."""

    requires_token: bool

    def writer(self, job_id: str) -> Writer: ...

    async def delete(self, job_id: str) -> None: ...

    async def aclose(self) -> None: ...


# -- a local directory ----------------------------------------------------------------------


class LocalWriter:
    """Appends lines to files in ``out``, tracking their sizes."""

    def __init__(self, out: Path) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)

    async def truncate(self, file: FileState) -> None:
        path = self.out / file.name
        if path.exists():
            with path.open("r+b") as handle:
                handle.truncate(file.bytes)
        elif file.bytes:
            raise RuntimeError(f"export file {file.name} is missing; the export cannot resume")

    async def create(self, file: FileState) -> None:
        """Start ``file`` empty: what a run stopped before its checkpoint left is dropped."""
        (self.out / file.name).write_bytes(b"")
        file.count = file.bytes = 0

    async def append(self, file: FileState, lines: list[bytes]) -> None:
        if not lines:
            return
        with (self.out / file.name).open("ab") as handle:
            data = b"".join(lines)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        file.count += len(lines)
        file.bytes += len(data)

    async def settle(self) -> None:
        return None

    async def finished(self, file: FileState) -> None:
        return None

    async def seal(self, file: FileState) -> None:
        return None


class LocalOutput:
    """Files under ``root/files/<job id>/``, served by the service (with a token)."""

    requires_token = True

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, job_id: str) -> Path:
        return self.root / "files" / job_id

    def writer(self, job_id: str) -> Writer:
        return LocalWriter(self.folder(job_id))

    async def delete(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    async def aclose(self) -> None:
        return None


# -- object storage -------------------------------------------------------------------------


class Tails(Protocol):
    """Byte buffers by name, under a job: the not yet uploaded end of each file."""

    async def append(self, job_id: str, name: str, data: bytes) -> None: ...

    async def read(self, job_id: str, name: str, size: int) -> bytes: ...

    async def truncate(self, job_id: str, name: str, size: int) -> None: ...

    async def drop(self, job_id: str, name: str) -> None: ...

    async def drop_job(self, job_id: str) -> None: ...


class FileTails:
    """Tails as files under ``root/<job id>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, job_id: str, name: str) -> Path:
        return self.root / job_id / name

    async def append(self, job_id: str, name: str, data: bytes) -> None:
        path = self._path(job_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    async def read(self, job_id: str, name: str, size: int) -> bytes:
        try:
            with self._path(job_id, name).open("rb") as handle:
                return handle.read(size)
        except FileNotFoundError:
            return b""

    async def truncate(self, job_id: str, name: str, size: int) -> None:
        path = self._path(job_id, name)
        if path.exists():
            with path.open("r+b") as handle:
                handle.truncate(size)
        elif size:
            raise RuntimeError(f"the buffer of {name} is missing; the export cannot resume")

    async def drop(self, job_id: str, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(job_id, name).unlink()

    async def drop_job(self, job_id: str) -> None:
        shutil.rmtree(self.root / job_id, ignore_errors=True)


class RedisTails:
    """Tails as Redis strings (``APPEND``), ``<prefix>tail:<job id>:<name>``, which every
    process of the deployment reaches."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def _key(self, job_id: str, name: str) -> str:
        return f"{self.prefix}tail:{job_id}:{name}"

    async def append(self, job_id: str, name: str, data: bytes) -> None:
        await self.redis.append(self._key(job_id, name), data)

    async def read(self, job_id: str, name: str, size: int) -> bytes:
        if size <= 0:
            return b""
        data: bytes = await self.redis.getrange(self._key(job_id, name), 0, size - 1)
        return data

    async def truncate(self, job_id: str, name: str, size: int) -> None:
        key = self._key(job_id, name)
        kept = await self.read(job_id, name, size)
        if len(kept) < size:
            raise RuntimeError(f"the buffer of {name} is missing; the export cannot resume")
        if size == 0:
            await self.redis.delete(key)
        elif await self.redis.strlen(key) != size:
            await self.redis.set(key, kept)

    async def drop(self, job_id: str, name: str) -> None:
        await self.redis.delete(self._key(job_id, name))

    async def drop_job(self, job_id: str) -> None:
        keys = [k async for k in self.redis.scan_iter(match=self._key(job_id, "*"), count=500)]
        if keys:
            await self.redis.delete(*keys)


class ObjectWriter:
    """One job's files as multipart uploads (see the module's docstring)."""

    def __init__(
        self, storage: ObjectStorage, tails: Tails, job_id: str, part_bytes: int = PART_BYTES
    ) -> None:
        self.storage = storage
        self.tails = tails
        self.job_id = job_id
        self.part_bytes = part_bytes
        self._uploaded: list[str] = []  # tails of parts uploaded since the last checkpoint
        self._finished: list[FileState] = []  # to seal after the next checkpoint

    def key(self, name: str) -> str:
        return self.storage.location.key(self.job_id, name)

    @staticmethod
    def _tail(file: FileState) -> str:
        return f"{file.name}.{len(file.parts) + 1}"

    async def truncate(self, file: FileState) -> None:
        await self.tails.truncate(self.job_id, self._tail(file), file.buffered)

    async def create(self, file: FileState) -> None:
        if file.upload is not None:
            await self.storage.abort(self.key(file.name), file.upload)
        for number in range(1, len(file.parts) + 2):
            await self.tails.drop(self.job_id, f"{file.name}.{number}")
        file.count = file.bytes = file.buffered = 0
        file.upload, file.parts, file.sealed = None, [], False

    async def append(self, file: FileState, lines: list[bytes]) -> None:
        if not lines:
            return
        data = b"".join(lines)
        if file.upload is None:
            file.upload = await self.storage.begin(self.key(file.name))
        await self.tails.append(self.job_id, self._tail(file), data)
        file.buffered += len(data)
        file.count += len(lines)
        file.bytes += len(data)
        if file.buffered >= self.part_bytes:
            await self._upload(file)

    async def _upload(self, file: FileState) -> None:
        tail = self._tail(file)
        body = await self.tails.read(self.job_id, tail, file.buffered)
        if len(body) != file.buffered:
            raise RuntimeError(f"the buffer of {file.name} is short; the export cannot go on")
        assert file.upload is not None
        number = len(file.parts) + 1
        etag = await self.storage.put_part(self.key(file.name), file.upload, number, body)
        file.parts.append((number, etag))
        file.buffered = 0
        self._uploaded.append(tail)

    async def settle(self) -> None:
        """After a checkpoint: the tails of the parts it recorded are no longer needed, and
        the files it holds as whole are sealed (the next checkpoint records it), so that
        tails are kept only for the files still written to. A file is sealed only once a
        checkpoint says it is whole: a run resumed from an earlier one, which may write
        more into it, never meets it completed."""
        uploaded, self._uploaded = self._uploaded, []
        for tail in uploaded:
            await self.tails.drop(self.job_id, tail)
        finished, self._finished = self._finished, []
        for file in finished:
            await self.seal(file)

    async def finished(self, file: FileState) -> None:
        if not file.sealed and file.upload is not None:
            self._finished.append(file)

    async def seal(self, file: FileState) -> None:
        """Upload what is left of ``file`` and complete it (again, after a stop, is fine)."""
        if file.sealed or file.upload is None:
            return
        key = self.key(file.name)
        try:
            if file.buffered or not file.parts:
                await self._upload(file)
            await self.storage.complete(key, file.upload, [(n, e) for n, e in file.parts])
        except StorageError:
            # Completed before a stop that came ahead of the checkpoint: the upload is
            # gone, and the object is there, whole.
            if await self.storage.size(key) != file.bytes:
                raise
        # An upload begun by a run that stopped before its checkpoint recorded it.
        await self.storage.abort_all(key)
        file.sealed = True


class ObjectOutput:
    """Every job's files under the storage's prefix, ``<prefix>/<job id>/<name>``. With
    ``signed_seconds`` the manifest names pre-signed URLs valid that long."""

    def __init__(
        self,
        storage: ObjectStorage,
        tails: Tails,
        *,
        signed_seconds: int | None = None,
        part_bytes: int = PART_BYTES,
    ) -> None:
        self.storage = storage
        self.tails = tails
        self.signed_seconds = signed_seconds
        self.part_bytes = part_bytes
        self.requires_token = signed_seconds is None

    def writer(self, job_id: str) -> Writer:
        return ObjectWriter(self.storage, self.tails, job_id, self.part_bytes)

    def key(self, job_id: str, name: str) -> str:
        return self.storage.location.key(job_id, name)

    async def signed_url(self, job_id: str, name: str) -> str:
        assert self.signed_seconds is not None
        return await self.storage.presign(self.key(job_id, name), self.signed_seconds)

    def chunks(self, job_id: str, name: str) -> AsyncIterator[bytes]:
        return self.storage.chunks(self.key(job_id, name))

    async def delete(self, job_id: str) -> None:
        await self.storage.delete_under(self.storage.location.key(job_id))
        await self.tails.drop_job(job_id)

    async def aclose(self) -> None:
        await self.storage.aclose()


def output_for(settings: ExportSettings, store: JobStore) -> Output:
    """Where the server's jobs write, by ``[export]``: object storage when ``storage`` is
    set (tails beside the jobs: in Redis, or under ``dir``), else ``dir``."""
    if not settings.storage:
        return LocalOutput(store.root)
    storage = ObjectStorage(
        settings.storage, endpoint_url=settings.endpoint_url, region=settings.region
    )
    tails: Tails = (
        RedisTails(store.redis, store.prefix)
        if isinstance(store, RedisJobStore)
        else FileTails(store.root / "tails")
    )
    signed = settings.signed_url_seconds if settings.signed_urls else None
    return ObjectOutput(storage, tails, signed_seconds=signed)
