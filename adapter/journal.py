"""The change journal: when each record last changed, for vendors that do not say.

Leyr gives no change time at all, and Nyra gives one for patients only (``updated_at``,
mapped to ``meta.lastUpdated``). For the rest the service keeps its own journal: for each
record (source, resource type, id) a digest of the last version it saw and the time that
version was first seen.

The rule: a record's ``meta.lastUpdated`` is the vendor's change time when the vendor
gives one; otherwise the time this service first saw the record's current content. A
``_since=T`` filter keeps what was changed *after* T (``lastUpdated > T``, as FHIR's
``_since`` says), so it never leaves out a changed record once the service has seen it
after its change, and never repeats an unchanged one once a full export has seen it.

The limitation: a change is noticed only when the record is next seen (by a search, a
read through ``$everything``, an export). A record changed at the vendor and not seen
since keeps its older time until then.

**Deletions.** Beside the stamps, the journal keeps when each record (of any vendor, dated
or not) was last seen in a listing (:meth:`Journal.seen`, by the export, page by page,
with its ``transactionTime``). When a listing of a source's type reaches its end,
:meth:`Journal.sweep` marks every record of it last seen *before* that listing as
deleted at that listing's time: the listing held every record the vendor still had, and
it was not among them. :meth:`Journal.deleted` gives those marked after a moment, for a
``_since`` export's ``deleted`` list. So a deletion is noticed by the first complete
listing after it, and only for a record some earlier listing had seen; a record that
comes back (the same id listed again) is no longer deleted.

Two stores: a sqlite file (``journal.sqlite3`` under a directory; WAL mode and a busy
timeout, so several processes share it) and Redis (one hash per source and type, keys
under ``fhir-adapter:journal:``, the first part ``[server] redis_prefix``; a Lua script per
batch, so every worker and replica agrees on when a version was first seen). Each
:meth:`Journal.stamp` call is one round trip whatever the number of resources.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from adapter.fhir.bundle import Serialised
from adapter.fhir.versions import version_of
from adapter.ops.caches import Table

__all__ = [
    "JOURNAL_FILE",
    "RECENT_SECONDS",
    "STAMPS_BYTES",
    "FileJournal",
    "Journal",
    "RecentStamps",
    "RedisJournal",
    "Stamp",
    "digest_of",
    "instant",
    "journal_for",
]

JOURNAL_FILE = "journal.sqlite3"
_BUSY_MS = 10_000


@dataclass(frozen=True)
class Stamp:
    """What the journal holds of a record: the digest of the version last seen, and when
    that version was first seen (UTC)."""

    digest: str  # of the resource without its meta (stable JSON: sorted keys)
    changed_at: datetime  # UTC: when this version was first seen


class Journal(Protocol):
    async def stamp(
        self, source: str, resources: Sequence[dict[str, Any]], now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Each resource with ``meta.lastUpdated`` set: the vendor's own where the mapping
        gave one, else the journal's time for its content (content not seen before: ``now``).
        Returns new dicts; the inputs are left as they are. One round trip per call."""
        ...

    async def seen(self, source: str, resource_type: str, ids: Sequence[str], at: datetime) -> None:
        """``ids`` were in a listing of ``resource_type`` at ``source`` made at ``at``."""
        ...

    async def sweep(self, source: str, resource_type: str, at: datetime) -> None:
        """A listing made at ``at`` reached its end: what it did not see is deleted at
        ``at``."""
        ...

    async def deleted(self, source: str, resource_type: str, since: datetime) -> list[str]:
        """The ids of the records found deleted after ``since``, sorted."""
        ...

    async def aclose(self) -> None: ...


def digest_of(resource: dict[str, Any]) -> str:
    """The digest of a resource's content (everything but ``meta``): its version, as
    ``meta.versionId`` already holds it where the mapping set it, so it is not hashed
    twice."""
    return str((resource.get("meta") or {}).get("versionId") or version_of(resource))


