"""A failed delivery is tried again after a jittered backoff: the backoff doubles from
``poll_seconds`` up to five minutes, and the wait is between half of it and all of it,
as the injected jitter (in [0, 1)) says; Subscriptions that fail together (one endpoint
down) are not all tried again at one moment."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from adapter.subscriptions.poller import SubscriptionPoller
from adapter.subscriptions.store import FileSubscriptionStore

NOW = 1_000_000.0
POLL = 5.0


def _poller(tmp_path, jitter) -> SubscriptionPoller:
    return SubscriptionPoller(
        None,  # type: ignore[arg-type]  # nothing here reaches the facade
        FileSubscriptionStore(tmp_path),
        clients={},
        journal=None,
        poll_seconds=POLL,
        max_failures=20,
        budget_share=0.1,
        allowed_endpoints=(),
        base_url=None,
        clock=lambda: NOW,
        jitter=jitter,
    )


def _record(failures: int) -> dict:
    return {
        "owner": "crm",
        "failures": failures,
        "resource": {"resourceType": "Subscription", "id": "s1", "status": "active"},
    }


@given(failures=st.integers(min_value=0, max_value=15), jitter=st.floats(0, 1, exclude_max=True))
def test_the_wait_is_between_half_the_backoff_and_all_of_it(tmp_path_factory, failures, jitter):
    poller = _poller(tmp_path_factory.mktemp("jitter"), lambda: jitter)
    record = _record(failures)
    poller._failed(record, "the endpoint answered 503")
    backoff = min(300.0, POLL * 2**failures)  # the failure just counted is failures + 1
    assert record["failures"] == failures + 1
    assert record["next_at"] == NOW + backoff * (1 + jitter) / 2
    assert NOW + backoff / 2 <= record["next_at"] <= NOW + backoff


def test_subscriptions_that_fail_together_are_tried_again_apart(tmp_path):
    poller = _poller(tmp_path, random.Random(7).random)
    waits = set()
    for _ in range(20):
        record = _record(2)
        poller._failed(record, "the endpoint could not be reached (ConnectError)")
        waits.add(record["next_at"])
    assert len(waits) == 20
    assert all(NOW + 10.0 <= at < NOW + 20.0 for at in waits)
