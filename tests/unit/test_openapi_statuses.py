"""What the OpenAPI document says of each route is what the routes do: the resource types
they serve, every status they can answer (with the headers that come with it), and for
each path the methods its 405 names in ``Allow``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import httpx
import pytest

from adapter.app import create_app
from adapter.settings import load_settings

pytestmark = pytest.mark.anyio

DOCUMENT = json.loads(
    (Path(__file__).parents[2] / "openapi" / "openapi.json").read_text(encoding="utf-8")
)
OPERATIONS = [
    (path, method, operation)
    for path, operations in DOCUMENT["paths"].items()
    for method, operation in operations.items()
]
GUARDED = {400, 405, 414, 431, 500}
TOKEN = {401, 403, 429}
SOURCES = {404, 406, 502, 503, 504}
BODY = {408, 413}
EXPECTED = {
    ("/fhir/metadata", "get"): GUARDED | {406},
    ("/fhir/{resource_type}", "get"): GUARDED | TOKEN | SOURCES,
    ("/fhir/{resource_type}", "post"): GUARDED | TOKEN | SOURCES | BODY | {409, 412, 415, 422},
    ("/fhir/{resource_type}/_search", "post"): GUARDED | TOKEN | SOURCES | BODY | {415},
    ("/fhir/{resource_type}/{fhir_id}", "get"): GUARDED | TOKEN | SOURCES,
    ("/fhir/{resource_type}/{fhir_id}", "put"): GUARDED
    | TOKEN
    | SOURCES
    | BODY
    | {409, 412, 415, 422, 428},
    ("/auth/token", "post"): GUARDED | BODY | {401, 404, 429},
    ("/.well-known/smart-configuration", "get"): GUARDED,
    ("/fhir/.well-known/smart-configuration", "get"): GUARDED,
    # The code tables: behind a token, but no source behind them.
    ("/fhir/ConceptMap", "get"): GUARDED | TOKEN | {406},
    ("/fhir/ConceptMap/_search", "post"): GUARDED | TOKEN | BODY | {406, 415},
    ("/fhir/ConceptMap/$translate", "get"): GUARDED | TOKEN | {406},
    ("/fhir/ConceptMap/$translate", "post"): GUARDED | TOKEN | BODY | {406, 415},
    ("/fhir/ConceptMap/{fhir_id}", "get"): GUARDED | TOKEN | {404, 406},
    ("/fhir/SubscriptionTopic/{name}", "get"): GUARDED | TOKEN | {404, 406},
    ("/fhir/Basic/{name}", "get"): GUARDED | TOKEN | {404, 406},
    # Basic is read by id, never searched: 400 naming it.
    ("/fhir/Basic", "get"): GUARDED | TOKEN | {406},
    ("/fhir/Basic/_search", "post"): GUARDED | TOKEN | BODY | {406, 415},
    ("/fhir/ConceptMap/{fhir_id}/$translate", "get"): GUARDED | TOKEN | {404, 406},
    ("/fhir/ConceptMap/{fhir_id}/$translate", "post"): GUARDED | TOKEN | BODY | {404, 406, 415},
    # Bulk data export: behind a token; no source is asked while answering.
    **{
        (path, method): GUARDED | TOKEN | {404, 406}
        for path in ("/fhir/$export", "/fhir/Patient/$export", "/fhir/Group/{group_id}/$export")
        for method in ("get", "post")
    },
    ("/fhir/$export-poll/{job_id}", "get"): GUARDED | TOKEN | {404, 406},
    ("/fhir/$export-poll/{job_id}", "delete"): GUARDED | TOKEN | {404, 406},
    ("/fhir/$export-file/{job_id}/{name}", "get"): GUARDED | TOKEN | {404, 406},
    # One Group per source: a source that fails leaves out a quantity, not the Group.
    ("/fhir/Group", "get"): GUARDED | TOKEN | {406, 503},
    ("/fhir/Group/_search", "post"): GUARDED | TOKEN | BODY | {406, 415, 503},
    ("/fhir/Group/{group_id}", "get"): GUARDED | TOKEN | {404, 406, 503},
    # Subscriptions are kept by the service itself: no source is asked.
    ("/fhir/Subscription", "get"): GUARDED | TOKEN | {406},
    ("/fhir/Subscription/_search", "post"): GUARDED | TOKEN | BODY | {406, 415},
    ("/fhir/Subscription", "post"): GUARDED | TOKEN | BODY | {406, 422},
    ("/fhir/Subscription/{subscription_id}", "get"): GUARDED | TOKEN | {404, 406},
    ("/fhir/Subscription/{subscription_id}", "delete"): GUARDED | TOKEN | {404, 406},
    ("/fhir/Subscription/{subscription_id}", "put"): GUARDED | TOKEN | BODY | {404, 406, 409, 422},
    ("/fhir/Subscription/{subscription_id}/$status", "get"): GUARDED | TOKEN | {404, 406},
    ("/fhir/Subscription/{subscription_id}/$events", "get"): GUARDED | TOKEN | {404, 406},
    ("/fhir/Patient/$everything", "get"): GUARDED | TOKEN | SOURCES,
    ("/fhir/Patient/{fhir_id}/$everything", "get"): GUARDED | TOKEN | SOURCES,
}


@pytest.fixture(scope="module")
def app():
    return create_app(load_settings(env={}))


def test_every_operation_is_described():
    assert {(path, method) for path, method, _ in OPERATIONS} == set(EXPECTED)


@pytest.mark.parametrize("path,method,operation", OPERATIONS)
def test_every_status_a_route_can_answer_is_documented(path, method, operation):
    errors = {int(code) for code in operation["responses"] if int(code) >= 400}
    assert errors == EXPECTED[(path, method)]
    allow = operation["responses"]["405"]["headers"]["Allow"]
    assert allow["required"] is True
    for code, response in operation["responses"].items():
        if int(code) >= 400 and path != "/auth/token":
            for media in ("application/fhir+json", "application/json"):
                schema = response["content"][media]["schema"]
                assert schema == {"$ref": "#/components/schemas/OperationOutcome"}


def test_the_resource_types_are_those_served(app):
    """Reads and searches name every type served; a create or an update, the types some
    source writes so (another is a 405), whose bodies' schemas it names."""
    declared = app.state.facade.declared
    served = sorted(declared.types)
    named = {
        (path, method): parameter["schema"]["enum"]
        for path, method, operation in OPERATIONS
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "resource_type"
    }
    assert named == {
        ("/fhir/{resource_type}", "get"): served,
        ("/fhir/{resource_type}/_search", "post"): served,
        ("/fhir/{resource_type}/{fhir_id}", "get"): served,
        ("/fhir/{resource_type}", "post"): ["Appointment", "Patient"],
        ("/fhir/{resource_type}/{fhir_id}", "put"): ["Appointment"],
    }
    assert [t for t in served if declared.writable(t, "create")] == ["Appointment", "Patient"]
    assert [t for t in served if declared.writable(t, "update")] == ["Appointment"]
    for path, method, written in (
        ("/fhir/{resource_type}", "post", ["Appointment", "Patient"]),
        ("/fhir/{resource_type}/{fhir_id}", "put", ["Appointment"]),
        ("/fhir/Subscription", "post", ["Subscription"]),
        ("/fhir/Subscription/{subscription_id}", "put", ["Subscription"]),
    ):
        content = DOCUMENT["paths"][path][method]["requestBody"]["content"]
        schema = content["application/fhir+json"]["schema"]
        assert content["application/json"]["schema"] == schema
        refs = [schema] if "$ref" in schema else schema["oneOf"]
        assert refs == [{"$ref": f"#/components/schemas/{t}Write"} for t in written]


