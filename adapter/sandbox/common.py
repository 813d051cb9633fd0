"""What both simulators share: JSON answers, query parsing, state kept in order."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["Reply", "Table", "json_response", "parse_date", "random_hex"]


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


def parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        return None


def random_hex(n: int, rng: Any = None) -> str:
    if rng is None:
        return secrets.token_hex(n)
    return f"{rng.getrandbits(8 * n):0{2 * n}x}"


class Table:
    """Records by id, in insertion order (a vendor's stable listing order)."""

    def __init__(self, records: Iterable[dict[str, Any]] = ()) -> None:
        self._by_id: dict[str, dict[str, Any]] = {}
        for record in records:
            self.put(record)

    def put(self, record: dict[str, Any]) -> None:
        self._by_id[str(record["id"])] = record

    def get(self, record_id: str) -> dict[str, Any] | None:
        return self._by_id.get(record_id)

    def remove(self, record_id: str) -> None:
        self._by_id.pop(record_id, None)

    def __iter__(self):
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)
