"""Where Subscriptions and the poller's state are kept: Redis when ``[server] redis_url``
is set (every worker shares them), else files and one SQLite database in a directory (one
process).

- A Subscription's record: ``{"owner": client, "resource": Subscription, "failures": n,
  "next_at": epoch seconds}``; the resource keeps its ``channel.header`` (the subscriber's
  secrets), which only delivery uses. Written only by the worker holding its lease.
- A criteria Subscription's outbox: the changed resources waiting to be delivered, oldest
  first (a Redis list, or a JSON-lines file), at most its last 10,000. Any worker appends
  (:meth:`Store.push`); the holder of the Subscription's lease takes them from the front
  once the endpoint has them (:meth:`Store.peek`, :meth:`Store.drop`).
- A topic-based Subscription's event log, which is also its queue: its events, numbered
  by :meth:`Store.push_events` from its count in the same atomic step (a Lua script: INCRBY
  then XADD with the id ``<number>-0``; or one SQLite transaction), so numbers have no
  gaps or repeats whichever worker adds them. In Redis, one stream per Subscription
  (``subscription:<id>:stream``) with the consumer group :data:`GROUP`, each store a
  consumer: :meth:`Store.peek` reads it with ``XREADGROUP`` (first what the consumer read
  and did not acknowledge, then, while no other consumer holds pending events, events
  never read), having first taken over with ``XAUTOCLAIM`` the pending events of
  consumers silent for a lease's life (dead workers); :meth:`Store.drop` is ``XACK``.
  Without Redis, ``events.sqlite3`` (WAL) holds the events and, per Subscription, the
  number of the last event delivered. Kept: at most the last :data:`EVENTS_MAX`, and
  those of the last ``keep_seconds`` (``[subscriptions] keep_hours``) or not yet
  acknowledged; each event carries the time it was numbered (``at``, the store's clock),
  and ``$events`` (:meth:`Store.events`, by number: ``XRANGE``) never answers one older
  than ``keep_seconds``. Kept in ``error`` too, gone with its Subscription.
- A source's sweep: where the poller is in that source's listing, per resource type, and
  the vendor calls it made lately (its budget). Written by the holder of the source's lease.
- A feed's digests (source and resource type): per id, the digest of the content last
  told, then ``|`` and what a topic's trigger needs to know of it (its status, where and
  with whom). :meth:`Store.exchange` sets them and answers what they were in one atomic
  step (:meth:`Store.swap`: which digests changed), so that a change is found once,
  whichever worker (a sweep, a write through the facade) sees it first.

Leases (Redis ``SET NX PX``, else a lock file) give each Subscription and each source one
holder at a time, so that each change is delivered once whatever the number of workers.

What an older version kept for a topic-based Subscription (a queue and a log as Redis
lists or JSON-lines files, and its count) is not read as a log: numbering goes on from
its count, the old queue is delivered while no new event has been logged, and the old
queue and log are deleted with the first new event.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import orjson
import redis.asyncio as aioredis

__all__ = ["EVENTS_MAX", "KEEP_SECONDS", "FileSubscriptionStore", "RedisSubscriptionStore", "Store"]

_OUTBOX_MAX = 10_000  # changes kept for one Subscription whose endpoint does not take them
EVENTS_MAX = 10_000  # at most the last events of a topic-based Subscription kept
KEEP_SECONDS = 24 * 3600.0  # how long its events are kept for $events by default
LEASE_SECONDS = 120.0  # a lease's life: a holder silent that long is taken for dead
GROUP = "delivery"  # the consumer group of every event stream

# Helpers of the scripts below, over an event stream: one entry per event, its id
# '<number>-0', its fields 'at' (epoch seconds of the store's clock) and 'resource'.
_STREAM = """
local function number_of(id)
  return tonumber(string.match(id, '^(%d+)'))
end

-- The number of the group's first event not acknowledged: pending (read, not acked) or
-- not yet read. Trimming by age never cuts it or what follows.
local function first_unacked(key, group)
  local floor = math.huge
  local pending = redis.call('XPENDING', key, group)
  if tonumber(pending[1]) > 0 then floor = number_of(pending[2]) end
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local name, last
    for i = 1, #info, 2 do
      if info[i] == 'name' then name = info[i + 1] end
      if info[i] == 'last-delivered-id' then last = info[i + 1] end
    end
    if name == group and number_of(last) + 1 < floor then floor = number_of(last) + 1 end
  end
  return floor
