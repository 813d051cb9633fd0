"""The schemas of the write bodies in the OpenAPI document (:mod:`adapter.api.bodies`) say
what the service takes: every R4 element of the type and no other, typed as R4 types it,
without a cycle; the resources the mappings' golden files hold are valid by them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from fhir.resources.R4B import get_fhir_model_class

from adapter.api.bodies import body_name, write_schemas
from adapter.fhir.validation import fhir_problems

DOCUMENT = json.loads(
    (Path(__file__).parents[2] / "openapi" / "openapi.json").read_text(encoding="utf-8")
)
SCHEMAS = DOCUMENT["components"]["schemas"]
WRITTEN = ("Appointment", "Patient", "Subscription")
GOLDEN = Path(__file__).parents[1] / "data" / "mappings"


def validator(resource_type: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{body_name(resource_type)}", **DOCUMENT}
    return jsonschema.Draft202012Validator(schema)


def test_the_document_holds_the_schemas_as_made():
    made = write_schemas(["Appointment", "Patient"])
    assert {name: SCHEMAS[name] for name in made} == made
    assert set(write_schemas(["Subscription"])) <= set(SCHEMAS)


@pytest.mark.parametrize("resource_type", WRITTEN)
def test_every_r4_element_is_named_and_no_other(resource_type):
    model = get_fhir_model_class(resource_type)
    elements = {
        field.alias or name for name, field in model.model_fields.items() if name != "fhir_comments"
    }
    schema = SCHEMAS[body_name(resource_type)]
    assert set(schema["properties"]) == elements | {"resourceType"}
    assert schema["additionalProperties"] is False
    assert schema["properties"]["resourceType"] == {"const": resource_type}


def test_the_schemas_hold_no_cycle():
    def refs(node: object) -> set[str]:
        if isinstance(node, dict):
            found = {node["$ref"].rsplit("/", 1)[1]} if "$ref" in node else set()
            return found.union(*(refs(v) for v in node.values()))
        if isinstance(node, list):
            return set().union(*(refs(v) for v in node))
        return set()

    made = write_schemas(WRITTEN)
    graph = {name: refs(schema) for name, schema in made.items()}

    def reaches(start: str, seen: tuple[str, ...]) -> None:
        for name in graph[start]:
            assert name not in seen, f"{' -> '.join(seen)} -> {name}"
            reaches(name, (*seen, name))

    for name in graph:
        reaches(name, (name,))


@pytest.mark.parametrize(
    "path",
    sorted(GOLDEN.glob("*/patient/*.fhir.json")) + sorted(GOLDEN.glob("*/appointment/*.fhir.json")),
    ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}",
)
def test_the_mapped_resources_are_valid_bodies(path):
    resource = json.loads(path.read_text(encoding="utf-8"))
    assert fhir_problems(resource["resourceType"], resource) == []  # valid R4 as sent
    errors = [e.message for e in validator(resource["resourceType"]).iter_errors(resource)]
    assert errors == []


@pytest.mark.parametrize(
    "resource_type,body,where",
    [
        ("Patient", {"resourceType": "Patient", "nickname": "x"}, "nickname"),
        ("Patient", {"resourceType": "Patient", "birthDate": "1990-13-01"}, "birthDate"),
        ("Patient", {"resourceType": "Patient", "gender": "f"}, "gender"),
        ("Patient", {"resourceType": "Patient", "active": "yes"}, "active"),
        ("Patient", {"resourceType": "Patient", "name": [{"given": "Ann"}]}, "name"),
        ("Patient", {"resourceType": "Patient", "id": "a_b"}, "id"),
        ("Patient", {"resourceType": "Patient", "name": [{"family": "A\u0001"}]}, "name"),
        ("Appointment", {"resourceType": "Appointment", "participant": []}, "status"),
        (
            "Appointment",
            {
                "resourceType": "Appointment",
                "status": "booked",
                "participant": [{"status": "accepted"}],
                "start": "2026-01-05T09:00:00",  # an instant has its zone
            },
            "start",
        ),
    ],
)
def test_what_the_schemas_refuse_the_service_refuses(resource_type, body, where):
    assert not validator(resource_type).is_valid(body)
    assert fhir_problems(resource_type, body) != []


def test_a_subscription_need_not_say_its_status():
    body = {
        "resourceType": "Subscription",
        "reason": "appointments changed",
        "criteria": "Appointment?status=booked",
        "channel": {"type": "rest-hook", "endpoint": "https://example.org/hook"},
    }
    assert validator("Subscription").is_valid(body)
