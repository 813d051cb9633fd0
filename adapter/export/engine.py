"""The export engine: every resource of some types at some sources, into NDJSON files.

One *part* per (source, type): the engine pages through the source's listing of the
type, through the gate (:meth:`adapter.facade.Facade.listing_page`), and appends each
page to the part's file as it comes, so the data set is never held in memory. A file
holds at most ``file_max_records`` records; then the part's next file starts.

**Resumable.** After each page the files are flushed and the engine's :class:`ExportState`
(per part: the source's cursor, the records written, each file's size) is handed to
``save``. A run started again from the last saved state first cuts every file back to its
saved size (a page written but not checkpointed is dropped), then asks each part's
source for the page at its saved cursor: nothing is written twice.

**_since.** A resource without ``meta.lastUpdated`` (a vendor that keeps no such time) is
given one by the change journal (``journal.stamp(source, resources, now)``), with or
without ``_since``: the journal sees every export, and the files say when each record
changed. Content the journal has not seen before is stamped with the export's
``transaction_time``: an export after it with ``_since`` = that time then holds what
changed since, not everything the earlier export saw first.
With ``_since`` only resources whose ``meta.lastUpdated`` is after it are written; one
without any (no journal) is kept, and a vendor's time in whole seconds counts as after
``_since`` when its second ends after it: an export never leaves out what may have
changed.

**_typeFilter.** A type's filters (:mod:`adapter.export.filters`) are applied to each page
after ``_since``: only the records that meet one of them are written.

**Types.** Every type a source can list (:data:`EXPORT_TYPES`). A Patient or Group export
(``ExportState.plan(..., patient_level=True)``) writes the patient compartment's types
first, and of a directory type only the resources they reference (collected, as
``Type/id``, into the saved state as the compartment's pages are written).

**_elements, patient** (:mod:`adapter.export.elements`). The named patients narrow the
compartment's pages first; a type's elements subset each record last, after its
references were collected.

**Deletions.** Every page's ids are told to the journal as seen at the export's
``transaction_time``; when every part is done, each listing that reached its end sweeps
the journal (what it did not see is deleted), and with ``_since`` the records found
deleted after it are written as the ``deleted`` file (see :mod:`adapter.journal`).

**Errors.** A record the mapping refused, and a source that fails (after a few tries),
become OperationOutcome lines in the error file (``error`` in the manifest); the other
parts go on and the export still completes.

**Vendor budget.** Exports draw on the vendor keys' budgets like any request (the calls
take their slots in the key pool), but pace themselves to at most ``budget_share`` of each
limit of the source's key pool (:mod:`adapter.facade.pacing`): the vendor calls a page
made are counted and the next page waits until the last window's calls are under that
share. The rest of the
budget stays free for interactive requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from adapter.export.elements import narrowed, subset_all
from adapter.export.filters import TypeFilter, kept
from adapter.export.outputs import LocalWriter, Writer
from adapter.facade import Facade, Pacer, Page, outcome_of
from adapter.fhir.bulk import COMPARTMENT_TYPES, DIRECTORY_TYPES
from adapter.fhir.dates import parse_instant
from adapter.fhir.outcome import Issue, operation_outcome
from adapter.journal import Journal

__all__ = [
    "COMPARTMENT_TYPES",
    "DELETED_FILE",
    "DIRECTORY_TYPES",
    "ERROR_FILE",
    "EXPORT_TYPES",
    "ExportState",
    "FileState",
    "Journal",
    "PartState",
    "Progress",
    "manifest",
    "parse_instant",
    "run_export",
]

ERROR_FILE = "errors.ndjson"
DELETED_FILE = "deleted.ndjson"
# Every type a source can list; the patient compartment's first: a Patient or Group
# export writes the directory resources they reference, and so must have seen them.
EXPORT_TYPES = COMPARTMENT_TYPES + DIRECTORY_TYPES
PAGE_SIZE = 100
# A failing page is asked again this many times (after 1, 2, 4 ... seconds) before the
# source is reported in the error file.
TRIES = 3


Progress = Callable[[str, str, int, int | None], None]  # source, type, written, total


@dataclass
class FileState:
    name: str
    count: int = 0
    bytes: int = 0
    # On object storage (:mod:`adapter.export.outputs`): the multipart upload, its parts
    # uploaded (number, ETag), the bytes written since the last part, and whether complete.
    upload: str | None = None
    parts: list[tuple[int, str]] = field(default_factory=list)
    buffered: int = 0
    sealed: bool = False


@dataclass
class PartState:
    source: str
    resource_type: str
    cursor: str | None = None
    started: bool = False
    done: bool = False
    written: int = 0
    total: int | None = None  # the search's total when the source knows it
    files: list[FileState] = field(default_factory=list)
    # A Patient or Group export's directory type: only what its compartment referenced.
    referenced_only: bool = False
    complete: bool = False  # the listing reached its end (not cut short by a failure)


@dataclass
class ExportState:
    """Where an export stands; JSON-able (``to_json``/``from_json``) for checkpoints."""

    parts: list[PartState]
    errors: FileState = field(default_factory=lambda: FileState(ERROR_FILE))
    # ``Type/id`` of the directory resources the compartment's records written so far
    # reference (kept only when a part is ``referenced_only``).
    referenced: list[str] = field(default_factory=list)
    deleted: FileState = field(default_factory=lambda: FileState(DELETED_FILE))
    deletions_done: bool = False

    @classmethod
    def plan(cls, pairs: Sequence[tuple[str, str]], *, patient_level: bool = False) -> ExportState:
        """The parts of ``pairs`` (source, type), the compartment's first. At patient
        level (a Patient or Group export) a directory type holds only what the
        compartment's records reference."""
        order = sorted(pairs, key=lambda pair: pair[1] not in COMPARTMENT_TYPES)
        return cls(
            [
                PartState(
                    source,
                    resource_type,
                    referenced_only=patient_level and resource_type in DIRECTORY_TYPES,
                )
                for source, resource_type in order
            ]
        )

    @property
    def patient_level(self) -> bool:
        return any(p.referenced_only for p in self.parts)

    @property
    def done(self) -> bool:
        return all(p.done for p in self.parts)

    def written(self) -> int:
        return sum(p.written for p in self.parts)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExportState:
        parts = [
            PartState(**{**p, "files": [FileState(**f) for f in p["files"]]}) for p in data["parts"]
        ]
        return cls(
            parts,
            FileState(**data["errors"]),
            list(data.get("referenced", [])),
            FileState(**data.get("deleted", {"name": DELETED_FILE})),
            bool(data.get("deletions_done", False)),
        )


