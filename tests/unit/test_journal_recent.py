"""What a worker reuses of the change journal's answers: the same stamps as the journal,
without asking it again within the window, and never for content that changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from adapter.journal import FileJournal, RecentStamps

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


class Counting:
    """A journal that counts what it is asked and stamps at a time the test sets."""

    def __init__(self, inner: FileJournal) -> None:
        self.inner = inner
        self.asked: list[list[str]] = []
        self.now = T0

    async def stamp(self, source: str, resources: Any, now: Any = None) -> list[dict[str, Any]]:
        self.asked.append([r["id"] for r in resources])
        return await self.inner.stamp(source, resources, self.now)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _patient(rid: str, family: str = "Berg") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": rid,
        "meta": {"source": "leyr"},
        "name": [{"family": family}],
    }


@pytest.fixture
async def journal(tmp_path):
    inner = FileJournal(tmp_path)
    yield Counting(inner)
    await inner.aclose()


async def test_a_search_asked_again_within_the_window_is_stamped_without_the_journal(journal):
    clock = Clock()
    recent = RecentStamps(seconds=10, clock=clock)
    page = [_patient("leyr-a"), _patient("leyr-b")]
    first = await recent.stamp(journal, "leyr", page)
    journal.now = T0 + timedelta(hours=1)  # the journal would say T0 still: the content is the same
    clock.now += 9.9
    again = await recent.stamp(journal, "leyr", page)
    assert journal.asked == [["leyr-a", "leyr-b"]]
    assert again == first
    assert [r["meta"]["lastUpdated"] for r in again] == ["2026-03-01T08:00:00.000Z"] * 2
    # The kept resource carries its own JSON, the same as serialising it afresh.
    assert orjson.dumps(again[0].fragment) == orjson.dumps(dict(first[0]))  # type: ignore[attr-defined]


async def test_changed_content_goes_to_the_journal_at_once(journal):
    clock = Clock()
    recent = RecentStamps(seconds=10, clock=clock)
    await recent.stamp(journal, "leyr", [_patient("leyr-a"), _patient("leyr-b")])
    journal.now = T0 + timedelta(minutes=5)
    out = await recent.stamp(journal, "leyr", [_patient("leyr-a", "Lind"), _patient("leyr-b")])
    assert journal.asked == [["leyr-a", "leyr-b"], ["leyr-a"]]
    assert [r["meta"]["lastUpdated"] for r in out] == [
        "2026-03-01T08:05:00.000Z",
        "2026-03-01T08:00:00.000Z",
    ]
    assert [r["name"][0]["family"] for r in out] == ["Lind", "Berg"]


async def test_after_the_window_the_journal_is_asked_again(journal):
    clock = Clock()
    recent = RecentStamps(seconds=10, clock=clock)
    await recent.stamp(journal, "leyr", [_patient("leyr-a")])
    clock.now += 10.0
    await recent.stamp(journal, "leyr", [_patient("leyr-a")])
    assert journal.asked == [["leyr-a"], ["leyr-a"]]


async def test_the_same_id_at_another_source_is_another_record(journal):
    recent = RecentStamps(seconds=10, clock=Clock())
    await recent.stamp(journal, "leyr", [_patient("x-1")])
    await recent.stamp(journal, "nyra", [_patient("x-1")])
    assert journal.asked == [["x-1"], ["x-1"]]


async def test_zero_seconds_keeps_nothing(journal):
    recent = RecentStamps(seconds=0, clock=Clock())
    await recent.stamp(journal, "leyr", [_patient("leyr-a")])
    await recent.stamp(journal, "leyr", [_patient("leyr-a")])
    assert journal.asked == [["leyr-a"], ["leyr-a"]]
    assert (len(recent.table), recent.table.held_bytes) == (0, 0)


async def test_the_stamps_are_bounded_in_bytes(journal):
    recent = RecentStamps(seconds=10, max_bytes=64 << 10, clock=Clock())
    for start in range(0, 400, 50):
        await recent.stamp(
            journal, "leyr", [_patient(f"leyr-{i:04d}") for i in range(start, start + 50)]
        )
    assert recent.table.held_bytes <= 64 << 10
    assert recent.table.evictions > 0
    assert 0 < len(recent.table) < 400
    # The most recent are those kept.
    await recent.stamp(journal, "leyr", [_patient("leyr-0399")])
    assert journal.asked[-1] == [f"leyr-{i:04d}" for i in range(350, 400)]
