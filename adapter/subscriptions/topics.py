"""Topic-based Subscriptions, as the "Subscriptions R5 Backport" IG (1.1.0) brings them to
R4: https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/

- The topics are data (:data:`TOPICS`): each names the resource type it is about, the
  filters it takes, and the trigger that says whether a change is one of its events.
  Each topic's canonical URL is ``{base}/SubscriptionTopic/{name}``; the
  CapabilityStatement lists them (:func:`topic_extensions`).
- A change is judged against what was known of the resource before it (:class:`Facts`:
  its status and the digest of its start and participants, kept with the feed's
  digests), so that "booked", "cancelled" and "moved" mean a transition, not a state.
- A Subscription's filters come from the ``backport-filter-criteria`` extensions on
  ``Subscription._criteria`` (``Appointment?patient=Patient/123``); ``_source`` narrows
  the sources heard from, the others are matched in memory.
- Each topic's canonical URL resolves through the service: R4 has no SubscriptionTopic,
  so it answers the topic as the IG's R4 examples carry one, a ``Basic`` with the R5
  elements as cross-version extensions (:func:`topic_resource`), also read as
  ``Basic/{name}``.
- A notification is an R4 ``history`` Bundle whose first entry is the subscription-status
  ``Parameters`` (:func:`notification`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "BACKPORT",
    "CONTENTS",
    "TOPICS",
    "Event",
    "Facts",
    "Topic",
    "facts_of",
    "notification",
    "topic_extensions",
    "topic_named",
    "topic_resource",
    "topic_url",
]

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
CONTENTS = ("empty", "id-only", "full-resource")


@dataclass(frozen=True)
class Facts:
    """What a trigger needs to know of a resource as it was: its ``status`` and a digest
    of when and with whom (``placing``: an Appointment's start, end and participants)."""

    status: str | None
    placing: str | None

    def packed(self) -> str:
        return f"{self.status or ''} {self.placing or ''}"

    @staticmethod
    def unpacked(text: str) -> Facts:
        status, _, placing = text.partition(" ")
        return Facts(status or None, placing or None)


def facts_of(resource: dict[str, Any]) -> Facts:
    placing = None
    if resource.get("resourceType") == "Appointment":
        where = {
            "start": resource.get("start"),
            "end": resource.get("end"),
            "actors": sorted(
                str((p.get("actor") or {}).get("reference"))
                for p in resource.get("participant") or ()
            ),
        }
        placing = hashlib.sha256(orjson.dumps(where)).hexdigest()[:16]
    status = resource.get("status")
    return Facts(status if isinstance(status, str) else None, placing)


# Whether a change is an event of the topic: the facts before (None: a resource first
# seen now) and the resource after.
Trigger = Callable[[Facts | None, dict[str, Any]], bool]


def _becomes(status: str) -> Trigger:
    return lambda before, after: (
        after.get("status") == status and (before is None or before.status != status)
    )


def _moved(before: Facts | None, after: dict[str, Any]) -> bool:
    # Facts kept before topics existed know no placing: such a change is not called a move.
    return (
        before is not None
        and before.placing is not None
        and (before.placing != facts_of(after).placing)
    )


@dataclass(frozen=True)
class Topic:
    name: str
    resource_type: str
    title: str
    filters: tuple[str, ...]
    trigger: Trigger


_APPOINTMENT_FILTERS = ("patient", "practitioner", "location", "status", "_source")
TOPICS: dict[str, Topic] = {
    topic.name: topic
    for topic in (
        Topic(
            "appointment-booked",
            "Appointment",
            "An Appointment becomes booked (a new booking, or one that was not booked)",
            _APPOINTMENT_FILTERS,
            _becomes("booked"),
        ),
        Topic(
            "appointment-cancelled",
            "Appointment",
            "An Appointment becomes cancelled",
            _APPOINTMENT_FILTERS,
            _becomes("cancelled"),
        ),
        Topic(
            "appointment-moved",
            "Appointment",
            "An Appointment's start, end or participants change",
            _APPOINTMENT_FILTERS,
            _moved,
        ),
        Topic(
            "appointment-changed",
            "Appointment",
            "An Appointment is created or changes in any way",
            _APPOINTMENT_FILTERS,
            lambda before, after: True,
        ),
        Topic(
            "patient-created",
            "Patient",
            "A Patient is first seen",
            ("_source",),
            lambda before, after: before is None,
        ),
        Topic(
            "patient-changed",
            "Patient",
            "A Patient already known changes",
            ("_source",),
            lambda before, after: before is not None,
        ),
    )
}


def topic_url(base: str, name: str) -> str:
    return f"{base}/SubscriptionTopic/{name}"


def topic_named(base: str, canonical: str) -> Topic | None:
    """The topic whose canonical URL (under ``base``) is ``canonical``, if any."""
    prefix = f"{base}/SubscriptionTopic/"
    if not canonical.startswith(prefix):
        return None
    return TOPICS.get(canonical.removeprefix(prefix).partition("|")[0])


# The R5 SubscriptionTopic's elements as R4 extensions, as the IG's R4 topic examples
# carry them on a Basic resource (Basic/r4-encounter-complete).
_XVER = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
# What brings each topic's events about, where not both a create and an update can.
_INTERACTIONS = {
    "appointment-moved": ("update",),
    "patient-created": ("create",),
    "patient-changed": ("update",),
}
TOPIC_CODE = {"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}


def topic_resource(base: str, name: str) -> dict[str, Any] | None:
    """The topic ``name`` as R4 can hold it: a ``Basic`` whose ``code`` says
    SubscriptionTopic and whose extensions carry the R5 SubscriptionTopic's url, name,
    title, status, description, resource trigger (the type and the interactions that may
    fire it), the filters it takes (``canFilterBy``) and its notification shape; its id is
    the topic's name (None: no such topic)."""
    topic = TOPICS.get(name)
    if topic is None:
        return None
    definition = f"http://hl7.org/fhir/StructureDefinition/{topic.resource_type}"
    interactions = _INTERACTIONS.get(topic.name, ("create", "update"))
    return {
        "resourceType": "Basic",
        "id": topic.name,
        "code": {"coding": [TOPIC_CODE]},
        "extension": [
            {"url": _XVER + "url", "valueUri": topic_url(base, topic.name)},
            {"url": _XVER + "name", "valueString": topic.name},
            {"url": _XVER + "title", "valueString": topic.title},
            {"url": _XVER + "status", "valueCode": "active"},
            {"url": _XVER + "description", "valueMarkdown": topic.title},
            {
                "url": _XVER + "resourceTrigger",
                "extension": [
                    {"url": "description", "valueMarkdown": topic.title},
                    {"url": "resource", "valueUri": definition},
                    *(
                        {"url": "supportedInteraction", "valueCode": interaction}
                        for interaction in interactions
                    ),
                ],
            },
            *(
                {
                    "url": _XVER + "canFilterBy",
                    "extension": [
                        {"url": "resource", "valueUri": definition},
                        {"url": "filterParameter", "valueString": parameter},
                    ],
                }
                for parameter in topic.filters
            ),
            {
                "url": _XVER + "notificationShape",
                "extension": [{"url": "resource", "valueUri": definition}],
            },
        ],
    }


def topic_extensions(base: str) -> list[dict[str, Any]]:
    """The CapabilityStatement's advertisement of the topics, as the IG asks (on the
    Subscription resource of ``rest.resource``)."""
    return [
        {
            "url": BACKPORT + "capabilitystatement-subscriptiontopic-canonical",
            "valueCanonical": topic_url(base, name),
        }
        for name in TOPICS
    ]


@dataclass(frozen=True)
class Event:
    """One event of a Subscription: its number and the resource it is about."""

    number: int
    resource: dict[str, Any]


def notification(
    *,
    kind: str,
    subscription: dict[str, Any],
    base: str,
    since_start: int,
    events: Sequence[Event] = (),
    content: str = "id-only",
    timestamp: str,
) -> dict[str, Any]:
    """A notification Bundle (``history``) of ``kind`` (handshake, heartbeat,
    event-notification, query-status, query-event): first the subscription-status ``Parameters``
    (https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/StructureDefinition-backport-subscription-status-r4.html),
    then, unless ``content`` is ``empty``, one entry per event's focus (its resource
    only when ``content`` is ``full-resource``)."""
    sub_id = str(subscription["id"])
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{sub_id}"}},
        {"name": "topic", "valueCanonical": str(subscription["criteria"])},
        {"name": "status", "valueCode": str(subscription["status"])},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(since_start)},
    ]
    entries: list[dict[str, Any]] = []
    for event in events:
        path = f"{event.resource['resourceType']}/{event.resource['id']}"
        part: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
        ]
        updated = (event.resource.get("meta") or {}).get("lastUpdated")
        if updated:
            part.append({"name": "timestamp", "valueInstant": updated})
        if content != "empty":
            part.append({"name": "focus", "valueReference": {"reference": f"{base}/{path}"}})
            entry: dict[str, Any] = {"fullUrl": f"{base}/{path}"}
            if content == "full-resource":
                entry["resource"] = event.resource
            entry["request"] = {"method": "PUT", "url": path}
            entry["response"] = {"status": "200"}
            entries.append(entry)
        parameters.append({"name": "notification-event", "part": part})
    status = {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": {
            "resourceType": "Parameters",
            "meta": {"profile": [BACKPORT + "backport-subscription-status-r4"]},
            "parameter": parameters,
        },
        "request": {"method": "GET", "url": f"Subscription/{sub_id}/$status"},
        "response": {"status": "200"},
    }
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [BACKPORT + "backport-subscription-notification-r4"]},
        "type": "history",
        "timestamp": timestamp,
        "entry": [status, *entries],
    }