def manifest(
    state: ExportState, transaction_time: str, request: str, url_of: Callable[[str], str]
) -> dict[str, Any]:
    """The Bulk Data manifest of a finished export: files without records are left out."""
    output = [
        {"type": p.resource_type, "url": url_of(f.name), "count": f.count}
        for p in state.parts
        for f in p.files
        if f.count
    ]
    errors = state.errors
    error = (
        [{"type": "OperationOutcome", "url": url_of(errors.name), "count": errors.count}]
        if errors.count
        else []
    )
    gone = state.deleted
    deleted = (
        [{"type": "Bundle", "url": url_of(gone.name), "count": gone.count}] if gone.count else []
    )
    return {
        "transactionTime": transaction_time,
        "request": request,
        "requiresAccessToken": True,
        "output": output,
        "deleted": deleted,
        "error": error,
    }


def _line(resource: Mapping[str, Any]) -> bytes:
    return orjson.dumps(resource) + b"\n"


def _file_name(part: PartState, index: int) -> str:
    return f"{part.resource_type}.{part.source}.{index:03d}.ndjson"


async def run_export(
    gate: Facade,
    state: ExportState,
    out: Path | Writer,
    save: Callable[[ExportState], Awaitable[None]],
    *,
    since: datetime | None = None,
    type_filters: Mapping[str, Sequence[TypeFilter]] | None = None,
    elements: Mapping[str, Sequence[str]] | None = None,
    patients: Sequence[str] = (),
    journal: Journal | None = None,
    transaction_time: datetime | None = None,
    file_max_records: int = 100_000,
    budget_share: float = 1.0,
    page_size: int = PAGE_SIZE,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ExportState:
    """Run (or resume) the export ``state`` describes, writing into ``out`` (a directory,
    or a :class:`Writer`); ``save`` is awaited with the state after every page. Returns
    the finished state, every file whole (sealed). Cancelling it leaves the last saved
    state good for resuming."""
    writer = LocalWriter(out) if isinstance(out, Path) else out

    async def checkpoint(current: ExportState) -> None:
        await save(current)
        await writer.settle()

    for part in state.parts:
        if part.files:
            await writer.truncate(part.files[-1])
    await writer.truncate(state.errors)
    await writer.truncate(state.deleted)
    pacers = {
        name: gate.pacer(name, budget_share, clock=clock, sleep=sleep) for name in gate.sources
    }
    for part in state.parts:
        if part.done:
            if progress:
                progress(part.source, part.resource_type, part.written, part.total)
            continue
        if part.source not in gate.sources:
            issue = Issue("error", "not-found", f"source {part.source} is unknown")
            await _error(writer, state, issue)
            part.done = True
            await checkpoint(state)
            continue
        await _run_part(
            gate,
            part,
            state,
            writer,
            checkpoint,
            pacer=pacers[part.source],
            since=since,
            filters=(type_filters or {}).get(part.resource_type, ()),
            elements=(elements or {}).get(part.resource_type, ()),
            patients=patients,
            journal=journal,
            transaction_time=transaction_time,
            file_max_records=file_max_records,
            page_size=page_size,
            progress=progress,
            sleep=sleep,
        )
    if journal is not None and transaction_time is not None and not state.deletions_done:
        await _deletions(journal, state, writer, since, transaction_time, listed=not patients)
        await checkpoint(state)
    for file in [*(f for p in state.parts for f in p.files), state.errors, state.deleted]:
        if file.count and not file.sealed:
            await writer.seal(file)
            await checkpoint(state)
    return state


async def _deletions(
    journal: Journal,
    state: ExportState,
    writer: Writer,
    since: datetime | None,
    transaction_time: datetime,
    *,
    listed: bool,
) -> None:
    """Each complete listing marks what it did not see as deleted (in the journal); with
    ``since``, the records found deleted after it become the ``deleted`` file: a
    transaction Bundle a line, one DELETE entry each (Bulk Data IG v2.0.0). Not for an
    export narrowed to named patients (a deleted record's patient is not known), nor for
    a directory part that holds only what its compartment referenced."""
    await writer.create(state.deleted)  # written whole again if a run stopped within it
    for part in state.parts:
        if not part.complete:
            continue
        await journal.sweep(part.source, part.resource_type, transaction_time)
        if since is None or not listed or part.referenced_only:
            continue
        gone = await journal.deleted(part.source, part.resource_type, since)
        lines = [_line(_deletion(part.resource_type, i)) for i in gone]
        await writer.append(state.deleted, lines)
    state.deletions_done = True


def _deletion(resource_type: str, fhir_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": f"{resource_type}/{fhir_id}"}}],
    }


async def _run_part(
    gate: Facade,
    part: PartState,
    state: ExportState,
    writer: Writer,
    save: Callable[[ExportState], Awaitable[None]],
    *,
    pacer: Pacer,
    since: datetime | None,
    filters: Sequence[TypeFilter],
    elements: Sequence[str],
    patients: Sequence[str],
    journal: Journal | None,
    transaction_time: datetime | None,
    file_max_records: int,
    page_size: int,
    progress: Progress | None,
    sleep: Callable[[float], Awaitable[None]],
) -> None:
    if progress:
        progress(part.source, part.resource_type, part.written, part.total)
    while not part.done:
        page = await _page(gate, part, page_size, pacer, sleep)
        if isinstance(page, BaseException):
            where = f"export of {part.resource_type} at {part.source}"
            error = outcome_of(page, part.source, where=where)
            for issue in error.issues:
                await _error(writer, state, issue)
            part.done = True
            await _finished(writer, part)
            await save(state)
            break
        if journal is not None and transaction_time is not None:
            ids = [str(r.get("id")) for r in page.resources]
            await journal.seen(part.source, part.resource_type, ids, transaction_time)
        listed = page.resources
        if part.referenced_only:
            wanted = set(state.referenced)
            listed = [r for r in listed if _key(r) in wanted]
        listed = narrowed(patients, part.resource_type, listed)
        resources = await _since(listed, part.source, since, journal, transaction_time)
        if filters:
            zone, country = gate.zone(part.source), gate.country(part.source)
            resources = kept(filters, resources, zone, country)
        for vendor_id in page.left_out:
            await _error(
                writer,
                state,
                Issue(
                    "warning",
                    "processing",
                    f"source {part.source}: vendor record {vendor_id} cannot be mapped "
                    f"as {part.resource_type} and is left out",
                ),
            )
        if state.patient_level and part.resource_type in COMPARTMENT_TYPES:
            state.referenced = sorted(set(state.referenced).union(*map(_directory, resources)))
        if elements:
            resources = subset_all({part.resource_type: elements}, part.resource_type, resources)
        await _write(writer, part, resources, file_max_records)
        exact = since is None and not filters and not part.referenced_only and not patients
        if not part.started and page.total is not None and exact:
            part.total = page.total
        part.started = True
        if page.next_cursor is None or page.next_cursor == part.cursor:
            part.done = True
            part.complete = page.next_cursor is None
            await _finished(writer, part)
        part.cursor = page.next_cursor
        await save(state)
        if progress:
            progress(part.source, part.resource_type, part.written, part.total)


async def _page(
    gate: Facade,
    part: PartState,
    page_size: int,
    pacer: Pacer,
    sleep: Callable[[float], Awaitable[None]],
) -> Page | Exception:
    failure: Exception | None = None
    for attempt in range(TRIES):
        if attempt:
            await sleep(2.0 ** (attempt - 1))
        await pacer.wait()
        try:
            return await gate.listing_page(
                part.source,
                part.resource_type,
                part.cursor if part.started else None,
                count=page_size,
                pacer=pacer,
            )
        except Exception as exc:
            failure = exc
    assert failure is not None
    return failure


async def _since(
    resources: list[dict[str, Any]],
    source: str,
    since: datetime | None,
    journal: Journal | None,
    transaction_time: datetime | None,
) -> list[dict[str, Any]]:
    vendor_dated = [bool((r.get("meta") or {}).get("lastUpdated")) for r in resources]
    if journal is not None and not all(vendor_dated):
        unstamped = [r for r, dated in zip(resources, vendor_dated, strict=True) if not dated]
        stamped = iter(await journal.stamp(source, unstamped, transaction_time))
        resources = [
            r if dated else next(stamped) for r, dated in zip(resources, vendor_dated, strict=True)
        ]
    if since is None:
        return resources
    return [
        r
        for r, dated in zip(resources, vendor_dated, strict=True)
        if _changed_after(r, since, coarse=dated)
    ]


def _key(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def _directory(value: Any) -> set[str]:
    """The ``Type/id`` of every directory resource ``value`` references, at any depth."""
    found: set[str] = set()
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str):
            kind, _, fhir_id = reference.rpartition("/")
            kind = kind.rpartition("/")[2]
            if kind in DIRECTORY_TYPES and fhir_id:
                found.add(f"{kind}/{fhir_id}")
        for item in value.values():
            if isinstance(item, dict | list):
                found |= _directory(item)
    elif isinstance(value, list):
        for item in value:
            found |= _directory(item)
    return found


def _changed_after(resource: dict[str, Any], since: datetime, *, coarse: bool) -> bool:
    """Whether ``resource`` changed after ``since``. A vendor's time in whole seconds
    (``...:05Z``, ``...:05.000Z``) may stand for any moment of that second: it counts as
    after ``since`` when that second ends after it (the journal's own times are exact)."""
    updated = (resource.get("meta") or {}).get("lastUpdated")
    if not updated:
        return True  # no time to judge by: kept, as one that may have changed
    try:
        moment = parse_instant(updated)
    except ValueError:
        return True
    if coarse and moment.microsecond == 0:
        return moment + timedelta(seconds=1) > since
    return moment > since


async def _write(
    writer: Writer, part: PartState, resources: list[dict[str, Any]], file_max_records: int
) -> None:
    pending = [_line(r) for r in resources]
    while pending:
        if not part.files or part.files[-1].count >= file_max_records:
            if part.files:
                await writer.finished(part.files[-1])
            part.files.append(FileState(_file_name(part, len(part.files) + 1)))
            await writer.create(part.files[-1])
        file = part.files[-1]
        room = file_max_records - file.count
        chunk, pending = pending[:room], pending[room:]
        await writer.append(file, chunk)
        part.written += len(chunk)


async def _finished(writer: Writer, part: PartState) -> None:
    for file in part.files:
        await writer.finished(file)


async def _error(writer: Writer, state: ExportState, issue: Issue) -> None:
    await writer.append(state.errors, [_line(operation_outcome(issue))])
