"""Every kind of answer keeps R4's invariants, as an independent FHIRPath engine judges
them (:mod:`fhir_invariants`): search pages with their includes, reads of every type,
``$everything``, the code tables and ``$translate``, Groups, errors, the
CapabilityStatement, export lines and a notification's history Bundle."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from bulk import Deployment, Served, download, finish, kick_off
from fhir_invariants import NOT_EVALUATED, constraints_of, violations

from adapter.subscriptions.poller import history_bundle

JSON = {"content-type": "application/fhir+json"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    deployment = Deployment(tmp_path_factory.mktemp("invariants"))
    serving = Served(deployment.app())
    serving.auth = deployment.token(serving.app, "full")
    yield serving
    serving.stop()


def _answers(served: Served) -> list[tuple[str, Any]]:
    """(what, body) of every kind of answer the service gives."""
    auth = served.auth
    http = served.http
    out: list[tuple[str, Any]] = []

    def get(path: str, **params: str) -> Any:
        r = http.get(path, params=params, headers=auth)
        out.append((f"GET {path} {params} -> {r.status_code}", r.json()))
        return r.json()

    statement = get("/metadata")
    for resource in statement["rest"][0]["resource"]:
        kind = resource["type"]
        if kind == "Subscription":
            continue
        params = {"_count": "3"}
        if kind == "Slot":
            params["start"] = "ge2026-01-01"
        page = get(f"/{kind}", **params)
        for value in resource.get("searchInclude", []):
            get(f"/{kind}", **params, _include=value)
        for value in resource.get("searchRevInclude", []):
            get(f"/{kind}", **params, _revinclude=value)
        matches = [e["resource"] for e in page.get("entry", []) if e["search"]["mode"] == "match"]
        if matches:
            get(f"/{kind}/{matches[0]['id']}")
    patient = get("/Patient", _count="1")["entry"][0]["resource"]["id"]
    get(f"/Patient/{patient}/$everything")
    get("/Patient/$everything", _count="2")
    tables = get("/ConceptMap")
    first = tables["entry"][0]["resource"]
    get(f"/ConceptMap/{first['id']}")
    element = first["group"][0]
    code = element["element"][0]["code"]
    get("/ConceptMap/$translate", system=element["source"], code=code)
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "system", "valueUri": element["source"]},
            {"name": "code", "valueCode": code},
        ],
    }
    r = http.post("/ConceptMap/$translate", json=parameters, headers={**auth, **JSON})
    out.append(("POST $translate", r.json()))
    get("/Group")
    get("/Group/leyr-x")
    # Errors: unknown id, a bad parameter, a refused write, a format, a forbidden path.
    get("/Patient/nyra-x.nobody")
    get("/Patient", birthdate="yesterday")
    r = http.post(
        "/Patient", json={"resourceType": "Patient", "gender": "f"}, headers={**auth, **JSON}
    )
    out.append(("POST Patient (invalid)", r.json()))
    get("/Patient", _format="xml")
    # Export lines.
    manifest = finish(served, auth, kick_off(served, auth))
    for kind, lines in download(served, auth, manifest).items():
        out.extend((f"export line {kind}", line) for line in lines[:20])
    # A notification's history Bundle.
    resource = get(f"/Patient/{patient}")
    out.append(("notification", history_bundle([resource], "https://fhir.example.org/fhir", True)))
    return out


def test_every_kind_of_answer_keeps_r4s_invariants(served):
    answers = _answers(served)
    kinds = {body["resourceType"] for _, body in answers}
    assert {"Bundle", "OperationOutcome", "CapabilityStatement", "Parameters"} <= kinds
    broken = {what: found for what, body in answers if (found := violations(body))}
    assert broken == {}


def test_the_checker_finds_what_breaks_an_invariant():
    """The same engine over resources that break app-2, app-3, per-1 and bdl-7."""
    appointment = {
        "resourceType": "Appointment",
        "id": "a",
        "status": "booked",
        "start": "2026-03-02T09:00:00Z",
        "participant": [{"status": "accepted", "actor": {"reference": "Patient/p"}}],
        "requestedPeriod": [{"start": "2026-03-03", "end": "2026-03-02"}],
    }
    assert violations(appointment) == [
        "app-2 at Appointment (Appointment/a)",
        "app-3 at Appointment (Appointment/a)",
        "per-1 at Appointment.requestedPeriod (Appointment/a)",
    ]
    entry = {
        "fullUrl": "https://x.org/fhir/Patient/p",
        "resource": {"resourceType": "Patient", "id": "p"},
    }
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [entry, entry]}
    assert violations(bundle) == ["bdl-7 at Bundle (Bundle/?)"]


def test_what_is_not_evaluated_is_named():
    """The constraints left to other checks are these, each with its reason; the others of
    every type served are evaluated."""
    assert set(NOT_EVALUATED) == {"txt-1", "txt-2"}
    keys = {k for t in ("Appointment", "Bundle", "Period") for _, k, _ in constraints_of(t)}
    assert {"app-1", "app-2", "app-3", "bdl-7", "ele-1", "per-1"} <= keys
    assert orjson.dumps(NOT_EVALUATED)  # reasons are plain text