def instant(moment: datetime) -> str:
    """A FHIR instant in UTC with milliseconds: ``2026-03-01T08:00:00.000Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _with_updated(resource: dict[str, Any], updated: str) -> dict[str, Any]:
    return {**resource, "meta": {**(resource.get("meta") or {}), "lastUpdated": updated}}


@dataclass(frozen=True)
class _Entry:
    index: int
    key: str  # the record's key within its store
    digest: str


def _plan(
    source: str, resources: Sequence[dict[str, Any]]
) -> tuple[list[dict[str, Any] | None], list[_Entry]]:
    """The resources the vendor dated (copied as they are; None where the journal must
    say) and the entries to look up."""
    out: list[dict[str, Any] | None] = []
    entries: list[_Entry] = []
    for index, resource in enumerate(resources):
        if (resource.get("meta") or {}).get("lastUpdated"):
            out.append({**resource, "meta": dict(resource["meta"])})
            continue
        out.append(None)
        key = f"{source}|{resource.get('resourceType')}|{resource.get('id')}"
        entries.append(_Entry(index, key, digest_of(resource)))
    return out, entries


def _finish(
    resources: Sequence[dict[str, Any]],
    out: list[dict[str, Any] | None],
    entries: list[_Entry],
    stamps: Sequence[Stamp],
) -> list[dict[str, Any]]:
    for entry, found in zip(entries, stamps, strict=True):
        out[entry.index] = _with_updated(resources[entry.index], instant(found.changed_at))
    return [r for r in out if r is not None]


RECENT_SECONDS = 10.0  # how long a worker reuses what the journal told it of a version
STAMPS_BYTES = 8 << 20
_STAMP_BYTES = 400  # an entry besides its key and resource: digest, instant, tuple, link


class RecentStamps:
    """What the journal told this worker lately, reused for :data:`RECENT_SECONDS`: a
    search asked again within that time costs no journal round trip (a sqlite write
    transaction on a thread, or a Redis script) for the records whose content is the
    same as when it was last stamped, and no copy or serialisation of them either: the
    stamped resource is kept with its own JSON, and shared as the memo's resources are
    (callers must not change it).

    An entry holds a record's digest, the time the journal gave that version and the
    stamped resource, and is used only for the same digest: a record whose content
    changed goes to the journal at once, whichever worker saw the change first. The one
    answer it can hold back is a record that changed and changed back within the window
    (the journal then says when the returning content was seen again, this worker when it
    was first seen): for :data:`RECENT_SECONDS` at most, and for searches and reads only.
    The export and the Subscriptions' sweeps ask the journal itself. A table within
    :data:`STAMPS_BYTES` (``cache_*{cache="stamps"}`` in ``/metrics``)."""

    def __init__(
        self,
        seconds: float = RECENT_SECONDS,
        max_bytes: int = STAMPS_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self._clock = clock
        # key -> (digest, fresh until, the stamped resource, its JSON's length)
        self.table: Table[str, tuple[str, float, dict[str, Any], int]] = Table(
            "stamps", max_bytes if seconds > 0 else 0, weight=_stamp_weight
        )

    async def stamp(
        self, journal: Journal, source: str, resources: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """As :meth:`Journal.stamp` (``resources`` carry no ``lastUpdated`` of their
        own), asking ``journal`` only for those not stamped lately."""
        now = self._clock()
        out: list[dict[str, Any] | None] = []
        asked: list[tuple[int, str, str]] = []  # index, key, digest
        for index, resource in enumerate(resources):
            key = f"{source}|{resource.get('resourceType')}|{resource.get('id')}"
            digest = digest_of(resource)
            found = self.table.get(key)
            if found is not None and found[0] == digest and found[1] > now:
                out.append(found[2])
                continue
            out.append(None)
            asked.append((index, key, digest))
        if asked:
            stamped = await journal.stamp(source, [resources[index] for index, _, _ in asked])
            until = now + self.seconds
            for (index, key, digest), resource in zip(asked, stamped, strict=True):
                if self.seconds > 0:
                    resource, json_bytes = _frozen(resource)
                    self.table.put(key, (digest, until, resource, json_bytes))
                out[index] = resource
        return [resource for resource in out if resource is not None]


def _frozen(resource: dict[str, Any]) -> tuple[Serialised, int]:
    """The stamped resource with its own JSON (a Bundle embeds the bytes), and their length."""
    frozen = Serialised(resource)
    encoded = orjson.dumps(frozen)
    frozen.fragment = orjson.Fragment(encoded)
    return frozen, len(encoded)


def _stamp_weight(key: str, value: tuple[str, float, dict[str, Any], int]) -> int:
    # The resource's own dict and meta (its values are the memo's, shared) and its JSON.
    return sys.getsizeof(key) + _STAMP_BYTES + 2 * sys.getsizeof(value[2]) + value[3]


class FileJournal:
    """The journal in a sqlite file, shared by every process that opens it."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / JOURNAL_FILE
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, timeout=_BUSY_MS / 1000, isolation_level=None, check_same_thread=False
            )
            db.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS journal "
                "(key TEXT PRIMARY KEY, digest TEXT NOT NULL, changed_at TEXT NOT NULL)"
            )
            # Instants as instant() writes them (UTC, milliseconds, Z) compare as text.
            db.execute(
                "CREATE TABLE IF NOT EXISTS presence (scope TEXT NOT NULL, id TEXT NOT NULL, "
                "last_seen TEXT NOT NULL, deleted_at TEXT, PRIMARY KEY (scope, id))"
            )
            self._db = db
        return self._db

    def _stamps(self, entries: list[_Entry], now: str) -> list[Stamp]:
        db = self._open()
        db.execute("BEGIN IMMEDIATE")  # one writer at a time: the first to see a version wins
        try:
            db.executemany(
                "INSERT INTO journal (key, digest, changed_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET digest = excluded.digest, "
                "changed_at = excluded.changed_at WHERE journal.digest != excluded.digest",
                [(e.key, e.digest, now) for e in entries],
            )
            found: dict[str, tuple[str, str]] = {}
            keys = [e.key for e in entries]
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT key, digest, changed_at FROM journal WHERE key IN ({marks})", chunk
                )
                found.update((key, (digest, at)) for key, digest, at in rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return [Stamp(found[e.key][0], _parse(found[e.key][1])) for e in entries]

    async def stamp(
        self, source: str, resources: Sequence[dict[str, Any]], now: datetime | None = None
    ) -> list[dict[str, Any]]:
        out, entries = _plan(source, resources)
        if not entries:
            return [r for r in out if r is not None]
        seen = instant(now or datetime.now(UTC))
        async with self._lock:
            stamps = await asyncio.to_thread(self._stamps, entries, seen)
        return _finish(resources, out, entries, stamps)

    def _run(self, statement: str, rows: Sequence[tuple[str, ...]]) -> list[tuple[str, ...]]:
        db = self._open()
        if len(rows) == 1:
            return list(db.execute(statement, rows[0]))
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(statement, rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return []

    async def seen(self, source: str, resource_type: str, ids: Sequence[str], at: datetime) -> None:
        if not ids:
            return
        scope, moment = f"{source}|{resource_type}", instant(at)
        statement = (
            "INSERT INTO presence (scope, id, last_seen) VALUES (?, ?, ?) "
            "ON CONFLICT (scope, id) DO UPDATE SET "
            "last_seen = max(last_seen, excluded.last_seen), "
            "deleted_at = CASE WHEN deleted_at < excluded.last_seen THEN NULL "
            "ELSE deleted_at END"
        )
        rows = [(scope, fhir_id, moment) for fhir_id in ids]
        async with self._lock:
            await asyncio.to_thread(self._run, statement, rows)

    async def sweep(self, source: str, resource_type: str, at: datetime) -> None:
        moment = instant(at)
        statement = (
            "UPDATE presence SET deleted_at = ? "
            "WHERE scope = ? AND last_seen < ? AND deleted_at IS NULL"
        )
        async with self._lock:
            await asyncio.to_thread(
                self._run, statement, [(moment, f"{source}|{resource_type}", moment)]
            )

    async def deleted(self, source: str, resource_type: str, since: datetime) -> list[str]:
        statement = "SELECT id FROM presence WHERE scope = ? AND deleted_at > ? ORDER BY id"
        async with self._lock:
            rows = await asyncio.to_thread(
                self._run, statement, [(f"{source}|{resource_type}", instant(since))]
            )
        return [row[0] for row in rows]

    async def aclose(self) -> None:
        async with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


# KEYS: one hash per entry; ARGV: field, digest, now for each. A field holds
# "digest changed_at"; a new digest replaces it with now. Returns the values kept.
_STAMP_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local field = ARGV[3 * i - 2]
  local digest = ARGV[3 * i - 1]
  local held = redis.call('HGET', key, field)
  if held and string.sub(held, 1, string.len(digest) + 1) == digest .. ' ' then
    out[i] = held
  else
    local value = digest .. ' ' .. ARGV[3 * i]
    redis.call('HSET', key, field, value)
    out[i] = value
  end
end
return out
"""


# KEYS[1]: the presence hash of a source and type; ARGV: the listing's instant, then ids.
# A field holds "last_seen deleted_at" (deleted_at "-" when not deleted).
_SEEN_SCRIPT = """
local at = ARGV[1]
for i = 2, #ARGV do
  local held = redis.call('HGET', KEYS[1], ARGV[i])
  local last, gone = at, '-'
  if held then
    local space = string.find(held, ' ')
    local old_last, old_gone = string.sub(held, 1, space - 1), string.sub(held, space + 1)
    if old_last > last then last = old_last end
    if old_gone ~= '-' and old_gone >= at then gone = old_gone end
  end
  redis.call('HSET', KEYS[1], ARGV[i], last .. ' ' .. gone)
end
return 0
"""
# KEYS[1]: the presence hash; ARGV[1]: the listing's instant.
_SWEEP_SCRIPT = """
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local held = all[i + 1]
  local space = string.find(held, ' ')
  local last, gone = string.sub(held, 1, space - 1), string.sub(held, space + 1)
  if gone == '-' and last < ARGV[1] then
    redis.call('HSET', KEYS[1], all[i], last .. ' ' .. ARGV[1])
  end
end
return 0
"""


class RedisJournal:
    """The journal in Redis: one hash per source and resource type
    (``<namespace>journal:<source>:<type>``), the record's id as the field."""

    def __init__(self, url: str, namespace: str = "fhir-adapter:") -> None:
        import redis.asyncio

        self._stamps = f"{namespace}journal:"
        self._presence = f"{namespace}presence:"
        self.redis = redis.asyncio.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._script = self.redis.register_script(_STAMP_SCRIPT)
        self._seen = self.redis.register_script(_SEEN_SCRIPT)
        self._sweep = self.redis.register_script(_SWEEP_SCRIPT)

    async def stamp(
        self, source: str, resources: Sequence[dict[str, Any]], now: datetime | None = None
    ) -> list[dict[str, Any]]:
        out, entries = _plan(source, resources)
        if not entries:
            return [r for r in out if r is not None]
        seen = instant(now or datetime.now(UTC))
        keys, argv = [], []
        for entry in entries:
            resource = resources[entry.index]
            keys.append(f"{self._stamps}{source}:{resource.get('resourceType')}")
            argv += [str(resource.get("id")), entry.digest, seen]
        held = await self._script(keys=keys, args=argv)
        stamps = []
        for value in held:
            text = value.decode() if isinstance(value, bytes) else str(value)
            digest, _, at = text.partition(" ")
            stamps.append(Stamp(digest, _parse(at)))
        return _finish(resources, out, entries, stamps)

    async def seen(self, source: str, resource_type: str, ids: Sequence[str], at: datetime) -> None:
        if ids:
            key = f"{self._presence}{source}:{resource_type}"
            await self._seen(keys=[key], args=[instant(at), *ids])

    async def sweep(self, source: str, resource_type: str, at: datetime) -> None:
        await self._sweep(keys=[f"{self._presence}{source}:{resource_type}"], args=[instant(at)])

    async def deleted(self, source: str, resource_type: str, since: datetime) -> list[str]:
        after = instant(since)
        out = []
        key = f"{self._presence}{source}:{resource_type}"
        async for field, value in self.redis.hscan_iter(key):
            text = value.decode() if isinstance(value, bytes) else str(value)
            gone = text.partition(" ")[2]
            if gone != "-" and gone > after:
                out.append(field.decode() if isinstance(field, bytes) else str(field))
        return sorted(out)

    async def aclose(self) -> None:
        await self.redis.aclose()


def journal_for(
    redis_url: str | None, directory: Path, namespace: str = "fhir-adapter:"
) -> Journal:
    """A :class:`RedisJournal` when ``redis_url`` is set (its keys under ``namespace``),
    else a :class:`FileJournal` under ``directory`` (its ``journal.sqlite3``, made with its
    parents when first used)."""
    if redis_url:
        return RedisJournal(redis_url, namespace)
    return FileJournal(directory)
