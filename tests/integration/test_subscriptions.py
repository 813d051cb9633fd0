"""Subscriptions over HTTP: a rest-hook receiver on loopback is told of changes made at
the vendor and through the facade, failures end in ``error``, and what may not be
subscribed to (private endpoints, another client's Subscriptions) is refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from hooks import Receiver, subscription
from subscribing import (
    JSON,
    POLL,
    WAIT,
    World,
    book_at_the_vendor,
    serving,
    subscribe,
    told_once,
    until,
    valid_history,
)
from worlds import booking

from mappings import decode_id


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver(wait=WAIT)
    yield hook
    hook.close()


@pytest.fixture
def http(world: World) -> Iterator[httpx.Client]:
    with serving(world) as client:
        yield client


def test_a_change_at_the_vendor_is_notified(world, http, receiver):
    sub = subscribe(http, subscription(receiver.url, "Patient?_source=leyr-w&_count=50"))
    assert http.get(f"/Subscription/{sub['id']}").json()["channel"]["header"] == [
        "Authorization: ***"
    ]
    record = next(iter(world.leyr.patients["L0_1"]))
    record["last_name"] = "Changedsson"  # as the clinic's own system would
    headers, body = receiver.next()
    valid_history(body)
    assert headers["authorization"] == "Bearer hook-secret"
    assert headers["content-type"].startswith("application/fhir+json")
    [entry] = body["entry"]
    assert entry["resource"]["name"][0]["family"] == "Changedsson"
    assert entry["resource"]["meta"]["lastUpdated"]
    told_once(world, receiver)


@pytest.mark.parametrize("source", ["leyr-w", "nyra-w"])
def test_a_booking_at_the_vendor_is_notified_within_two_polls(world, http, receiver, source):
    sub = subscribe(http, subscription(receiver.url, f"Appointment?_source={source}"))
    poller = world.app.state.subscriptions
    before = poller.rounds
    vendor_id = book_at_the_vendor(world, source, hour=11)
    headers, body = receiver.next()
    assert poller.rounds - before <= 2  # found by the first or second round after it
    valid_history(body)
    assert headers["authorization"] == "Bearer hook-secret"
    [entry] = body["entry"]
    assert decode_id(entry["resource"]["id"]).vendor_id == vendor_id
    assert entry["resource"]["status"] == "booked"
    assert entry["resource"]["meta"]["versionId"] and entry["resource"]["meta"]["lastUpdated"]
    read = http.get(f"/Appointment/{entry['resource']['id']}")
    assert (
        read.status_code == 200
        and read.json()["meta"]["versionId"] == (entry["resource"]["meta"]["versionId"])
    )
    assert http.get(f"/Subscription/{sub['id']}").json()["status"] == "active"


def test_changes_made_while_the_service_was_down_are_told_after_a_restart(world, receiver):
    with serving(world) as http:
        sub = subscribe(http, subscription(receiver.url, "Patient?_source=leyr-w"))
    record = next(iter(world.leyr.patients[next(iter(world.leyr.care_units))]))
    record["last_name"] = "Whiledownsson"  # nobody is polling now
    world.restarted()
    with serving(world) as http:
        _, body = receiver.next()
        [entry] = body["entry"]
        assert entry["resource"]["name"][0]["family"] == "Whiledownsson"
        assert http.get(f"/Subscription/{sub['id']}").json()["status"] == "active"


def test_a_subscription_past_its_end_is_off(world, http, receiver):
    ends = datetime.now(UTC) + timedelta(seconds=2 * POLL)
    body = subscription(receiver.url, "Patient?_source=leyr-w")
    body["end"] = ends.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    made = http.post("/Subscription", json=body, headers=JSON).json()
    until(lambda: http.get(f"/Subscription/{made['id']}").json()["status"] == "off")
    next(iter(world.leyr.patients[next(iter(world.leyr.care_units))]))["last_name"] = "Late"
    told_once(world, receiver)


def test_criteria_are_matched_against_each_change(world, http, receiver):
    """Only the changes the criteria match are told: here one patient's, not another's."""
    cu = next(iter(world.leyr.care_units))
    first, second = list(world.leyr.patients[cu])[:2]
    found = http.get("/Patient", params={"_source": "leyr-w", "family": first["last_name"]})
    target = next(
        e["resource"]["id"]
        for e in found.json()["entry"]
        if decode_id(e["resource"]["id"]).vendor_id == first["id"]
    )
    subscribe(http, subscription(receiver.url, f"Patient?_id={target}"))
    second["last_name"] = "Notforyou"
    first["last_name"] = "Foryou"
    _, body = receiver.next()
    assert [e["resource"]["id"] for e in body["entry"]] == [target]
    told_once(world, receiver)


def test_a_booking_and_cancel_through_the_facade_are_notified(world, http, receiver):
    patients = http.get("/Patient", params={"_source": "nyra-w", "_count": 1}).json()
    patient_id = patients["entry"][0]["resource"]["id"]
    subscribe(http, subscription(receiver.url, f"Appointment?patient={patient_id}"))
    made = http.post(
        "/Appointment", json=booking(world, http, "nyra-w", patient_id, 10), headers=JSON
    )
    assert made.status_code == 201, made.text
    _, body = receiver.next()
    valid_history(body)
    assert [e["resource"]["id"] for e in body["entry"]] == [made.json()["id"]]
    cancel = {**made.json(), "status": "cancelled"}
    assert http.put(f"/Appointment/{cancel['id']}", json=cancel, headers=JSON).status_code == 200
    _, body = receiver.next()
    [entry] = body["entry"]
    assert entry["resource"]["id"] == cancel["id"] and entry["resource"]["status"] == "cancelled"


def test_ping_only_has_no_entries_and_delete_stops(world, http, receiver):
    body = subscription(receiver.url, "Patient?_source=leyr-w&_count=50")
    del body["channel"]["payload"]
    sub = subscribe(http, body)
    patients = list(world.leyr.patients["L0_1"])
    patients[0]["last_name"] = "Pingsson"
    _, note = receiver.next()
    assert valid_history(note).entry is None
    assert http.delete(f"/Subscription/{sub['id']}").status_code == 204
    assert http.get(f"/Subscription/{sub['id']}").status_code == 404
    patients[1]["last_name"] = "Unseen"
    told_once(world, receiver)


def test_failures_are_retried_then_error(world, http, receiver):
    receiver.status = 500
    sub = subscribe(http, subscription(receiver.url, "Patient?_source=leyr-w&_count=50"))
    next(iter(world.leyr.patients["L0_1"]))["last_name"] = "Failsson"
    for _ in range(3):  # max_failures
        receiver.next()
    until(lambda: http.get(f"/Subscription/{sub['id']}").json()["status"] == "error")
    read = http.get(f"/Subscription/{sub['id']}").json()
    assert "500" in read["error"] and "3 failures" in read["error"]
    assert http.get("/Subscription", params={"status": "error"}).json()["total"] == 1
    assert http.get("/Subscription", params={"status": "active"}).json()["total"] == 0


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://example.org/hook",
        "https://10.1.2.3/hook",
        "https://127.0.0.1:8443/hook",
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest",
        "ftp://example.org/hook",
    ],
)
def test_endpoints_that_may_not_be_called(http, endpoint):
    r = http.post("/Subscription", json=subscription(endpoint, "Patient?_count=5"), headers=JSON)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == ["Subscription.channel.endpoint"]


@pytest.mark.parametrize(
    ("criteria", "where"),
    [
        ("Observation?code=1", "Subscription.criteria"),
        ("Patient?nonsense=1", "Subscription.criteria"),
        ("Patient?_cursor=x", "Subscription.criteria"),
        ("Appointment?_lastUpdated=gt2026-01-01", "Subscription.criteria"),
    ],
)
def test_criteria_the_facade_does_not_accept(http, receiver, criteria, where):
    r = http.post("/Subscription", json=subscription(receiver.url, criteria), headers=JSON)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == [where]


def test_channel_type_and_payload(http, receiver):
    body = subscription(receiver.url, "Patient?_count=5")
    body["channel"]["type"] = "websocket"
    r = http.post("/Subscription", json=body, headers=JSON)
    assert r.status_code == 422 and "channel.type" in r.json()["issue"][0]["expression"][0]
    body = subscription(receiver.url, "Patient?_count=5", payload="application/xml")
    r = http.post("/Subscription", json=body, headers=JSON)
    assert r.status_code == 422 and "channel.payload" in r.json()["issue"][0]["expression"][0]


def test_each_client_sees_only_its_own(world, http, receiver):
    made = http.post(
        "/Subscription", json=subscription(receiver.url, "Patient?_count=5"), headers=JSON
    ).json()
    other = world.auth("other")
    assert http.get(f"/Subscription/{made['id']}", headers=other).status_code == 404
    assert http.delete(f"/Subscription/{made['id']}", headers=other).status_code == 404
    assert http.get("/Subscription", headers=other).json()["total"] == 0
    mine = http.get("/Subscription", params={"url": receiver.url}).json()
    assert [e["resource"]["id"] for e in mine["entry"]] == [made["id"]]
    by_id = http.get("/Subscription", params={"_id": made["id"], "status": "requested,active"})
    assert [e["resource"]["id"] for e in by_id.json()["entry"]] == [made["id"]]
    assert http.get("/Subscription", params={"status": "off"}).json()["total"] == 0
    ignored = http.get("/Subscription", params={"nonsense": "1"})
    assert ignored.status_code == 200 and ignored.json()["total"] == 1
    strict = http.get(
        "/Subscription", params={"nonsense": "1"}, headers={"prefer": "handling=strict"}
    )
    assert strict.status_code == 400 and "nonsense" in strict.text
    assert "hook-secret" not in orjson.dumps(mine).decode()
    reader = world.auth("reader")
    assert (
        http.post(
            "/Subscription",
            json=subscription(receiver.url, "Patient?_count=5"),
            headers={**JSON, **reader},
        ).status_code
        == 403
    )
