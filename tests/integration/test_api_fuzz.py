"""Schemathesis over the committed OpenAPI document, against the app in process.

The app is the embedded default (a Leyr and a Nyra sandbox, Nyra's rate windows scaled
down so that a few hundred requests take no minutes), with a client that holds every
scope, so generated requests get past the token to search, read and write. Every check
schemathesis has runs on every answer: no 5xx, every status, media type, header and body
as the document says, 405 with ``Allow`` for a method a path does not take, the token
enforced, and the rest. The cases are a fixed number per operation and phase, drawn from a
fixed seed: the same requests on every run and machine. The writes' bodies are shaped as
the document's schemas of the resources say (``PatientWrite``, ``AppointmentWrite``,
``SubscriptionWrite``), so they reach the validation and the mappings behind it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from harness import FAST
from hypothesis import HealthCheck, settings

from adapter.app import create_app
from adapter.auth.clients import load_clients
from adapter.settings import load_settings

DOCUMENT = Path(__file__).parents[2] / "openapi" / "openapi.json"
EXAMPLES = 100  # per operation, in the fuzzing phase; the coverage phase adds its own
SEED = 20240501
# What a request the document's schemas allow may still be answered. The document cannot
# say what makes a valid FHIR resource or search (a body's resourceType must be the path's,
# a Slot search must name a practitioner, a Patient needs a name the vendor takes): those
# are 400 and 422 OperationOutcomes naming the element. Any other status for a
# schema-valid request (a 406, 408, 413, 415, ...) is a failure, and so is every 5xx: the
# sandboxes answer, and Nyra's scaled windows leave budget for every request (a 503 or
# 504 with Retry-After is right only when a vendor is unavailable, which none is here).
ACCEPTED = ["2xx", "3xx", "400", "401", "403", "404", "405", "409", "412", "422", "429"]
# The writes, whose bodies are typed as the R4 resources (adapter/api/bodies.py): the
# coverage phase would send every case their schemas define (some 30,000 each, minutes),
# so they get the fuzzing phase's cases alone (the 405s of their paths come from the
# other operations of the same paths), fewer of them: a body of a resource takes about
# half a second to generate, where a search's parameters take a few milliseconds.
WRITE_EXAMPLES = 25
TYPED_BODIES = [
    "POST /fhir/{resource_type}",
    "PUT /fhir/{resource_type}/{fhir_id}",
    "POST /fhir/Subscription",
    "PUT /fhir/Subscription/{subscription_id}",
]
GENERATION = {"deterministic": True, "database": "none"}  # the same cases on every run
CASES: Counter[str] = Counter()  # operation -> cases sent (reported with -s)


def fuzz_app() -> tuple[Any, str]:
    """The app, and a bearer token of a client that may do anything, as often as it
    likes."""
    settings = load_settings(env={})
    sources = {
        name: {**source, "rate_limit": dataclasses.asdict(FAST)}
        if source["connector"] == "nyra"
        else dict(source)
        for name, source in settings.sources.items()
    }
    everything = {
        "secret": "fuzz-client-secret-0123456789",
        "scopes": ["system/*.cruds"],
        "rate_limit": {"per_minute": 1_000_000},
    }
    clients = load_clients({"fuzz": everything}, list(sources))
    settings = dataclasses.replace(
        settings,
        sources=sources,
        clients=clients,
        token_minutes=60,
        trusted_hosts=("testserver",),  # schemathesis's Host: the check is on
    )
    app = create_app(settings)
    client = clients["fuzz"]
    token, _ = app.state.tokens.issue(client, dict(client.scopes))
    return app, token


# Loaded when the tests are collected (one test per operation); the app is made once, by
# the fixture, when they run.
schema = schemathesis.openapi.from_path(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {**GENERATION, "max-examples": EXAMPLES},
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
            "operations": [
                {
                    "include-name": TYPED_BODIES,
                    "phases": {"coverage": {"enabled": False}},
                    "generation": {**GENERATION, "max-examples": WRITE_EXAMPLES},
                }
            ],
        }
    ),
)


@pytest.fixture(scope="module")
def served():
    yield fuzz_app()
    # Seen with `pytest -s`: how many requests each operation was sent.
    print(f"\nschemathesis: {sum(CASES.values())} cases", dict(sorted(CASES.items())))


# The typed write bodies are whole resources: some drawn examples are large by nature,
# and hypothesis's size health check would stop the run instead of sending them.
@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_every_answer_is_as_documented(case, served):
    app, token = served
    CASES[f"{case.method} {case.path}"] += 1
    case.call_and_validate(app=app, headers={"Authorization": f"Bearer {token}"})
