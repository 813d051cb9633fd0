"""The Subscription poller waits longer after rounds that fail in a row (twice as long
each time, up to a minute), and is back to its interval after a round that works: a
store or source that keeps failing is not asked, nor logged about, every poll."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapter.subscriptions import poller as poller_module
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

    async def no_wait(awaitable: Any, timeout: float) -> None:
        awaitable.close()  # the wake-up is not waited for: the interval "passes" at once
        waits.append(timeout)
        raise TimeoutError

    async def round_() -> None:
        if not outcomes:
            raise asyncio.CancelledError  # enough: stop the loop
        if not outcomes.pop(0):
            raise RuntimeError("the store is down")

    monkeypatch.setattr(poller_module.asyncio, "wait_for", no_wait)
    monkeypatch.setattr(poller, "round", round_)
    with pytest.raises(asyncio.CancelledError):
        await poller._run()
    monkeypatch.undo()  # asyncio.wait_for is the module's: put it back before anything else
    assert waits == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0, 5.0, 10.0, 5.0]
    await poller.aclose()
