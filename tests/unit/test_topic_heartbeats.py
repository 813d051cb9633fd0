"""A topic-based Subscription with ``backport-heartbeat-period`` hears a heartbeat when the
period has passed with nothing sent, and not before; the heartbeat is a valid R4 history
Bundle whose only entry is the subscription-status ``Parameters`` of type ``heartbeat``.
Time is the poller's injected clock."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle

from adapter.facade import Caller
from adapter.subscriptions.poller import SubscriptionPoller
from adapter.subscriptions.store import FileSubscriptionStore
from adapter.subscriptions.topics import TOPICS

pytestmark = pytest.mark.anyio

BASE = "https://fhir.example.org/fhir"


async def test_a_heartbeat_goes_out_once_each_quiet_period(tmp_path):
    now = [1000.0]
    sent: list[dict[str, Any]] = []

    def hook(request: httpx.Request) -> httpx.Response:
        sent.append(orjson.loads(request.content))
        return httpx.Response(200)

    store = FileSubscriptionStore(tmp_path)
    poller = SubscriptionPoller(
        None,  # type: ignore[arg-type]  # tending one Subscription reads no source
        store,
        clients={},
        journal=None,
        poll_seconds=5.0,
        max_failures=3,
        budget_share=0.1,
        allowed_endpoints=("http://hook.test:*",),
        base_url=BASE,
        transport=httpx.MockTransport(hook),
        clock=lambda: now[0],
    )
    record = {
        "owner": None,
        "resource": {
            "resourceType": "Subscription",
            "id": "s1",
            "status": "active",
            "reason": "CRM sync",
            "criteria": f"{BASE}/SubscriptionTopic/patient-changed",
            "channel": {"type": "rest-hook", "endpoint": "http://hook.test/hook"},
        },
        "topic": {
            "name": "patient-changed",
            "filters": [],
            "content": "id-only",
            "heartbeat": 60,
            "timeout": None,
            "max_count": None,
        },
        "sent_at": 1000.0,
    }
    await store.create(record)
    want = SimpleNamespace(
        id="s1",
        resource_type="Patient",
        sources=(),
        caller=Caller(),
        topic=TOPICS["patient-changed"],
    )
    beats = []
    for at in (1030.0, 1059.0, 1060.0, 1100.0, 1119.0, 1120.0):
        now[0] = at
        await poller._tend(want, {})  # type: ignore[arg-type]
        beats.append(len(sent))
    assert beats == [0, 0, 1, 1, 1, 2]
    for body in sent:
        Bundle.model_validate(body)
        assert body["type"] == "history"
        [entry] = body["entry"]
        parameters = {p["name"]: p for p in entry["resource"]["parameter"]}
        assert parameters["type"]["valueCode"] == "heartbeat"
        assert parameters["status"]["valueCode"] == "active"
        assert parameters["events-since-subscription-start"]["valueString"] == "0"
        assert parameters["subscription"]["valueReference"] == {
            "reference": f"{BASE}/Subscription/s1"
        }
    assert sent[0]["timestamp"] == "1970-01-01T00:17:40Z"
    await poller.aclose()
