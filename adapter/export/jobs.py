"""Export jobs run in the server's background.

:class:`ExportRunner` is started from the app's lifespan. A kick-off (:meth:`submit`)
stores the job and starts it at once in this process; every few seconds the runner also
looks through the store for a job no process holds (one found unfinished at start-up, or
left by a process that stopped) and resumes it from its last checkpoint (see
:mod:`adapter.export.engine`). Finished jobs, and their files, are deleted ``keep_hours``
after they finished; a cancelled job is deleted at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from adapter.export.engine import PAGE_SIZE, ExportState, Journal, parse_instant, run_export
from adapter.export.filters import parse_type_filters
from adapter.export.outputs import LocalOutput, Output
from adapter.export.storage import StorageError
from adapter.export.store import JobStore
from adapter.facade import Facade
from adapter.ops import redis_watch
from adapter.transport import lanes

if TYPE_CHECKING:
    from adapter.settings import ExportSettings

__all__ = ["ExportRunner", "JobGone", "now_instant"]

log = logging.getLogger("fhir_adapter")

LEASE_SECONDS = 60.0
# What a job id is (``secrets.token_urlsafe``): any other path is no job's, and never
# reaches a file name or a Redis key.
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class JobGone(Exception):
    """The job was cancelled (``cancelled``) or its lease lost while it ran."""

    def __init__(self, job_id: str, *, cancelled: bool = False) -> None:
        super().__init__(job_id)
        self.cancelled = cancelled


def now_instant(clock: Callable[[], float]) -> str:
    moment = datetime.fromtimestamp(clock(), UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ExportRunner:
    def __init__(
        self,
        gate: Facade,
        settings: ExportSettings,
        store: JobStore,
        *,
        journal: Journal | None = None,
        output: Output | None = None,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 2.0,
    ) -> None:
        self.gate = gate
        self.settings = settings
        self.store = store
        # Where the files go: under the store's directory, or object storage.
        self.output: Output = output if output is not None else LocalOutput(store.root)
        self.journal = journal
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.page_size = PAGE_SIZE
        self.owner = secrets.token_hex(8)
        self.running: dict[str, asyncio.Task[None]] = {}
        self._loop: asyncio.Task[None] | None = None

    # -- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        """Stop every job of this process where it stands (each resumes later)."""
        tasks = [t for t in (self._loop, *self.running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loop = None
        for job_id in list(self.running):
            await self.store.release(job_id, self.owner)
        self.running.clear()

    async def _watch(self) -> None:
        redis = getattr(self.store, "redis", None)  # a store shared through Redis
        place = None if redis is None else redis_watch.where(redis)
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # the store unreachable for a while: try again
                if place is not None and redis_watch.is_outage(exc):
                    redis_watch.unreachable(place, exc)  # once per outage, not every sweep
                else:
                    log.warning("export sweep failed (%s)", type(exc).__name__)
            else:
                if place is not None:
                    redis_watch.answers(place)
            await asyncio.sleep(self.poll_seconds)

    async def sweep(self) -> None:
        """Expire what is past keeping, renew this process's leases, resume the rest."""
        for job_id in await self.store.ids():
            job = await self.store.get(job_id)
            if job is None:  # its record expired in the store: the rest goes too
                await self.store.delete(job_id)
                continue
            if await self._expired(job):
                continue
            if job["status"] == "cancelled":
                await self._discard(job_id)
                continue
            if job_id in self.running:
                await self.store.claim(job_id, self.owner, LEASE_SECONDS)
            elif job["status"] == "running" and await self.store.claim(
                job_id, self.owner, LEASE_SECONDS
            ):
                self._launch(job_id)

    # -- what the routes ask --------------------------------------------------------------

    async def submit(
        self,
        *,
        client: str | None,
        request: str,
        pairs: Sequence[tuple[str, str]],
        since: str | None,
        patient_level: bool = False,
        type_filters: Sequence[str] = (),
        elements: Mapping[str, Sequence[str]] | None = None,
        patients: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Store and start a job; ``type_filters``, ``elements`` and ``patients``: its
        ``_typeFilter``, ``_elements`` and ``patient``, as the kick-off checked them."""
        job_id = secrets.token_urlsafe(16)
        job = {
            "id": job_id,
            "client": client,
            "request": request,
            "since": since,
            "type_filters": list(type_filters),
            "elements": {t: list(e) for t, e in (elements or {}).items()},
            "patients": list(patients),
            "status": "running",
            "created": self.clock(),
            "transaction_time": now_instant(self.clock),
            "finished": None,
            "state": ExportState.plan(pairs, patient_level=patient_level).to_json(),
        }
        await self.store.put(job)
        if await self.store.claim(job_id, self.owner, LEASE_SECONDS):
            self._launch(job_id)
        return job

    async def running_for(self, client: str | None) -> int:
        """How many jobs ``client`` has running (in every process: they are in the store)."""
        running = 0
        for job_id in await self.store.ids():
            job = await self.store.get(job_id)
            if job is not None and job["client"] == client and job["status"] == "running":
                running += 1
        return running

    async def find(self, job_id: str, client: str | None) -> dict[str, Any] | None:
        """The job, if it exists, is not past keeping, and ``client`` asked for it; None for
        an id that is no job's (of another shape than those this service makes)."""
        if not _JOB_ID.fullmatch(job_id):
            return None
        job = await self.store.get(job_id)
        if job is None or job["client"] != client or job["status"] == "cancelled":
            return None
        if await self._expired(job):
            return None
        return job

    async def cancel(self, job_id: str, client: str | None) -> bool:
        job = await self.find(job_id, client)
        if job is None:
            return False
        job["status"] = "cancelled"  # gone for its client from now on, whatever follows
        await self.store.put(job)
        task = self.running.pop(job_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._discard(job_id)
        return True

    async def _discard(self, job_id: str) -> None:
        """Delete a job's files, then the job; storage failing keeps the job for the next
        sweep to try again."""
        try:
            await self.output.delete(job_id)
        except StorageError as exc:
            log.warning("export files not deleted (%s)", exc)
            return
        await self.store.delete(job_id)

    # -- running --------------------------------------------------------------------------

    async def _expired(self, job: dict[str, Any]) -> bool:
        finished = job.get("finished")
        if finished is None or self.clock() < finished + self.settings.keep_hours * 3600:
            return False
        await self._discard(job["id"])
        return True

    def _launch(self, job_id: str) -> None:
        task = asyncio.create_task(self._run(job_id))
        self.running[job_id] = task
        task.add_done_callback(lambda _: self._forget(job_id, task))

    def _forget(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self.running.get(job_id) is task:
            del self.running[job_id]

    async def _run(self, job_id: str) -> None:
        job = await self.store.get(job_id)
        if job is None:
            return
        state = ExportState.from_json(job["state"])
        types = sorted({p.resource_type for p in state.parts})

        async def save(current: ExportState) -> None:
            stored = await self.store.get(job_id)
            gone = stored is None or stored["status"] == "cancelled"
            if gone or not await self.store.claim(job_id, self.owner, LEASE_SECONDS):
                raise JobGone(job_id, cancelled=gone)
            assert stored is not None
            stored["state"] = current.to_json()
            await self.store.put(stored)

        try:
            # The job draws on the bulk lane of each budget, for the client that asked:
            # the lane's ceiling ([export] budget_share) holds for every job together.
            with lanes.lane("bulk"), lanes.client(job["client"] or lanes.ANONYMOUS):
                state = await run_export(
                    self.gate,
                    state,
                    self.output.writer(job_id),
                    save,
                    since=parse_instant(job["since"]) if job["since"] else None,
                    type_filters=parse_type_filters(self.gate, job.get("type_filters", []), types),
                    elements=job.get("elements", {}),
                    patients=job.get("patients", []),
                    journal=self.journal,
                    transaction_time=parse_instant(job["transaction_time"]),
                    file_max_records=self.settings.file_max_records,
                    budget_share=1.0,
                    page_size=self.page_size,
                )
        except JobGone as gone:
            if gone.cancelled:  # by another process, which may have deleted files before
                await self._discard(job_id)  # this one wrote its last page
            return
        except Exception as exc:
            said = str(exc) if isinstance(exc, StorageError) else type(exc).__name__
            log.warning("export job failed (%s)", said)
            stored = await self.store.get(job_id)
            if stored is not None and stored["status"] != "cancelled":
                stored.update(status="failed", finished=self.clock())
                if isinstance(exc, StorageError):  # its text names no key, URL or secret
                    stored["failure"] = str(exc)
                await self.store.put(stored)
            await self.store.release(job_id, self.owner)
            return
        stored = await self.store.get(job_id)
        if stored is not None and stored["status"] != "cancelled":
            stored.update(status="done", finished=self.clock(), state=state.to_json())
            await self.store.put(stored)
        await self.store.release(job_id, self.owner)
