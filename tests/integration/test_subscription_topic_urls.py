"""Each topic's canonical URL resolves through the service: the URL the
CapabilityStatement lists (and a topic-based Subscription names) answers the topic as
R4 holds it, a ``Basic`` carrying the R5 SubscriptionTopic's elements as the backport
IG's R4 examples do; ``Basic/{name}`` answers the same, and the CapabilityStatement says
so (Basic: read, nothing else)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fhir.resources.R4B.basic import Basic
from subscribing import World, serving

BASE = "https://fhir.example.org/fhir"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
XVER = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
APPOINTMENT = "http://hl7.org/fhir/StructureDefinition/Appointment"
PATIENT = "http://hl7.org/fhir/StructureDefinition/Patient"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def http(world: World) -> Iterator[httpx.Client]:
    with serving(world) as client:
        yield client


def _listed(http: httpx.Client) -> list[str]:
    statement = http.get("/metadata").json()
    [kept] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription"]
    return [e["valueCanonical"] for e in kept["extension"]]


def _one(resource: dict, name: str) -> object:
    [value] = [
        next(v for k, v in e.items() if k.startswith("value"))
        for e in resource["extension"]
        if e["url"] == XVER + name
    ]
    return value


def _filters(resource: dict) -> list[str]:
    return [
        part["valueString"]
        for e in resource["extension"]
        if e["url"] == XVER + "canFilterBy"
        for part in e["extension"]
        if part["url"] == "filterParameter"
    ]


def test_every_listed_topic_url_answers_its_topic(http):
    listed = _listed(http)
    assert len(listed) == 6
    for url in listed:
        assert url.startswith(f"{BASE}/SubscriptionTopic/")
        name = url.rsplit("/", 1)[1]
        answer = http.get(url.removeprefix(BASE))
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/fhir+json")
        topic = answer.json()
        Basic.model_validate(topic)
        assert topic["resourceType"] == "Basic" and topic["id"] == name
        assert topic["code"] == {
            "coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]
        }
        assert _one(topic, "url") == url
        assert _one(topic, "name") == name
        assert _one(topic, "status") == "active"
        assert http.get(f"/Basic/{name}").json() == topic


def test_a_topic_says_what_it_is_about_and_the_filters_it_takes(http):
    booked = http.get("/SubscriptionTopic/appointment-booked").json()
    [trigger] = [e for e in booked["extension"] if e["url"] == XVER + "resourceTrigger"]
    assert trigger["extension"][1:] == [
        {"url": "resource", "valueUri": APPOINTMENT},
        {"url": "supportedInteraction", "valueCode": "create"},
        {"url": "supportedInteraction", "valueCode": "update"},
    ]
    assert _filters(booked) == ["patient", "practitioner", "location", "status", "_source"]
    created = http.get("/SubscriptionTopic/patient-created").json()
    [trigger] = [e for e in created["extension"] if e["url"] == XVER + "resourceTrigger"]
    assert trigger["extension"][1:] == [
        {"url": "resource", "valueUri": PATIENT},
        {"url": "supportedInteraction", "valueCode": "create"},
    ]
    assert _filters(created) == ["_source"]
    [shape] = [e for e in created["extension"] if e["url"] == XVER + "notificationShape"]
    assert shape["extension"] == [{"url": "resource", "valueUri": PATIENT}]


@pytest.mark.parametrize("path", ["/SubscriptionTopic/no-such-topic", "/Basic/no-such-topic"])
def test_an_unknown_topic_is_a_404(http, path):
    answer = http.get(path)
    assert answer.status_code == 404
    assert answer.json() == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "not-found",
                "diagnostics": "no topic of this server's has this name",
            }
        ],
    }


def test_the_capability_statement_offers_basic_read_alone(http):
    statement = http.get("/metadata").json()
    [basic] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Basic"]
    assert basic["interaction"] == [{"code": "read"}]
    assert "searchParam" not in basic


def test_a_topic_is_read_with_the_subscription_scopes(world, http):
    """A client that may read Subscriptions reads the topics at their canonical URLs;
    as Basic they need Basic's read scope."""
    reader = world.auth("reader")
    answer = http.get("/SubscriptionTopic/patient-changed", headers=reader)
    assert answer.status_code == 200
    assert answer.json()["id"] == "patient-changed"
    refused = http.get("/Basic/patient-changed", headers=reader)
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"
