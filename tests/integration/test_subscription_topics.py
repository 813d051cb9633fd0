"""Topic-based Subscriptions (Subscriptions R5 Backport IG 1.1.0, R4) over HTTP: the
topics in the CapabilityStatement, filters, the handshake, numbered events with their
focus in each payload content, ``$status``; every notification is a valid R4 Bundle
whose first entry matches the IG's subscription-status ``Parameters``."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from hooks import Receiver
from subscribing import JSON, World, book_at_the_vendor, serving, until
from worlds import booking, nyra_patient

from mappings import decode_id

BASE = "https://fhir.example.org/fhir"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
TOPIC = f"{BASE}/SubscriptionTopic/"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


@pytest.fixture
def http(world: World) -> Iterator[httpx.Client]:
    with serving(world) as client:
        yield client


def topic_subscription(
    endpoint: str, topic: str, filters: list[str], content: str = "full-resource"
) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "meta": {"profile": [BACKPORT + "backport-subscription"]},
        "status": "requested",
        "reason": "CRM sync",
        "criteria": TOPIC + topic,
        "_criteria": {
            "extension": [
                {"url": BACKPORT + "backport-filter-criteria", "valueString": f} for f in filters
            ]
        },
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": content}]
            },
            "header": ["Authorization: Bearer hook-secret"],
        },
    }


def status_of(parameters: dict[str, Any]) -> dict[str, Any]:
    """The subscription-status ``Parameters`` checked against the IG's profile
    (backport-subscription-status-r4: names, types and cardinalities), as a dict of name
    to value (``notification-event``: a list of dicts of part name to value)."""
    assert parameters["resourceType"] == "Parameters"
    assert parameters["meta"]["profile"] == [BACKPORT + "backport-subscription-status-r4"]
    single = {
        "subscription": ("valueReference", True),
        "topic": ("valueCanonical", False),
        "status": ("valueCode", True),
        "type": ("valueCode", True),
        "events-since-subscription-start": ("valueString", False),
    }
    out: dict[str, Any] = {"notification-event": []}
    for parameter in parameters["parameter"]:
        name = parameter["name"]
        if name == "notification-event":
            parts = {p["name"]: p for p in parameter["part"]}
            assert len(parts) == len(parameter["part"])
            assert set(parts) <= {"event-number", "timestamp", "focus", "additional-context"}
            event = {"event-number": parts["event-number"]["valueString"]}
            if "timestamp" in parts:
                event["timestamp"] = parts["timestamp"]["valueInstant"]
            if "focus" in parts:
                event["focus"] = parts["focus"]["valueReference"]["reference"]
            out[name].append(event)
            continue
        kind, _ = single[name]
        assert name not in out, f"{name} given twice"
        assert set(parameter) == {"name", kind}
        out[name] = parameter[kind]
    assert all(name in out for name, (_, required) in single.items() if required)
    assert out["type"] in (
        "handshake",
        "heartbeat",
        "event-notification",
        "query-status",
        "query-event",
    )
    return out


def notified(body: dict[str, Any]) -> dict[str, Any]:
    """A notification: a valid R4 history Bundle, first the status, then the focus of
    each event (by its full URL, under the service's base)."""
    Bundle.model_validate(body)
    assert body["type"] == "history"
    first, *rest = body["entry"]
    status = status_of(first["resource"])
    focus = [e["focus"] for e in status["notification-event"] if "focus" in e]
    assert [e["fullUrl"] for e in rest] == focus
    for entry in rest:
        assert entry["request"] == {"method": "PUT", "url": entry["fullUrl"][len(BASE) + 1 :]}
    return status


def subscribe_to_topic(
    http: httpx.Client, receiver: Receiver, body: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create; the handshake comes first, and then the Subscription is active."""
    made = http.post("/Subscription", json=body, headers=JSON)
    assert made.status_code == 201, made.text
    sub = made.json()
    _, handshake = receiver.next()
    status = notified(handshake)
    assert len(handshake["entry"]) == 1
    assert status == {
        "subscription": {"reference": f"{BASE}/Subscription/{sub['id']}"},
        "topic": body["criteria"],
        "status": "requested",
        "type": "handshake",
        "events-since-subscription-start": "0",
        "notification-event": [],
    }
    until(lambda: http.get(f"/Subscription/{sub['id']}").json()["status"] == "active")
    return sub, status


def test_the_topics_are_advertised_as_the_ig_says(http):
    statement = http.get("/metadata").json()
    [kept] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription"]
    assert [e["valueCanonical"] for e in kept["extension"]] == [
        TOPIC + name
        for name in (
            "appointment-booked",
            "appointment-cancelled",
            "appointment-moved",
            "appointment-changed",
            "patient-created",
            "patient-changed",
        )
    ]
    assert {e["url"] for e in kept["extension"]} == {
        BACKPORT + "capabilitystatement-subscriptiontopic-canonical"
    }
    assert kept["supportedProfile"] == [BACKPORT + "backport-subscription"]
    assert [op["name"] for op in kept["operation"]] == ["status", "events"]


@pytest.mark.parametrize(
    ("topic", "filters", "named"),
    [
        ("patient-created", ["Patient?status=active"], "takes no filter status"),
        ("appointment-booked", ["Appointment?date=2030-01-01"], "takes no filter date"),
        ("appointment-booked", ["Patient?_source=leyr-w"], "is about Appointment, not Patient"),
        ("appointment-booked", ["Appointment?_source=elsewhere"], "names no source: elsewhere"),
        ("nothing-like-it", [], "no topic of this server's"),
    ],
)
def test_what_a_topic_does_not_take_is_a_422_naming_it(http, receiver, topic, filters, named):
    answer = http.post(
        "/Subscription", json=topic_subscription(receiver.url, topic, filters), headers=JSON
    )
    assert answer.status_code == 422
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert named in outcome["issue"][0]["diagnostics"]


def test_the_payload_content_must_be_given(http, receiver):
    body = topic_subscription(receiver.url, "patient-changed", [])
    del body["channel"]["_payload"]
    answer = http.post("/Subscription", json=body, headers=JSON)
    assert answer.status_code == 422
    assert answer.json()["issue"][0]["expression"] == ["Subscription.channel.payload"]


@pytest.mark.parametrize("source", ["leyr-w", "nyra-w"])
def test_a_booking_at_the_vendor_is_event_one_after_the_handshake(world, http, receiver, source):
    body = topic_subscription(receiver.url, "appointment-booked", [f"Appointment?_source={source}"])
    sub, _ = subscribe_to_topic(http, receiver, body)
    vendor_id = book_at_the_vendor(world, source, hour=11)
    headers, note = receiver.next()
    assert headers["authorization"] == "Bearer hook-secret"
    status = notified(note)
    [event] = status["notification-event"]
    assert status["type"] == "event-notification" and status["status"] == "active"
    assert status["events-since-subscription-start"] == "1"
    assert event["event-number"] == "1"
    [entry] = note["entry"][1:]
    assert entry["resource"]["status"] == "booked"
    assert decode_id(entry["resource"]["id"]).vendor_id == vendor_id
    assert event["focus"] == f"{BASE}/Appointment/{entry['resource']['id']}"
    assert event["timestamp"] == entry["resource"]["meta"]["lastUpdated"]
    read = http.get(f"/Appointment/{entry['resource']['id']}")
    assert read.status_code == 200 and read.json()["status"] == "booked"
    statuses = http.get(f"/Subscription/{sub['id']}/$status")
    assert statuses.status_code == 200
    found = statuses.json()
    Bundle.model_validate(found)
    assert found["type"] == "searchset"
    [only] = found["entry"]
    assert status_of(only["resource"]) == {
        "subscription": {"reference": f"{BASE}/Subscription/{sub['id']}"},
        "topic": TOPIC + "appointment-booked",
        "status": "active",
        "type": "query-status",
        "events-since-subscription-start": "1",
        "notification-event": [],
    }


def test_only_a_cancel_is_a_cancelled_event_and_the_patient_filter_holds(world, http, receiver):
    patients = http.get("/Patient", params={"_source": "nyra-w", "_count": 2}).json()
    mine, other = (e["resource"]["id"] for e in patients["entry"])
    body = topic_subscription(
        receiver.url, "appointment-cancelled", [f"Appointment?patient=Patient/{mine}"], "id-only"
    )
    subscribe_to_topic(http, receiver, body)
    made = {}
    for patient, hour in ((other, 9), (mine, 10)):
        answer = http.post(
            "/Appointment", json=booking(world, http, "nyra-w", patient, hour), headers=JSON
        )
        assert answer.status_code == 201, answer.text
        made[patient] = answer.json()
    for patient in (other, mine):  # the other's cancel first: not told
        cancel = {**made[patient], "status": "cancelled"}
        put = http.put(f"/Appointment/{cancel['id']}", json=cancel, headers=JSON)
        assert put.status_code == 200, put.text
    _, note = receiver.next()
    status = notified(note)
    assert status["events-since-subscription-start"] == "1"
    assert status["notification-event"] == [
        {
            "event-number": "1",
            "timestamp": status["notification-event"][0]["timestamp"],
            "focus": f"{BASE}/Appointment/{made[mine]['id']}",
        }
    ]
    [entry] = note["entry"][1:]
    assert "resource" not in entry  # id-only


def test_patient_changes_are_numbered_on_with_empty_content(world, http, receiver):
    body = topic_subscription(receiver.url, "patient-changed", ["Patient?_source=leyr-w"], "empty")
    subscribe_to_topic(http, receiver, body)
    records = list(world.leyr.patients["L0_1"])
    records[0]["last_name"] = "Firstchange"
    _, first = receiver.next()
    records[1]["last_name"] = "Secondchange"
    _, second = receiver.next()
    numbers = []
    for note in (first, second):
        status = notified(note)
        assert len(note["entry"]) == 1  # empty: the status alone
        numbers += [e["event-number"] for e in status["notification-event"]]
        assert all("focus" not in e for e in status["notification-event"])
    assert numbers == ["1", "2"]
    assert notified(second)["events-since-subscription-start"] == "2"


def test_a_criteria_subscription_has_a_status_without_topic_or_count(http, receiver):
    plain = http.post(
        "/Subscription",
        json={
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "CRM sync",
            "criteria": "Patient?_source=leyr-w",
            "channel": {"type": "rest-hook", "endpoint": receiver.url},
        },
        headers=JSON,
    ).json()
    answer = http.get(f"/Subscription/{plain['id']}/$status")
    assert answer.status_code == 200
    Bundle.model_validate(answer.json())
    [entry] = answer.json()["entry"]
    assert status_of(entry["resource"]) == {
        "subscription": {"reference": f"{BASE}/Subscription/{plain['id']}"},
        "status": "requested",
        "type": "query-status",
        "notification-event": [],
    }
    missing = http.get("/Subscription/nosuch/$status")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"


class Silent:
    """An endpoint that takes connections and never answers (as a hung CRM would)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.taken: list[socket.socket] = []
        self.thread = threading.Thread(target=self._take, daemon=True)
        self.thread.start()

    def _take(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.taken.append(self.sock.accept()[0])

    @staticmethod
    def still_open(conn: socket.socket) -> bool:
        """Whether the caller still waits on ``conn`` (has not closed it)."""
        try:
            while conn.recv(65536, socket.MSG_DONTWAIT):
                pass  # what it sent, unread
        except BlockingIOError:
            return True
        return False  # end of stream: the caller gave up

    def close(self) -> None:
        self.sock.close()
        for conn in self.taken:
            conn.close()


def test_an_endpoint_that_never_answers_holds_no_other(world, http, receiver):
    """A change made while another Subscription's delivery hangs is told to this one
    while that delivery still hangs: a round does not wait for it."""
    body = topic_subscription(receiver.url, "patient-changed", ["Patient?_source=leyr-w"])
    subscribe_to_topic(http, receiver, body)
    silent = Silent()
    try:
        hung = http.post(
            "/Subscription",
            json=topic_subscription(silent.url, "patient-changed", ["Patient?_source=leyr-w"]),
            headers=JSON,
        )
        assert hung.status_code == 201
        until(lambda: bool(silent.taken))  # its handshake is under way, and hangs
        first = silent.taken[0]
        next(iter(world.leyr.patients["L0_1"]))["last_name"] = "Heardanyway"
        _, note = receiver.next()
        assert notified(note)["notification-event"][0]["event-number"] == "1"
        assert note["entry"][1]["resource"]["name"][0]["family"] == "Heardanyway"
        assert Silent.still_open(first)
        assert http.get(f"/Subscription/{hung.json()['id']}").json()["status"] == "requested"
    finally:
        silent.close()


def test_an_endpoint_that_never_answers_holds_only_its_own_lanes(world, http, receiver):
    """More Subscriptions to an endpoint that hangs than a worker has lanes: that
    endpoint's queue lets four of them at it at once, and the others wait in it, so
    another endpoint's Subscription made after them shakes hands and is told at once."""
    silent = Silent()
    made: list[str] = []
    try:
        for _ in range(12):  # three times what the endpoint's queue lets at it at once
            hung = http.post(
                "/Subscription",
                json=topic_subscription(silent.url, "patient-changed", ["Patient?_source=leyr-w"]),
                headers=JSON,
            )
            assert hung.status_code == 201, hung.text
            made.append(hung.json()["id"])
        until(lambda: len(silent.taken) == 4)  # four handshakes under way, hanging
        body = topic_subscription(receiver.url, "patient-changed", ["Patient?_source=leyr-w"])
        subscribe_to_topic(http, receiver, body)
        next(iter(world.leyr.patients["L0_1"]))["last_name"] = "Queuedapart"
        _, note = receiver.next()
        assert note["entry"][1]["resource"]["name"][0]["family"] == "Queuedapart"
        assert len(silent.taken) == 4  # the hung endpoint still has only its four
        assert all(Silent.still_open(conn) for conn in silent.taken)
    finally:
        for sub_id in made:  # a client holds at most 20 ([clients.NAME] max_subscriptions)
            http.delete(f"/Subscription/{sub_id}")
        silent.close()


def test_events_asks_again_for_what_an_endpoint_that_was_down_missed(world, http, receiver):
    body = topic_subscription(receiver.url, "patient-changed", ["Patient?_source=leyr-w"])
    sub, _ = subscribe_to_topic(http, receiver, body)
    receiver.status = 500  # the CRM is down
    first, second = list(world.leyr.patients["L0_1"])[:2]
    first["last_name"], second["last_name"] = "Missedfirst", "Missedsecond"
    _, refused = receiver.next()  # tried, and answered 500
    assert [e["event-number"] for e in notified(refused)["notification-event"]] == ["1", "2"]
    statuses = http.get(f"/Subscription/{sub['id']}/$status").json()
    assert status_of(statuses["entry"][0]["resource"])["events-since-subscription-start"] == "2"

    answer = http.get(f"/Subscription/{sub['id']}/$events", params={"eventsSinceNumber": 1})
    assert answer.status_code == 200
    replay = answer.json()
    status = notified(replay)
    assert status["type"] == "query-event" and status["events-since-subscription-start"] == "2"
    assert [e["event-number"] for e in status["notification-event"]] == ["1", "2"]
    families = [e["resource"]["name"][0]["family"] for e in replay["entry"][1:]]
    assert families == ["Missedfirst", "Missedsecond"]

    only = http.get(
        f"/Subscription/{sub['id']}/$events",
        params={"eventsSinceNumber": 2, "eventsUntilNumber": 2, "content": "id-only"},
    ).json()
    status = notified(only)
    assert [e["event-number"] for e in status["notification-event"]] == ["2"]
    assert all("resource" not in e for e in only["entry"][1:])

    refused_ask = http.get(f"/Subscription/{sub['id']}/$events", params={"content": "all"})
    assert refused_ask.status_code == 400
    assert refused_ask.json()["resourceType"] == "OperationOutcome"

    receiver.status = 200  # back: the same events, under the same numbers
    while True:
        _, again = receiver.next()
        numbers = [e["event-number"] for e in notified(again)["notification-event"]]
        assert numbers == ["1", "2"]
        if http.get(f"/Subscription/{sub['id']}").json().get("error") is None:
            break


def test_event_numbers_go_on_across_a_restart(world, receiver):
    body = topic_subscription(receiver.url, "patient-changed", ["Patient?_source=leyr-w"])
    first, second = list(world.leyr.patients["L0_1"])[:2]
    with serving(world) as http:
        sub, _ = subscribe_to_topic(http, receiver, body)
        first["last_name"] = "Beforerestart"
        _, note = receiver.next()
        assert [e["event-number"] for e in notified(note)["notification-event"]] == ["1"]
    world.restarted()
    with serving(world) as http:
        second["last_name"] = "Afterrestart"
        _, note = receiver.next()
        status = notified(note)
        assert [e["event-number"] for e in status["notification-event"]] == ["2"]
        assert status["events-since-subscription-start"] == "2"
        replay = http.get(f"/Subscription/{sub['id']}/$events").json()
        families = [e["resource"]["name"][0]["family"] for e in replay["entry"][1:]]
        assert families == ["Beforerestart", "Afterrestart"]


def test_one_in_error_keeps_its_events_and_resumes_when_requested_again(world, http, receiver):
    body = topic_subscription(receiver.url, "patient-changed", ["Patient?_source=leyr-w"])
    sub, _ = subscribe_to_topic(http, receiver, body)
    here = f"/Subscription/{sub['id']}"

    def told() -> str:
        found = http.get(f"{here}/$status").json()
        return str(status_of(found["entry"][0]["resource"])["events-since-subscription-start"])

    receiver.status = 500
    first, second = list(world.leyr.patients["L0_1"])[:2]
    first["last_name"] = "Duringoutage"
    for _ in range(3):  # max_failures
        receiver.next()
    until(lambda: http.get(here).json()["status"] == "error")
    second["last_name"] = "Whileinerror"  # heard, and kept, while in error
    until(lambda: told() == "2")

    receiver.status = 200
    again = http.get(here).json()  # as a read shows it: the header's value masked
    assert again["channel"]["header"] == ["Authorization: ***"]
    put = http.put(here, json={**again, "status": "requested"}, headers=JSON)
    assert put.status_code == 200, put.text
    assert put.json()["status"] == "requested"
    headers, handshake = receiver.next()
    assert headers["authorization"] == "Bearer hook-secret"  # the kept value
    status = notified(handshake)
    assert status["type"] == "handshake" and status["events-since-subscription-start"] == "2"
    _, note = receiver.next()
    status = notified(note)
    assert [e["event-number"] for e in status["notification-event"]] == ["1", "2"]
    families = [e["resource"]["name"][0]["family"] for e in note["entry"][1:]]
    assert families == ["Duringoutage", "Whileinerror"]
    until(lambda: http.get(here).json()["status"] == "active")


def test_writes_through_the_service_fire_patient_created_and_appointment_changed(
    world, http, receiver
):
    created = topic_subscription(receiver.url, "patient-created", ["Patient?_source=nyra-w"])
    first, _ = subscribe_to_topic(http, receiver, created)
    made = http.post("/Patient", json=nyra_patient(), headers=JSON)
    assert made.status_code == 201, made.text
    patient_id = made.json()["id"]
    _, note = receiver.next()
    status = notified(note)
    assert status["subscription"]["reference"] == f"{BASE}/Subscription/{first['id']}"
    assert [(e["event-number"], e["focus"]) for e in status["notification-event"]] == [
        ("1", f"{BASE}/Patient/{patient_id}")
    ]
    assert note["entry"][1]["resource"]["name"][0]["family"] == "Verma"

    changed = topic_subscription(
        receiver.url, "appointment-changed", [f"Appointment?patient={patient_id}"]
    )
    second, _ = subscribe_to_topic(http, receiver, changed)
    booked = http.post(
        "/Appointment", json=booking(world, http, "nyra-w", patient_id, 14), headers=JSON
    )
    assert booked.status_code == 201, booked.text
    _, note = receiver.next()
    status = notified(note)
    assert status["subscription"]["reference"] == f"{BASE}/Subscription/{second['id']}"
    assert [(e["event-number"], e["focus"]) for e in status["notification-event"]] == [
        ("1", f"{BASE}/Appointment/{booked.json()['id']}")
    ]
