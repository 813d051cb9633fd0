"""Bulk data export over HTTP, as a Bulk Data client does it, against both sandboxes: kick
off, poll the status URL, read the manifest, download each file with the token."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from bulk import ASYNC, LEYR, NYRA, Deployment, Served, download, finish, held, kick_off, total
from services import REDIS_URL, forget, namespace, needs_redis


@pytest.fixture
def deployment(tmp_path):
    return Deployment(tmp_path)


@pytest.fixture
def served(deployment):
    serving = Served(deployment.app())
    yield serving
    serving.stop()


def test_a_system_export_holds_every_resource_once(deployment, served):
    auth = deployment.token(served.app, "full")
    manifest = finish(served, auth, kick_off(served, auth))
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"].endswith("/fhir/$export")
    assert datetime.fromisoformat(manifest["transactionTime"].replace("Z", "+00:00"))
    assert manifest["error"] == []
    resources = download(served, auth, manifest)
    for resource_type in ("Patient", "Appointment"):
        ids = [r["id"] for r in resources[resource_type]]
        assert len(ids) == len(set(ids)), "a resource exported twice"
        assert len(ids) == held(deployment, resource_type) == total(served, auth, resource_type)
        for source in (LEYR, NYRA):
            mine = [i for i in ids if i.startswith(source)]
            assert len(mine) == held(deployment, resource_type, source)
    # Files are split past [export] file_max_records, each named by type and source.
    assert all(item["count"] <= 7 for item in manifest["output"])
    assert len(manifest["output"]) > 4
    # The files need the token, and are the asking client's alone.
    first = manifest["output"][0]["url"]
    assert served.http.get(first).status_code == 401
    other = deployment.token(served.app, "other")
    assert served.http.get(first, headers=other).status_code == 404
    status_url = manifest["output"][0]["url"]
    assert served.http.get(status_url, headers=other).json()["resourceType"] == "OperationOutcome"


def test_the_status_is_the_asking_clients_alone(deployment, served):
    auth = deployment.token(served.app, "full")
    status_url = kick_off(served, auth, _type="Patient")
    other = deployment.token(served.app, "other")
    r = served.http.get(status_url, headers=other)
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    finish(served, auth, status_url)
    assert served.http.get(status_url, headers=other).status_code == 404


def test_since_holds_exactly_what_changed(deployment, served):
    auth = deployment.token(served.app, "full")
    first_manifest = finish(served, auth, kick_off(served, auth))
    first = download(served, auth, first_manifest)
    since = first_manifest["transactionTime"]
    created = set()
    for source, phone in ((LEYR, "+46701234567"), (NYRA, "+919812345678")):
        body = {
            "resourceType": "Patient",
            "meta": {"source": source},
            "name": [{"given": ["Asha"], "family": "Verma"}],
            "telecom": [{"system": "phone", "value": phone}],
            "gender": "female",
            "birthDate": "1991-02-03",
        }
        if source == LEYR:
            body["identifier"] = [
                {"system": "urn:oid:1.2.752.129.2.1.3.1", "value": "199102032383"}
            ]
        r = served.http.post(
            "/Patient",
            content=orjson.dumps(body),
            headers={**auth, "content-type": "application/fhir+json"},
        )
        assert r.status_code == 201, r.text
        created.add(r.json()["id"])
    manifest = finish(served, auth, kick_off(served, auth, _since=since))
    assert "_since=" in manifest["request"]
    changed = download(served, auth, manifest)
    moment = datetime.fromisoformat(since.replace("Z", "+00:00"))

    def after(resource: dict[str, Any]) -> bool:
        stamp = resource.get("meta", {}).get("lastUpdated")
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        if resource["id"].startswith(NYRA) and when.microsecond == 0:
            when += timedelta(seconds=1)  # Nyra's times are whole seconds: any moment of it
        return when > moment

    # The new patients, and what the vendors themselves say changed after it (Nyra's
    # seeded times run up to two days ahead); what only the journal dates (every Leyr
    # record) was first seen by the first export, at its transactionTime.
    expected = {r["id"] for rs in first.values() for r in rs if after(r)} | created
    got = [r["id"] for rs in changed.values() for r in rs]
    assert len(got) == len(set(got))
    assert set(got) == expected
    assert created <= {r["id"] for r in changed["Patient"]}


def test_cancel_then_the_status_is_gone(deployment, served):
    auth = deployment.token(served.app, "full")
    status_url = kick_off(served, auth)
    r = served.http.delete(status_url, headers=auth)
    assert r.status_code == 202
    r = served.http.get(status_url, headers=auth)
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    assert served.http.delete(status_url, headers=auth).status_code == 404


def test_finished_jobs_expire_with_their_files(deployment, served, tmp_path):
    auth = deployment.token(served.app, "full")
    runner = served.app.state.exports
    now = [time.time()]
    runner.clock = lambda: now[0]
    status_url = kick_off(served, auth, _type="Patient")
    manifest = finish(served, auth, status_url)
    job_id = status_url.rsplit("/", 1)[1]
    assert (tmp_path / "files" / job_id).is_dir()
    now[0] += 23 * 3600
    assert served.http.get(status_url, headers=auth).status_code == 200
    now[0] += 2 * 3600
    assert served.http.get(status_url, headers=auth).status_code == 404
    assert served.http.get(manifest["output"][0]["url"], headers=auth).status_code == 404
    assert not (tmp_path / "files" / job_id).exists()


def test_exporting_needs_read_scope_for_each_type(deployment, served):
    """A _type naming a type the token may not read is refused; without _type, the export
    holds the types it may read."""
    auth = deployment.token(served.app, "patients")
    for params in ({"_type": "Appointment"}, {"_type": "Patient,Appointment"}):
        r = served.http.get("/$export", params=params, headers={**ASYNC, **auth})
        assert r.status_code == 403, params
        assert r.json()["issue"] == [
            {
                "severity": "error",
                "code": "forbidden",
                "diagnostics": "the token's scopes do not allow read of Appointment",
            }
        ]
    manifest = finish(served, auth, kick_off(served, auth, "/Patient/$export", _type="Patient"))
    assert {item["type"] for item in manifest["output"]} == {"Patient"}
    manifest = finish(served, auth, kick_off(served, auth, "/$export"))
    assert {item["type"] for item in manifest["output"]} == {"Patient"}


def test_a_client_exports_only_its_own_sources(deployment, served):
    auth = deployment.token(served.app, "nyra-only")
    resources = download(served, auth, finish(served, auth, kick_off(served, auth)))
    ids = [r["id"] for rs in resources.values() for r in rs]
    assert ids and all(i.startswith(NYRA) for i in ids)
    r = served.http.get(f"/Group/{LEYR}/$export", headers={**ASYNC, **auth})
    assert r.status_code == 404
    manifest = finish(served, auth, kick_off(served, auth, f"/Group/{NYRA}/$export"))
    assert {item["type"] for item in manifest["output"]} == {"Patient", "Appointment"}


def test_a_group_is_one_source(deployment, served):
    auth = deployment.token(served.app, "full")
    manifest = finish(served, auth, kick_off(served, auth, f"/Group/{LEYR}/$export"))
    resources = download(served, auth, manifest)
    assert len(resources["Patient"]) == held(deployment, "Patient", LEYR)
    assert all(r["id"].startswith(LEYR) for rs in resources.values() for r in rs)


def test_kick_off_refusals_are_operation_outcomes(deployment, served):
    auth = deployment.token(served.app, "full")
    cases = [
        ({}, {"Accept": "application/fhir+json"}),  # no Prefer: respond-async
        ({"_outputFormat": "application/fhir+json"}, ASYNC),
        ({"_type": "Slot"}, ASYNC),
        ({"_type": "Nothing"}, ASYNC),
        ({"_typeFilter": "Patient?colour=blue"}, ASYNC),
        ({"colour": "blue"}, ASYNC),
        ({"_since": "yesterday"}, ASYNC),
    ]
    for params, headers in cases:
        r = served.http.get("/$export", params=params, headers={**headers, **auth})
        assert r.status_code == 400, params
        assert r.json()["resourceType"] == "OperationOutcome"
    lenient = {**ASYNC, "Prefer": "respond-async, handling=lenient"}
    r = served.http.get(
        "/$export",
        params={"colour": "blue", "_outputFormat": "ndjson"},
        headers={**lenient, **auth},
    )
    assert r.status_code == 202
    # The POST form: a Parameters body.
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "_type", "valueString": "Appointment"}],
    }
    r = served.http.post(
        "/$export",
        content=orjson.dumps(body),
        headers={**ASYNC, **auth, "content-type": "application/fhir+json"},
    )
    assert r.status_code == 202
    manifest = finish(served, auth, r.headers["content-location"])
    assert {item["type"] for item in manifest["output"]} == {"Appointment"}
    assert served.http.get("/$export").status_code == 401


def test_the_capability_statement_advertises_export(served):
    statement = served.http.get("/metadata").json()
    rest = statement["rest"][0]
    export = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
    assert [o["definition"] for o in rest["operation"] if o["name"] == "export"] == [export]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert "export" in [o["name"] for o in patient["operation"]]
    for resource in rest["resource"]:
        if resource["type"] == "Group":
            assert "export" in [o["name"] for o in resource["operation"]]


def test_a_job_resumes_in_a_new_app_without_duplicates(deployment):
    first = deployment.app()
    connector = first.state.facade.connectors[NYRA]
    search = connector.search
    calls = Counter[str]()
    gate = threading.Event()

    async def slow(request, cursor=None):
        calls[request.resource_type] += 1
        if calls["Patient"] > 2 or calls["Appointment"]:
            gate.set()
            await asyncio.Event().wait()  # held until the app stops
        return await search(request, cursor)

    connector.search = slow
    serving = Served(first)
    auth = deployment.token(first, "full")
    status_url = kick_off(serving, auth, f"/Group/{NYRA}/$export")
    assert gate.wait(30)
    r = serving.http.get(status_url, headers=auth)
    assert r.status_code == 202
    assert r.headers["x-progress"].startswith("10 resources")
    serving.stop()  # mid-job

    second = deployment.app()
    serving = Served(second)
    try:
        auth = deployment.token(second, "full")
        job = status_url.rsplit("/", 1)[1]
        manifest = finish(serving, auth, f"{serving.base}/$export-poll/{job}")
        resources = download(serving, auth, manifest)
        for resource_type in ("Patient", "Appointment"):
            ids = [r["id"] for r in resources[resource_type]]
            assert len(ids) == len(set(ids))
            assert len(ids) == held(deployment, resource_type, NYRA)
    finally:
        serving.stop()


@needs_redis
def test_with_redis_any_app_answers_the_status_and_one_runs_the_job(tmp_path):
    prefix = namespace()
    deployment = Deployment(tmp_path)
    deployment.settings = dataclasses.replace(
        deployment.settings, redis_url=REDIS_URL, redis_prefix=prefix
    )
    one, two = Served(deployment.app()), Served(deployment.app())
    try:
        auth = deployment.token(one.app, "full")
        status_url = kick_off(one, auth, f"/Group/{LEYR}/$export")
        job = status_url.rsplit("/", 1)[1]
        # The other app (another process, as far as the store knows) answers too.
        manifest = finish(two, auth, f"{two.base}/$export-poll/{job}")
        resources = download(two, auth, manifest)
        ids = [r["id"] for rs in resources.values() for r in rs]
        assert len(ids) == len(set(ids))
        assert len(resources["Patient"]) == held(deployment, "Patient", LEYR)
        assert job not in two.app.state.exports.running
    finally:
        one.stop()
        two.stop()
        forget(prefix)
