"""What both simulators share: JSON answers and bodies, query parsing, seeded ids and
timestamps, state kept in order."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

__all__ = [
    "Record",
    "Reply",
    "Table",
    "answer_reply",
    "dated_between",
    "json_response",
    "parse_date",
    "random_hex",
    "read_object",
    "seeded_uuid",
    "zulu",
]

Record = dict[str, Any]


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


class Reply(Exception):
    """Stop handling and answer this (an error body in the vendor's own shape)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(status)


async def answer_reply(request: Request, exc: Reply) -> Response:
    """The exception handler for :class:`Reply`, with the headers (rate limits) a gate may
    have set on ``request.state.headers`` for every answer."""
    return json_response(exc.body, exc.status, getattr(request.state, "headers", None))


async def read_object(request: Request, refuse: Callable[[str], Reply]) -> Record:
    """The request body as a JSON object; else ``refuse(what)`` is raised, ``what`` being
    what the body must be ("JSON", "a JSON object")."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise refuse("JSON") from None
    if not isinstance(body, dict):
        raise refuse("a JSON object")
    return body


def parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        return None


def dated_between(
    rows: list[Record],
    first: str | None,
    last: str | None,
    day_of: Callable[[Record], date | None],
    refuse: Callable[[], Reply],
) -> list[Record]:
    """The ``rows`` whose day lies from ``first`` to ``last`` (query values, either may be
    absent); ``refuse()`` is raised when one given is not a date."""
    if first is None and last is None:
        return rows
    lo, hi = parse_date(first), parse_date(last)
    if (first is not None and lo is None) or (last is not None and hi is None):
        raise refuse()
    return [row for row in rows if _within(day_of(row), lo, hi)]


def _within(day: date | None, lo: date | None, hi: date | None) -> bool:
    return day is not None and (lo is None or day >= lo) and (hi is None or day <= hi)


def random_hex(n: int, rng: random.Random) -> str:
    return f"{rng.getrandbits(8 * n):0{2 * n}x}"


def seeded_uuid(rng: random.Random) -> str:
    """A version 4 UUID drawn from ``rng``, so seeded data and ids repeat."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def zulu(moment: datetime) -> str:
    """A timestamp as the vendors write them: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Table:
    """Records by id, in insertion order (a vendor's stable listing order)."""

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self._by_id: dict[str, Record] = {}
        for record in records:
            self.put(record)

    def put(self, record: Record) -> None:
        self._by_id[str(record["id"])] = record

    def get(self, record_id: str) -> Record | None:
        return self._by_id.get(record_id)

    def remove(self, record_id: str) -> None:
        self._by_id.pop(record_id, None)

    def __iter__(self) -> Iterator[Record]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)
