"""The Subscription poller waits longer after rounds that fail in a row (twice as long
each time, up to a minute), and is back to its interval after a round that works: a
store or source that keeps failing is not asked, nor logged about, every poll."""

from __future__ import annotations

import asyncio

import pytest

from adapter.subscriptions.poller import SubscriptionPoller
from adapter.subscriptions.store import FileSubscriptionStore

pytestmark = pytest.mark.anyio


async def test_failed_rounds_in_a_row_double_the_wait_up_to_a_minute(tmp_path, monkeypatch):
    poller = SubscriptionPoller(
        None,  # type: ignore[arg-type]  # no round reaches the facade here
        FileSubscriptionStore(tmp_path),
        clients={},
        journal=None,
        poll_seconds=5.0,
        max_failures=3,
        budget_share=0.1,
        allowed_endpoints=(),
        base_url=None,
    )
    outcomes = [False] * 6 + [True, False, True]  # does each round work?
    waits: list[float] = []

    async def between_rounds(seconds: float) -> None:
        waits.append(seconds)  # the interval "passes" at once

    async def round_() -> None:
        if not outcomes:
            raise asyncio.CancelledError  # enough: stop the loop
        if not outcomes.pop(0):
            raise RuntimeError("the store is down")

    # Patched on this poller only: nothing else in the process waits differently.
    monkeypatch.setattr(poller, "_between_rounds", between_rounds)
    monkeypatch.setattr(poller, "round", round_)
    with pytest.raises(asyncio.CancelledError):
        await poller._run()
    assert waits == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0, 5.0, 10.0, 5.0]
    await poller.aclose()