def test_the_routes_that_need_a_token_say_so():
    for path, method, operation in OPERATIONS:
        needs = path.startswith(
            (
                "/fhir/{resource_type}",
                "/fhir/ConceptMap",
                "/fhir/Group",
                "/fhir/Patient/",
                "/fhir/Subscription",
                "/fhir/Basic",
            )
        ) or any(op in path for op in ("$export", "$everything"))
        assert ("security" in operation) == needs, (path, method)
    flows = DOCUMENT["components"]["securitySchemes"]["smart"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "/auth/token"


@pytest.mark.parametrize("path", sorted(DOCUMENT["paths"]))
async def test_a_405_allows_what_the_document_lists_for_the_path(app, path):
    documented = {method.upper() for method in DOCUMENT["paths"][path]}
    if "GET" in documented and path.startswith("/fhir/"):
        documented.add("HEAD")  # the FHIR routes answer HEAD wherever GET
    concrete = path.replace("{resource_type}", "Patient").replace("{fhir_id}", "leyr-sandbox.x")
    # The guard answers before any route: a configuration without a token to ask for.
    settings = dataclasses.replace(load_settings(env={}), open_access=True, clients={})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(settings)), base_url="http://localhost"
    ) as c:
        r = await c.request("TRACE", concrete)
    assert r.status_code == 405
    assert set(r.headers["allow"].split(", ")) == documented
