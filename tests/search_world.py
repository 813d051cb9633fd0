"""Both sandboxes behind the facade, the same on every run: what the search tests read.

The sandboxes' data is generated for a fixed day (:data:`ANCHOR`, about a year of
appointments either side of it) and their clocks step a millisecond with each look, from
the start of that day; so "free time from now" and every record are the same whenever the
tests run. Nyra's rate windows are scaled down (``harness.FAST``): the connector keeps the
same pace, in far less time.

The change journal is filled before any search sees a record: every record's
``meta.lastUpdated`` that its vendor does not give is a time of :func:`seen_at`, spread
over weeks that hold Stockholm's change to summer time, as if the service had first seen
the record then.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from harness import FAST

from adapter.app import create_app
from adapter.fhir.search import SearchRequest
from adapter.protocol import iterate
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.sandbox.data import generate_leyr, generate_nyra
from adapter.settings import ExportSettings, Settings

ANCHOR = date(2026, 3, 20)
LEYR, NYRA = "leyr-a", "nyra-b"
ZONES = {LEYR: "Europe/Stockholm", NYRA: "Asia/Kolkata"}
# The types every source lists without a parameter (a Slot search needs a practitioner).
LISTED = ("Patient", "Appointment", "Practitioner", "Location", "Organization", "Schedule")
LEYR_ONLY = ("Device", "HealthcareService")
_FIRST_SEEN = datetime(2026, 3, 26, 21, 0, tzinfo=UTC)  # Stockholm moves its clocks on the 29th


def stepping_clock(start: datetime, step: float = 0.001) -> Any:
    """A clock that reads ``start`` and moves ``step`` seconds each time it is read."""
    ticks = itertools.count()
    return lambda: start.timestamp() + next(ticks) * step


def seen_at(index: int) -> datetime:
    """When the journal says the ``index``-th record was first seen: 7 h 13 min apart
    (so that they fall at every hour of the day), some with milliseconds."""
    return _FIRST_SEEN + timedelta(minutes=433 * index, milliseconds=(index % 3) * 250)


@dataclass
class SearchWorld:
    app: Any
    http: httpx.AsyncClient
    leyr: LeyrSandbox
    nyra: NyraSandbox


@asynccontextmanager
async def search_world(directory: Path, patients: int = 60) -> AsyncIterator[SearchWorld]:
    """The facade over a Leyr source (``leyr-a``) and a Nyra source (``nyra-b``) with
    ``patients`` patients each, its journal filled (see the module's description)."""
    start = datetime.combine(ANCHOR, datetime.min.time(), UTC)
    leyr = LeyrSandbox(
        generate_leyr(11, patients, anchor=ANCHOR), seed=11, clock=stepping_clock(start)
    )
    nyra = NyraSandbox(
        generate_nyra(12, patients, anchor=ANCHOR),
        seed=12,
        limits=FAST,
        clock=stepping_clock(start),
    )
    sources: dict[str, dict[str, Any]] = {
        LEYR: {"connector": "leyr", "retry": {"attempts": 1}, **leyr.defaults()},
        NYRA: {"connector": "nyra", "retry": {"attempts": 1}, **nyra.defaults()},
    }
    settings = Settings(
        open_access=True,
        sources=sources,
        cursor_key=b"s" * 32,
        max_vendor_calls=60,
        export=ExportSettings(dir=str(directory)),
    )
    app = create_app(settings, transports={LEYR: leyr.transport(), NYRA: nyra.transport()})
    await _fill_journal(app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fhir.test", timeout=60
    ) as http:
        yield SearchWorld(app, http, leyr, nyra)
    await app.state.aclose()


async def _fill_journal(app: Any) -> None:
    """Date every record its vendor does not date, by :func:`seen_at`, before any search
    has seen it (the journal keeps the first time)."""
    facade = app.state.facade
    index = 0
    for source in (LEYR, NYRA):
        connector = facade.connectors[source]
        kinds = LISTED + (LEYR_ONLY if source == LEYR else ())
        for kind in kinds:
            undated = [
                r
                async for r in iterate(connector, SearchRequest(kind, (), 100))
                if not (r.get("meta") or {}).get("lastUpdated")
            ]
            for resource in undated:
                await facade.journal.stamp(source, [resource], now=seen_at(index))
                index += 1
