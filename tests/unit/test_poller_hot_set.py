"""The sweep of a source's Appointments looks at the hot set (the upcoming appointments,
from the source's today to fourteen days on, a window both vendors filter by date) more
often than the rest: once the feed knows its records, the hot set is swept from its own
cursor, at most once a round, with at most a quarter of the pages both have taken
(counted across rounds), so the rest is never starved; a new day starts the hot set's
listing again. Patients have no hot set.

The gate here is a listing of numbered pages that records which listing each page was
of; time is the poller's injected clock."""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapter.facade import Pacer
from adapter.fhir.search import SearchParam
from adapter.protocol import Page
from adapter.subscriptions.poller import PAGES_PER_ROUND, SubscriptionPoller
from adapter.subscriptions.store import FileSubscriptionStore

pytestmark = pytest.mark.anyio

KOLKATA = ZoneInfo("Asia/Kolkata")
# 2026-03-10 20:00 UTC: already 2026-03-11 in Kolkata (01:30)
EVENING = 1773172800.0


class Listing:
    """A source of ``whole`` pages of every appointment, ``hot`` of the upcoming ones."""

    def __init__(self, whole: int, hot: int) -> None:
        self.whole, self.hot = whole, hot
        self.asked: list[str] = []  # "w3": the whole listing's page 3, "h0": the hot set's
        self.windows: list[tuple[str, ...]] = []

    def pacer(self, source: str, share: float, **kwargs: Any) -> Pacer:
        return Pacer([], kwargs["clock"], kwargs["sleep"])  # a vendor without limits

    def zone(self, source: str) -> ZoneInfo:
        return KOLKATA

    def parse(self, resource_type: str, items: list[tuple[str, str]], *, strict: bool) -> Any:
        params = tuple(SearchParam(name, (value,)) for name, value in items)
        return SimpleNamespace(request=SimpleNamespace(params=params))

    async def listing_page(
        self,
        source: str,
        resource_type: str,
        cursor: str | None,
        *,
        count: int,
        pacer: Pacer,
        params: tuple[SearchParam, ...] = (),
    ) -> Page:
        pacer.record(1)  # one vendor call a page
        number = int(cursor or 0)
        kind, pages = ("h", self.hot) if params else ("w", self.whole)
        self.asked.append(f"{kind}{number}")
        if params:
            self.windows.append(tuple(v for p in params for v in p.values))
        return Page([], next_cursor=str(number + 1) if number + 1 < pages else None)


def _poller(tmp_path, listing: Listing, now: list[float]) -> SubscriptionPoller:
    return SubscriptionPoller(
        listing,  # type: ignore[arg-type]
        FileSubscriptionStore(tmp_path),
        clients={},
        journal=None,
        poll_seconds=5.0,
        max_failures=3,
        budget_share=0.1,
        allowed_endpoints=(),
        base_url=None,
        clock=lambda: now[0],
    )


async def _round(poller: SubscriptionPoller, listing: Listing, types: list[str]) -> list[str]:
    listing.asked.clear()
    await poller._sweep("nyra-w", types, [])
    return list(listing.asked)


async def test_a_small_hot_set_is_swept_whole_every_round(tmp_path):
    listing = Listing(whole=12, hot=2)
    now = [EVENING]
    poller = _poller(tmp_path, listing, now)
    # Until a whole sweep is done the feed only learns its records: no hot set yet.
    assert await _round(poller, listing, ["Appointment"]) == [f"w{n}" for n in range(10)]
    assert await _round(poller, listing, ["Appointment"]) == ["w10", "w11"]
    # Known now: the hot set first, then at most one page of four, once a round.
    assert await _round(poller, listing, ["Appointment"]) == [
        "h0", "w0", "w1", "w2", "h1", "w3", "w4", "w5", "w6", "w7",
    ]  # fmt: skip
    assert await _round(poller, listing, ["Appointment"]) == [
        "h0", "w8", "h1", "w9", "w10", "w11",
    ]  # fmt: skip
    today = date(2026, 3, 11)  # Kolkata's day, not UTC's
    assert set(listing.windows) == {
        (f"ge{today.isoformat()}", f"lt{(today + timedelta(days=14)).isoformat()}")
    }


async def test_a_large_hot_set_takes_every_other_page(tmp_path):
    listing = Listing(whole=3, hot=30)
    now = [EVENING]
    poller = _poller(tmp_path, listing, now)
    assert await _round(poller, listing, ["Appointment"]) == ["w0", "w1", "w2"]
    first = await _round(poller, listing, ["Appointment"])
    # Past the whole listing's end the round's pages are the hot set's.
    assert first == ["h0", "w0", "w1", "w2", "h1", "h2", "h3", "h4", "h5", "h6"]
    assert len(first) == PAGES_PER_ROUND
    # The hot set has had more than its share: the rest goes first, then it goes on
    # from where it stopped.
    assert await _round(poller, listing, ["Appointment"]) == [
        "w0", "w1", "w2", "h7", "h8", "h9", "h10", "h11", "h12", "h13",
    ]  # fmt: skip


async def test_one_call_a_round_never_starves_the_rest(tmp_path):
    """A budget that allows one call a round (a vendor with limits, its calls spread
    out): a page in four is the hot set's, the others go on with the whole listing."""
    listing = Listing(whole=50, hot=1)
    now = [EVENING]
    poller = _poller(tmp_path, listing, now)
    spent = [0]

    def pacer(source: str, share: float, **kwargs: Any) -> Any:
        spent[0] = 0
        return SimpleNamespace(
            limits=[(1, 60.0)],
            calls=[],
            delay=lambda: 0.0 if spent[0] == 0 else 1.0,
            record=lambda n: spent.__setitem__(0, spent[0] + n),
        )

    listing.pacer = pacer  # type: ignore[method-assign]
    poller.facade = listing  # type: ignore[assignment]
    asked = []
    for _ in range(60):  # the first 50 learn the records; then the hot set joins in
        asked += await _round(poller, listing, ["Appointment"])
    assert asked[:50] == [f"w{n}" for n in range(50)]
    assert asked[50:] == ["h0", "w0", "w1", "w2", "h0", "w3", "w4", "w5", "h0", "w6"]


async def test_a_new_day_starts_the_hot_set_again(tmp_path):
    listing = Listing(whole=1, hot=30)
    now = [EVENING]
    poller = _poller(tmp_path, listing, now)
    await _round(poller, listing, ["Appointment"])
    assert (await _round(poller, listing, ["Appointment"]))[:2] == ["h0", "w0"]
    now[0] += 24 * 3600
    assert (await _round(poller, listing, ["Appointment"]))[:2] == ["h0", "w0"]
    assert listing.windows[-1] == ("ge2026-03-12", "lt2026-03-26")


async def test_patients_have_no_hot_set(tmp_path):
    listing = Listing(whole=2, hot=5)
    poller = _poller(tmp_path, listing, [EVENING])
    assert await _round(poller, listing, ["Patient"]) == ["w0", "w1"]
    assert await _round(poller, listing, ["Patient"]) == ["w0", "w1"]
