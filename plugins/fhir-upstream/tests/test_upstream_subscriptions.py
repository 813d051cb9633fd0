"""A Subscription over the FHIR upstream: a change made at the upstream itself (not
through the facade) is told to the subscriber by the facade's poller, with facade ids."""

from __future__ import annotations

import httpx
import orjson
import pytest
from fhir_upstream_connector.sandbox import FhirSandbox
from upstream_world import client, facade

from adapter.settings import ExportSettings, SubscriptionSettings

pytestmark = pytest.mark.anyio


async def test_a_change_at_the_upstream_is_notified(tmp_path):
    upstream = FhirSandbox(seed=9, patients=8)
    told: list[dict] = []

    def receive(request: httpx.Request) -> httpx.Response:
        told.append(orjson.loads(request.content))
        return httpx.Response(200)

    app = facade(
        {"ehr": {"connector": "fhir-upstream", **upstream.defaults()}},
        {"ehr": upstream.transport(), "subscriptions": httpx.MockTransport(receive)},
        export=ExportSettings(dir=str(tmp_path)),
        subscriptions=SubscriptionSettings(allowed_endpoints=("http://receiver.test:80",)),
    )
    poller = app.state.subscriptions
    async with client(app) as http:
        made = await http.post(
            "/Subscription",
            json={
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "CRM sync",
                "criteria": "Appointment?status=cancelled",
                "channel": {
                    "type": "rest-hook",
                    "endpoint": "http://receiver.test/hook",
                    "payload": "application/fhir+json",
                },
            },
        )
        assert made.status_code == 201, made.text
        await poller.round()  # the first sweep: what is there now is not news
        status = (await http.get(f"/Subscription/{made.json()['id']}")).json()["status"]
        assert status == "active"
        told.clear()
        # At the upstream's front desk: a booked appointment is cancelled.
        booked = next(a for a in upstream.appointments if a["status"] == "booked")
        upstream.store["Appointment"][booked["id"]] = {
            **booked,
            "status": "cancelled",
            "meta": {"versionId": "2", "lastUpdated": "2026-06-01T10:00:00Z"},
        }
        await poller.round()
        (bundle,) = [b for b in told if b.get("type") == "history"]
        (entry,) = bundle["entry"]
        assert entry["resource"]["id"] == f"ehr.{booked['id']}"
        assert entry["resource"]["status"] == "cancelled"
        assert entry["resource"]["meta"]["source"] == "ehr"
