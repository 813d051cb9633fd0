"""Every notification the service makes, of any type and payload content, is a valid R4
history Bundle whose first entry's ``Parameters`` keeps the rules of the backport IG's
subscription-status profile (backport-subscription-status-r4, 1.1.0): each parameter's
name, value type and cardinality, the codes its ``status`` and ``type`` may take, and
each ``notification-event``'s parts. The rules are written out here from the profile,
apart from the code that makes the notifications."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.bundle import Bundle
from hypothesis import given
from hypothesis import strategies as st

from adapter.subscriptions.topics import Event, notification

BASE = "https://fhir.example.org/fhir"
PROFILE = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "backport-subscription-status-r4"
)
# name: (value type, least, most); None: no upper bound
PARAMETERS = {
    "subscription": ("valueReference", 1, 1),
    "topic": ("valueCanonical", 0, 1),
    "status": ("valueCode", 1, 1),
    "type": ("valueCode", 1, 1),
    "events-since-subscription-start": ("valueString", 0, 1),
    "notification-event": (None, 0, None),
    "error": ("valueCodeableConcept", 0, None),
}
PARTS = {
    "event-number": ("valueString", 1, 1),
    "timestamp": ("valueInstant", 0, 1),
    "focus": ("valueReference", 0, 1),
    "additional-context": ("valueReference", 0, None),
}
STATUSES = {"requested", "active", "error", "off", "entered-in-error"}
TYPES = {"handshake", "heartbeat", "event-notification", "query-status", "query-event"}


def _counted(items: list[dict[str, Any]], rules: dict[str, tuple[str | None, int, int | None]]):
    names = [item["name"] for item in items]
    assert set(names) <= set(rules), set(names) - set(rules)
    for name, (_, least, most) in rules.items():
        count = names.count(name)
        assert count >= least, f"{name}: {count} < {least}"
        assert most is None or count <= most, f"{name}: {count} > {most}"
    for item in items:
        kind = rules[item["name"]][0]
        if kind is not None:
            assert set(item) == {"name", kind}, item


def check_status(parameters: dict[str, Any]) -> None:
    assert parameters["resourceType"] == "Parameters"
    assert PROFILE in parameters["meta"]["profile"]
    _counted(parameters["parameter"], PARAMETERS)
    values = {p["name"]: p for p in parameters["parameter"]}
    assert values["status"]["valueCode"] in STATUSES
    assert values["type"]["valueCode"] in TYPES
    for event in (p for p in parameters["parameter"] if p["name"] == "notification-event"):
        assert set(event) == {"name", "part"}
        _counted(event["part"], PARTS)
        number = next(p for p in event["part"] if p["name"] == "event-number")
        assert number["valueString"].isdigit()


def _resource(kind: str, n: int, updated: str | None) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": kind, "id": f"nyra-w.{n}"}
    if updated:
        resource["meta"] = {"lastUpdated": updated}
    if kind == "Appointment":
        resource["status"] = "booked"
        resource["participant"] = [
            {"actor": {"reference": "Patient/nyra-w.1"}, "status": "accepted"}
        ]
    return resource


resources = st.builds(
    _resource,
    st.sampled_from(["Appointment", "Patient"]),
    st.integers(0, 10_000),
    st.sampled_from([None, "2026-03-11T09:15:02.274Z"]),
)


@given(
    kind=st.sampled_from(sorted(TYPES)),
    status=st.sampled_from(["requested", "active", "error"]),
    content=st.sampled_from(["empty", "id-only", "full-resource"]),
    first=st.integers(1, 10**12),
    focus=st.lists(resources, max_size=5),
)
def test_every_notification_keeps_the_subscription_status_profile(
    kind, status, content, first, focus
):
    events = [Event(first + i, r) for i, r in enumerate(focus)]
    bundle = notification(
        kind=kind,
        subscription={
            "id": "s1",
            "status": status,
            "criteria": f"{BASE}/SubscriptionTopic/appointment-booked",
        },
        base=BASE,
        since_start=first + len(events),
        events=events,
        content=content,
        timestamp="2026-03-11T09:15:03Z",
    )
    Bundle.model_validate(bundle)
    assert bundle["type"] == "history"
    head, *rest = bundle["entry"]
    check_status(head["resource"])
    for entry in bundle["entry"]:  # R4: a history entry has its request and response
        assert {"request", "response"} <= set(entry)
    told = [p for p in head["resource"]["parameter"] if p["name"] == "notification-event"]
    assert [int(next(x for x in e["part"] if x["name"] == "event-number")["valueString"])
            for e in told] == [e.number for e in events]  # fmt: skip
    if content == "empty":
        assert rest == []
        assert all(x["name"] != "focus" for e in told for x in e["part"])
        return
    paths = [f"{r['resourceType']}/{r['id']}" for r in focus]
    assert [e["fullUrl"] for e in rest] == [f"{BASE}/{p}" for p in paths]
    assert [e.get("resource") for e in rest] == (
        focus if content == "full-resource" else [None] * len(focus)
    )
