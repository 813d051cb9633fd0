"""Each topic's trigger judges a transition against what was known of the resource before
(its facts as the feed's digests keep them), not the resource's state alone."""

from __future__ import annotations

import pytest

from adapter.subscriptions.topics import TOPICS, Facts, facts_of


def appointment(status: str, start: str = "2030-01-07T09:00:00Z", doctor: str = "a") -> dict:
    return {
        "resourceType": "Appointment",
        "id": "x",
        "status": status,
        "start": start,
        "participant": [{"actor": {"reference": f"Practitioner/{doctor}"}}],
    }


BOOKED = appointment("booked")
KEPT = Facts.unpacked(facts_of(BOOKED).packed())  # as the feed keeps them
LEGACY = Facts.unpacked("")  # a digest kept before topics: no facts


@pytest.mark.parametrize(
    ("topic", "before", "after", "fires"),
    [
        ("appointment-booked", None, BOOKED, True),
        ("appointment-booked", Facts("proposed", None), BOOKED, True),
        ("appointment-booked", KEPT, appointment("booked", start="2030-01-08T09:00:00Z"), False),
        ("appointment-cancelled", KEPT, appointment("cancelled"), True),
        ("appointment-cancelled", Facts("cancelled", None), appointment("cancelled"), False),
        ("appointment-cancelled", None, BOOKED, False),
        ("appointment-moved", KEPT, appointment("booked", start="2030-01-08T09:00:00Z"), True),
        ("appointment-moved", KEPT, appointment("booked", doctor="b"), True),
        ("appointment-moved", KEPT, appointment("cancelled"), False),
        ("appointment-moved", None, BOOKED, False),
        ("appointment-moved", LEGACY, appointment("booked", doctor="b"), False),
        ("appointment-changed", KEPT, appointment("cancelled"), True),
        ("appointment-changed", None, BOOKED, True),
        ("patient-created", None, {"resourceType": "Patient", "id": "p"}, True),
        ("patient-created", LEGACY, {"resourceType": "Patient", "id": "p"}, False),
        ("patient-changed", LEGACY, {"resourceType": "Patient", "id": "p"}, True),
        ("patient-changed", None, {"resourceType": "Patient", "id": "p"}, False),
    ],
)
def test_a_trigger_judges_the_change(topic, before, after, fires):
    assert TOPICS[topic].trigger(before, after) is fires


def test_facts_survive_the_feed():
    assert facts_of(BOOKED) == KEPT and KEPT.status == "booked" and KEPT.placing
    assert Facts(None, None) == LEGACY
