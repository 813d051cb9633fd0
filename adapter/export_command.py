"""``fhir-adapter export``: the export engine run through the same gate the server builds
(:func:`adapter.assembly.build_facade`), without a server.

    fhir-adapter export [--config F] --source S --type Patient,Appointment [--since T]
                        [--type-filter Type?search ...] [--elements E,...]
                        [--storage s3://bucket/prefix] --out DIR [--resume]

Writes the NDJSON files and ``manifest.json`` (the Bulk Data manifest, file URLs as
``file:`` URIs) into ``DIR``, with a progress bar per type. With object storage
(``--storage s3://bucket/prefix``, or ``[export] storage`` of the configuration, its
endpoint and credentials as the server takes them) the files are uploaded as they are
written, under ``prefix/<export id>/``, with ``manifest.json`` beside them (URLs as
``s3://`` URIs, or pre-signed with ``[export] signed_urls``); ``DIR`` keeps the state, the
not yet uploaded end of each file, and a copy of the manifest. ``--type-filter`` (repeated, or
comma-joined) is the kick-off's ``_typeFilter`` (:mod:`adapter.export.filters`),
``--elements`` its ``_elements`` (:mod:`adapter.export.elements`). Its position is kept
in ``DIR/export-state.json`` after every page: ``--resume`` continues an export that was
stopped (Ctrl-C) or failed, without writing anything twice. Exit codes: 0 done; 1 done
but some records or a source failed (the error file is named); 2 a usage or
configuration mistake; 130 stopped by Ctrl-C (resumable).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from adapter.assembly import build_facade, journal_of
from adapter.export.elements import parse_elements
from adapter.export.engine import (
    EXPORT_TYPES,
    ExportState,
    manifest,
    parse_instant,
    run_export,
)
from adapter.export.filters import parse_type_filters, split_type_filters
from adapter.export.jobs import now_instant
from adapter.export.outputs import FileTails, ObjectWriter
from adapter.export.storage import ObjectStorage, StorageError, parse_location
from adapter.facade import Facade
from adapter.fhir.outcome import FhirError
from adapter.settings import Settings, SettingsError, load_settings
from adapter.transport import budget

__all__ = ["STATE_FILE", "export_command"]

STATE_FILE = "export-state.json"
MANIFEST_FILE = "manifest.json"


class UsageError(Exception):
    pass


def export_command(
    config: str | None,
    sources: str | None,
    types: str | None,
    since: str | None,
    out: str,
    resume: bool,
    *,
    type_filters: list[str] | None = None,
    elements: str | None = None,
    storage: str | None = None,
    transports: Mapping[str, Any] | None = None,
) -> int:
    """Run the command; its exit code. ``transports`` (source -> transport) puts a
    caller's own vendor behind a source, as tests do."""
    try:
        settings = load_settings(config)
    except SettingsError as exc:
        for line in exc.problems:
            print(f"configuration error: {line}", file=sys.stderr)
        return 2
    folder = Path(out)
    try:
        job = _job(
            settings, folder, sources, types, since, resume, type_filters or [], elements, storage
        )
    except FhirError as exc:  # --elements naming what no exported type has
        for issue in exc.issues:
            print(f"export: {issue.diagnostics}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    # Vendor budgets as the server draws on them: shared through Redis when configured
    # (the export then counts against the same budget as the servers), else this process's.
    budget_redis = (
        aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
        if settings.redis_url
        else None
    )
    budget.configure(budget.Budgets(budget_redis, workers=1, namespace=settings.redis_prefix))
    try:
        state, urls = asyncio.run(_run(settings, transports, folder, job, budget_redis))
    except KeyboardInterrupt:
        print(f"export stopped; `--resume --out {folder}` continues it", file=sys.stderr)
        return 130
    except FhirError as exc:  # a --type-filter the export cannot apply
        for issue in exc.issues:
            print(f"export: {issue.diagnostics}", file=sys.stderr)
        return 2
    except StorageError as exc:  # its text names no key, endpoint or credential
        print(f"export: {exc}; `--resume --out {folder}` continues it", file=sys.stderr)
        return 1
    except Exception as exc:
        print(
            f"export failed ({type(exc).__name__}); `--resume --out {folder}` continues it",
            file=sys.stderr,
        )
        return 1
    body = manifest(
        state, job["transaction_time"], job["request"], lambda n: urls.get(n) or _uri(folder, n)
    )
    body["requiresAccessToken"] = False  # local files, s3:// URIs or pre-signed URLs
    _write_json(folder / MANIFEST_FILE, body)
    written = state.written()
    where = _objects(job) or str(folder)
    print(f"export done: {written} resources in {where}; manifest {folder / MANIFEST_FILE}")
    if state.errors.count:
        print(
            f"export: {state.errors.count} problems, see {folder / state.errors.name}",
            file=sys.stderr,
        )
        return 1
    return 0


def _objects(job: Mapping[str, Any]) -> str | None:
    """``s3://bucket/prefix/<export id>`` where the export's files go, if on storage."""
    if not job.get("storage"):
        return None
    location = parse_location(job["storage"])
    return f"s3://{location.bucket}/{location.key(job['id'])}"


def _uri(folder: Path, name: str) -> str:
    return (folder / name).resolve().as_uri()


def _job(
    settings: Settings,
    folder: Path,
    sources: str | None,
    types: str | None,
    since: str | None,
    resume: bool,
    type_filters: list[str],
    elements: str | None = None,
    storage: str | None = None,
) -> dict[str, Any]:
    saved = folder / STATE_FILE
    if resume:
        if not saved.is_file():
            raise UsageError(f"nothing to resume in {folder}")
        job: dict[str, Any] = orjson.loads(saved.read_bytes())
        missing = [n for n in job["sources"] if n not in settings.sources]
        if missing:
            raise UsageError(f"source {', '.join(missing)} is no longer configured")
        return job
    if saved.exists() or (folder / MANIFEST_FILE).exists():
        raise UsageError(f"{folder} holds an export already; --resume continues it")
    names = _split(sources) or list(settings.sources)
    unknown = [n for n in names if n not in settings.sources]
    if unknown:
        raise UsageError(
            f"unknown source {', '.join(unknown)} (known: {', '.join(settings.sources)})"
        )
    wanted = _split(types) or list(EXPORT_TYPES)
    refused = [t for t in wanted if t not in EXPORT_TYPES]
    if refused:
        raise UsageError(
            f"--type {', '.join(refused)} is not exported (only {', '.join(EXPORT_TYPES)})"
        )
    storage = storage or settings.export.storage
    if storage is not None:
        try:
            parse_location(storage)
        except ValueError as exc:
            raise UsageError(f"--storage: {exc}") from None
    if since is not None:
        try:
            parse_instant(since)
        except ValueError:
            raise UsageError("--since must be an instant with a time zone") from None
    request = f"fhir-adapter export --source {','.join(names)} --type {','.join(wanted)}"
    if since:
        request += f" --since {since}"
    filters = split_type_filters(type_filters)
    for text in filters:
        request += f" --type-filter {text}"
    subsets = parse_elements([elements] if elements else [], wanted)
    if elements:
        request += f" --elements {elements}"
    job = {
        "id": secrets.token_urlsafe(12),
        "storage": storage,
        "sources": names,
        "types": wanted,
        "since": since,
        "type_filters": filters,
        "elements": subsets,
        "request": request,
        "transaction_time": now_instant(time.time),
        "state": ExportState.plan([(s, t) for t in wanted for s in names]).to_json(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(saved, job)
    return job


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _write_json(path: Path, body: Any) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
    os.replace(temporary, path)


async def _run(
    settings: Settings,
    transports: Mapping[str, Any] | None,
    folder: Path,
    job: dict[str, Any],
    budget_redis: Any,
) -> tuple[ExportState, dict[str, str]]:
    """The finished state, and the manifest's URL of each file on object storage."""
    state = ExportState.from_json(job["state"])
    storage = (
        ObjectStorage(
            job["storage"],
            endpoint_url=settings.export.endpoint_url,
            region=settings.export.region,
        )
        if job.get("storage")
        else None
    )
    journal = journal_of(settings)
    gate: Facade = build_facade(
        settings, transports=transports, sources=job["sources"], journal=journal
    )

    async def save(current: ExportState) -> None:
        job["state"] = current.to_json()
        _write_json(folder / STATE_FILE, job)

    type_filters = parse_type_filters(gate, job.get("type_filters", []), job["types"])
    bars = _Bars(job["types"])
    out = (
        folder
        if storage is None
        else ObjectWriter(storage, FileTails(folder / "buffers"), job["id"])
    )
    try:
        with bars.progress:
            state = await run_export(
                gate,
                state,
                out,
                save,
                since=parse_instant(job["since"]) if job["since"] else None,
                type_filters=type_filters,
                elements=job.get("elements", {}),
                journal=journal,
                transaction_time=parse_instant(job["transaction_time"]),
                file_max_records=settings.export.file_max_records,
                budget_share=settings.export.budget_share,
                progress=bars.update,
            )
        if storage is None:
            return state, {}
        return state, await _publish(storage, settings, job, state)
    finally:
        if storage is not None:
            await storage.aclose()
        await asyncio.gather(gate.aclose(), journal.aclose())
        if budget_redis is not None:
            await budget_redis.aclose()


async def _publish(
    storage: ObjectStorage, settings: Settings, job: Mapping[str, Any], state: ExportState
) -> dict[str, str]:
    """Each file's URL (pre-signed with ``[export] signed_urls``, else ``s3://``), and the
    manifest beside the files."""
    location = storage.location
    names = [f.name for p in state.parts for f in p.files if f.count]
    names += [f.name for f in (state.errors, state.deleted) if f.count]
    urls: dict[str, str] = {}
    for name in names:
        key = location.key(job["id"], name)
        urls[name] = (
            await storage.presign(key, settings.export.signed_url_seconds)
            if settings.export.signed_urls
            else f"s3://{location.bucket}/{key}"
        )
    body = manifest(state, job["transaction_time"], job["request"], urls.__getitem__)
    body["requiresAccessToken"] = False
    await storage.put(
        location.key(job["id"], MANIFEST_FILE),
        orjson.dumps(body, option=orjson.OPT_INDENT_2),
        "application/json",
    )
    return urls


class _Bars:
    """One bar per type: records written over every source, rate and time left."""

    def __init__(self, types: list[str]) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {
            t: self.progress.add_task(t, total=None, rate="") for t in types
        }
        self.seen: dict[tuple[str, str], tuple[int, int | None]] = {}

    def update(self, source: str, resource_type: str, written: int, total: int | None) -> None:
        self.seen[(source, resource_type)] = (written, total)
        mine = [v for (s, t), v in self.seen.items() if t == resource_type]
        done = sum(w for w, _ in mine)
        totals = [t for _, t in mine]
        whole = sum(t for t in totals if t is not None) if None not in totals else None
        task = self.tasks[resource_type]
        self.progress.update(task, completed=done, total=whole)
        speed = self.progress.tasks[task].speed
        self.progress.update(task, rate=f"{speed:.0f} records/s" if speed else "")