end

-- Cut from the front of the stream the acknowledged events numbered before `cutoff`.
local function expire(key, group, cutoff)
  local floor = first_unacked(key, group)
  local start, batch_size = '-', 1
  while true do
    local batch = redis.call('XRANGE', key, start, '+', 'COUNT', batch_size)
    if #batch == 0 then
      redis.call('XTRIM', key, 'MAXLEN', 0)
      return
    end
    for _, entry in ipairs(batch) do
      if number_of(entry[1]) >= floor or tonumber(entry[2][2]) >= cutoff then
        redis.call('XTRIM', key, 'MINID', entry[1])
        return
      end
    end
    start = '(' .. batch[#batch][1]
    batch_size = math.min(batch_size * 2, 128)
  end
end
"""

# Number a topic-based Subscription's events on from its count (KEYS[2]) and add them to
# its stream (KEYS[3]; made with its group on its first event, when the lists an older
# version kept, KEYS[4] and KEYS[5], are let go), in one step; then cut the stream to its
# last ARGV[3] and by age. ARGV: the time now, the oldest time kept, the count kept, the
# group, the events' resources. Answers the count, or -1 (no such Subscription: nothing).
_NUMBER = (
    _STREAM
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local key, group = KEYS[3], ARGV[4]
if redis.call('EXISTS', key) == 0 then
  redis.call('DEL', KEYS[4], KEYS[5])
  redis.call('XGROUP', 'CREATE', key, group, '0', 'MKSTREAM')
end
local count = #ARGV - 4
local last = redis.call('INCRBY', KEYS[2], count)
for i = 1, count do
  local id = string.format('%d-0', last - count + i)
  redis.call('XADD', key, id, 'at', ARGV[1], 'resource', ARGV[i + 4])
end
redis.call('XTRIM', key, 'MAXLEN', ARGV[3])
expire(key, group, tonumber(ARGV[2]))
return last
"""
)

# Cut what is past its time from a stream (KEYS[1]); ARGV: the group, the oldest time kept.
_TRIM = (
    _STREAM
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then expire(KEYS[1], ARGV[1], tonumber(ARGV[2])) end
return 0
"""
)

# The next events for consumer ARGV[2] of group ARGV[1] of the stream KEYS[1], at most
# ARGV[3], as [id, resource, id, resource...]; nil when there is no stream. First the
# pending events of consumers idle ARGV[4] ms (dead: their lease is gone) become its own,
# and consumers idle that long with nothing pending leave the group; then its own pending
# events (read before, not acknowledged), then, while no other consumer holds pending
# ones, events never read. An event cut while pending is acknowledged and left out.
_TAKE = """
local key, group, me, want, idle = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
if redis.call('EXISTS', key) == 0 then return nil end
local cursor = '0-0'
repeat
  cursor = redis.call('XAUTOCLAIM', key, group, me, idle, cursor, 'COUNT', 100, 'JUSTID')[1]
until cursor == '0-0'
for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', key, group)) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if fields['name'] ~= me and tonumber(fields['pending']) == 0
      and tonumber(fields['idle']) >= tonumber(idle) then
    redis.call('XGROUP', 'DELCONSUMER', key, group, fields['name'])
  end
end
local summary = redis.call('XPENDING', key, group)
local mine = 0
if tonumber(summary[1]) > 0 then
  for _, consumer in ipairs(summary[4]) do
    if consumer[1] == me then mine = tonumber(consumer[2]) end
  end
end
local out = {}
local function keep(read)
  if not read then return end
  for _, entry in ipairs(read[1][2]) do
    if entry[2] then
      out[#out + 1] = entry[1]
      out[#out + 1] = entry[2][4]
    else
      redis.call('XACK', key, group, entry[1])
    end
  end
end
keep(redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', want, 'STREAMS', key, '0'))
if #out / 2 < want and tonumber(summary[1]) == mine then
  local more = want - #out / 2
  keep(redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', more, 'STREAMS', key, '>'))
end
return out
"""

# Acknowledge the first ARGV[3] pending events of consumer ARGV[2] of group ARGV[1] of the
# stream KEYS[1]; with no stream, cut them from the front of the list KEYS[2] instead.
_ACK = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('LTRIM', KEYS[2], ARGV[3], -1)
  return 0
end
local ids = {}
for _, entry in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[3], ARGV[2])) do
  ids[#ids + 1] = entry[1]
end
if #ids == 0 then return 0 end
return redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
"""

# The event log of the file store: one SQLite database beside the records.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
  subscription TEXT NOT NULL,
  number INTEGER NOT NULL,
  at REAL NOT NULL,
  resource BLOB NOT NULL,
  PRIMARY KEY (subscription, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions (
  subscription TEXT PRIMARY KEY,
  counted INTEGER NOT NULL,
  delivered INTEGER NOT NULL
) WITHOUT ROWID;
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


def _number(stream_id: bytes | str) -> int:
    """An event's number, from its stream id ``<number>-0``."""
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    return int(text.partition("-")[0])


class Store(Protocol):
    async def create(self, record: dict[str, Any]) -> None: ...
    async def get(self, sub_id: str) -> dict[str, Any] | None: ...
    async def all(self) -> list[dict[str, Any]]: ...
    async def update(self, record: dict[str, Any]) -> bool:
        """Write back a record that still exists (a deleted one stays deleted)."""
        ...

    async def delete(self, sub_id: str) -> bool:
        """The Subscription, its outbox, its event log and its lease gone."""
        ...

    async def lease(self, name: str, seconds: float) -> bool: ...
    async def release(self, name: str) -> None: ...
    async def push(self, sub_id: str, resources: Sequence[dict[str, Any]]) -> None: ...
    async def push_events(self, sub_id: str, resources: Sequence[dict[str, Any]]) -> None:
        """Number each resource as the Subscription's next event, into its event log."""
        ...

    async def counted(self, sub_id: str) -> int:
        """The number of the Subscription's last event (0: none yet)."""
        ...

    async def events(self, sub_id: str, since: int, until: int | None) -> list[dict[str, Any]]:
        """The logged events numbered from ``since`` to ``until`` (None: the last)."""
        ...

    async def peek(self, sub_id: str, count: int) -> list[dict[str, Any]]:
        """The first ``count`` changes waiting to be delivered, oldest first (a topic-based
        Subscription's: its first events not acknowledged, ``{"number", "resource"}``,
        taken by this worker until :meth:`drop` acknowledges them)."""
        ...

    async def drop(self, sub_id: str, count: int) -> None:
        """The first ``count`` of what :meth:`peek` answered delivered: gone from the
        outbox (a topic-based Subscription's events acknowledged, kept in its log)."""
        ...

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


class _EventLog:
    """The event logs of a directory's topic-based Subscriptions, and how far each is
    delivered: one SQLite database (``events.sqlite3``, WAL, each write one transaction,
    synced before it is answered), opened on first use, one connection per store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Its events are patients' data: its owner's only (the WAL's files take its mode).
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: other stores on the file wait)."""
        with self._lock:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _position(db: sqlite3.Connection, sub_id: str) -> tuple[int, int] | None:
    """A Subscription's last event number and the last delivered, or None (no event yet)."""
    row = db.execute(
        "SELECT counted, delivered FROM positions WHERE subscription = ?", (sub_id,)
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


class FileSubscriptionStore:
    """One JSON file per Subscription, a JSON-lines outbox beside it (criteria
    Subscriptions), the sweeps and feeds under ``_poller/``, read-modify-writes under an
    ``flock``; topic-based Subscriptions' events and delivery positions in
    ``events.sqlite3`` (:class:`_EventLog`)."""

    def __init__(
        self,
        directory: Path,
        *,
        keep_seconds: float = KEEP_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.keep_seconds = keep_seconds
        self.clock = clock
        self._log = _EventLog(directory / "events.sqlite3")

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
            # Under the lock a delete takes: one deleted between the look and the write
            # would otherwise be written back.
            with self._locked(self._path(_id(record), ".outbox")):
                if not self._path(_id(record)).exists():
                    return False
                self._write(record)
                return True

        return await asyncio.to_thread(write_if_there)

    async def delete(self, sub_id: str) -> bool:
        def remove() -> bool:
            with self._locked(self._path(sub_id, ".outbox")):
                with self._log.transaction() as db:
                    db.execute("DELETE FROM events WHERE subscription = ?", (sub_id,))
                    db.execute("DELETE FROM positions WHERE subscription = ?", (sub_id,))
                for suffix in (".outbox", ".lock", ".events", ".count"):
                    with contextlib.suppress(OSError):
                        self._path(sub_id, suffix).unlink()
                try:
                    self._path(sub_id).unlink()
                    gone = True
                except FileNotFoundError:
                    gone = False
            with contextlib.suppress(OSError):  # the lock's own file last
                self._path(sub_id, ".outbox.flock").unlink()
            return gone

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
            with self._locked(self._path(sub_id, ".outbox")):  # as a delete takes
                if not self._path(sub_id).exists():
                    return  # deleted meanwhile
                now = self.clock()
                with self._log.transaction() as db:
                    held = _position(db, sub_id)
                    if held is None:  # its first event: on from a count an older version kept
                        last = delivered = self._count(sub_id)
                        db.execute(
                            "INSERT INTO positions VALUES (?, ?, ?)", (sub_id, last, delivered)
                        )
                        for suffix in (".outbox", ".events", ".count"):  # that version's
                            with contextlib.suppress(OSError):
                                self._path(sub_id, suffix).unlink()
                    else:
                        last, delivered = held
                    db.executemany(
                        "INSERT INTO events VALUES (?, ?, ?, ?)",
                        [
                            (sub_id, last + i, now, orjson.dumps(r))
                            for i, r in enumerate(resources, 1)
                        ],
                    )
                    last += len(resources)
                    db.execute(
                        "UPDATE positions SET counted = ? WHERE subscription = ?", (last, sub_id)
                    )
                    self._expire(db, sub_id, last, delivered)

        if resources:
            await asyncio.to_thread(append)

    def _expire(self, db: sqlite3.Connection, sub_id: str, last: int, delivered: int) -> None:
        """Cut from the log what is past its last :data:`EVENTS_MAX`, and what is delivered
        and older than ``keep_seconds``."""
        db.execute(
            "DELETE FROM events WHERE subscription = ? AND number <= ?",
            (sub_id, last - EVENTS_MAX),
        )
        db.execute(
            "DELETE FROM events WHERE subscription = ? AND number <= ? AND at < ?",
            (sub_id, delivered, self.clock() - self.keep_seconds),
        )

    def _count(self, sub_id: str) -> int:
        """The count an older version kept in a file beside the record (0: none)."""
        value = self._read_json(self._path(sub_id, ".count"))
        return value if isinstance(value, int) else 0

    async def counted(self, sub_id: str) -> int:
        def read() -> int:
            with self._log.transaction() as db:
                held = _position(db, sub_id)
            return self._count(sub_id) if held is None else held[0]

        return await asyncio.to_thread(read)

    async def events(self, sub_id: str, since: int, until: int | None) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            cutoff = self.clock() - self.keep_seconds
            with self._log.transaction() as db:
                held = _position(db, sub_id)
                if held is None:
                    return []
                self._expire(db, sub_id, *held)
                rows = db.execute(
                    "SELECT number, resource FROM events WHERE subscription = ?"
                    " AND number >= ? AND number <= ? AND at >= ? ORDER BY number",
                    (sub_id, since, held[0] if until is None else until, cutoff),
                ).fetchall()
            return [{"number": n, "resource": orjson.loads(r)} for n, r in rows]

        return await asyncio.to_thread(read)

    def _lines(self, sub_id: str, suffix: str = ".outbox") -> list[bytes]:
        try:
            with open(self._path(sub_id, suffix), "rb") as handle:
                return handle.readlines()
        except FileNotFoundError:
            return []

    def _undelivered(self, sub_id: str, count: int) -> list[tuple[int, bytes]] | None:
        """A topic-based Subscription's first ``count`` events not delivered, or None (no
        event logged: the outbox holds what waits)."""
        with self._log.transaction() as db:
            held = _position(db, sub_id)
            if held is None:
                return None
            rows = db.execute(
                "SELECT number, resource FROM events WHERE subscription = ? AND number > ?"
                " ORDER BY number LIMIT ?",
                (sub_id, held[1], count),
            ).fetchall()
        return [(int(n), bytes(r)) for n, r in rows]

    async def peek(self, sub_id: str, count: int) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            events = self._undelivered(sub_id, count)
            if events is not None:
                return [{"number": n, "resource": orjson.loads(r)} for n, r in events]
            with self._locked(self._path(sub_id, ".outbox")):
                return [orjson.loads(line) for line in self._lines(sub_id)[:count]]

        return await asyncio.to_thread(read)

    async def drop(self, sub_id: str, count: int) -> None:
        def cut() -> None:
            with self._log.transaction() as db:
                held = _position(db, sub_id)
                if held is not None:
                    row = db.execute(
                        "SELECT max(number) FROM (SELECT number FROM events WHERE"
                        " subscription = ? AND number > ? ORDER BY number LIMIT ?)",
                        (sub_id, held[1], count),
                    ).fetchone()
                    if row[0] is not None:
                        db.execute(
                            "UPDATE positions SET delivered = ? WHERE subscription = ?",
                            (int(row[0]), sub_id),
                        )
                    return
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
        await asyncio.to_thread(self._log.close)


class RedisSubscriptionStore:
    """Records, outboxes (lists), sweeps and feeds in Redis under ``namespace``; each
    topic-based Subscription's events in a stream (``subscription:<id>:stream``) read by
    the consumer group :data:`GROUP`, each store (worker) a consumer of its own.

    ``claim_seconds``: how long a consumer's pending events wait before another takes
    them over (``XAUTOCLAIM``): a lease's life, after which their reader is taken for
    dead."""

    def __init__(
        self,
        redis: aioredis.Redis,
        namespace: str = "fhir-adapter:",
        *,
        keep_seconds: float = KEEP_SECONDS,
        clock: Callable[[], float] = time.time,
        claim_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.redis = redis
        self._p = f"{namespace}subscription:"
        self._ids = f"{namespace}subscriptions"
        self._sweeps = f"{namespace}sweep:"
        self._feeds = f"{namespace}feed:"
        self.keep_seconds = keep_seconds
        self.clock = clock
        self.claim_seconds = claim_seconds
        self._token = os.urandom(8).hex()
        self.consumer = f"worker-{self._token}"
        self._exchange = redis.register_script(_EXCHANGE)
        self._numbering = redis.register_script(_NUMBER)
        self._trim = redis.register_script(_TRIM)
        self._take = redis.register_script(_TAKE)
        self._ack = redis.register_script(_ACK)

    def stream(self, sub_id: str) -> str:
        """The key of a topic-based Subscription's event stream."""
        return f"{self._p}{sub_id}:stream"

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
        # The record first, in one step with the rest: an event pushed meanwhile finds no
        # record and is not kept, so no stream is left behind.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._p + sub_id)
            pipe.delete(
                f"{self._p}{sub_id}:outbox",
                self.stream(sub_id),
                f"{self._p}{sub_id}:count",
                f"{self._p}{sub_id}:events",  # an older version's log
            )
            gone, _ = await pipe.execute()
        return bool(gone)

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
            self.stream(sub_id),
            f"{self._p}{sub_id}:outbox",  # an older version's queue and log
            f"{self._p}{sub_id}:events",
        ]
        now = self.clock()
        told = [repr(now), repr(now - self.keep_seconds), str(EVENTS_MAX), GROUP]
        await self._numbering(keys=keys, args=[*told, *(orjson.dumps(r) for r in resources)])

    async def counted(self, sub_id: str) -> int:
        raw = await self.redis.get(f"{self._p}{sub_id}:count")
        return int(raw) if raw is not None else 0

    async def events(self, sub_id: str, since: int, until: int | None) -> list[dict[str, Any]]:
        key = self.stream(sub_id)
        cutoff = self.clock() - self.keep_seconds
        await self._trim(keys=[key], args=[GROUP, repr(cutoff)])
        since = max(since, 0)
        if until is not None and until < since:
            return []
        last = "+" if until is None else f"{until}-0"
        found = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self.redis.xrange(key, min=f"{since}-0", max=last),  # entries still there only
        )
        return [
            {"number": _number(stream_id), "resource": orjson.loads(fields[b"resource"])}
            for stream_id, fields in found
            if float(fields[b"at"]) >= cutoff
        ]

    async def peek(self, sub_id: str, count: int) -> list[dict[str, Any]]:
        idle = str(int(self.claim_seconds * 1000))
        taken = await self._take(
            keys=[self.stream(sub_id)], args=[GROUP, self.consumer, str(count), idle]
        )
        if taken is None:  # no event logged: the outbox holds what waits
            raws = await self.redis.lrange(f"{self._p}{sub_id}:outbox", 0, count - 1)
            return [orjson.loads(raw) for raw in raws]
        return [
            {"number": _number(taken[i]), "resource": orjson.loads(taken[i + 1])}
            for i in range(0, len(taken), 2)
        ]

    async def drop(self, sub_id: str, count: int) -> None:
        keys = [self.stream(sub_id), f"{self._p}{sub_id}:outbox"]
        await self._ack(keys=keys, args=[GROUP, self.consumer, str(count)])

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
