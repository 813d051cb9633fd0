"""Bulk export onto object storage, as a Bulk Data client sees it, against both sandboxes
and an S3 service (moto, on a loopback port): kick off, poll, download (through the
service, or from pre-signed URLs), cancel; two apps that share Redis and the storage but
no directory; storage failures as OperationOutcomes that name no secret."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest
from bulk import LEYR, NYRA, Deployment, Served, download, finish, kick_off, total
from harness import FAST
from moto.server import ThreadedMotoServer
from objectstore import CREDENTIALS, moto_on_a_port
from services import REDIS_URL, forget, namespace, needs_redis
from workers import Facade, vendor_on_a_port

from adapter.sandbox import NyraSandbox

PREFIX = "bulk/exports"


@pytest.fixture(scope="module")
def s3():
    with moto_on_a_port() as service:
        yield service


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def on_storage(root: Path, s3, bucket: str, **export) -> Deployment:
    deployment = Deployment(root)
    settings = deployment.settings
    deployment.settings = dataclasses.replace(
        settings,
        export=dataclasses.replace(
            settings.export,
            storage=f"s3://{bucket}/{PREFIX}",
            endpoint_url=s3.endpoint,
            **export,
        ),
    )
    return deployment


def test_files_are_objects_downloaded_through_the_service(tmp_path, s3):
    bucket = s3.bucket()
    deployment = on_storage(tmp_path, s3, bucket)
    served = Served(deployment.app())
    try:
        auth = deployment.token(served.app, "full")
        status_url = kick_off(served, auth)
        job = status_url.rsplit("/", 1)[1]
        manifest = finish(served, auth, status_url)
        assert manifest["requiresAccessToken"] is True
        assert manifest["error"] == []
        resources = download(served, auth, manifest)
        for resource_type in ("Patient", "Appointment"):
            ids = [r["id"] for r in resources[resource_type]]
            assert len(ids) == len(set(ids)), "a resource exported twice"
            assert len(ids) == total(served, auth, resource_type)
        # Each file is one object under the prefix, and nothing is left half-uploaded.
        names = [item["url"].rsplit("/", 1)[1] for item in manifest["output"]]
        assert s3.keys(bucket) == sorted(f"{PREFIX}/{job}/{n}" for n in names)
        assert s3.uploads(bucket) == []
        assert not (tmp_path / "files").exists()
        # What the service serves is the object, byte for byte.
        first = manifest["output"][0]["url"]
        r = served.http.get(first, headers=auth)
        assert r.content == s3.read(bucket, f"{PREFIX}/{job}/{names[0]}")
        # Still the asking client's alone, and only with a token.
        assert served.http.get(first).status_code == 401
        other = deployment.token(served.app, "other")
        r = served.http.get(first, headers=other)
        assert r.status_code == 404
        assert r.json()["resourceType"] == "OperationOutcome"
        r = served.http.get(f"/$export-file/{job}/Patient.{LEYR}.999.ndjson", headers=auth)
        assert r.status_code == 404
    finally:
        served.stop()


def test_signed_urls_need_no_token_and_expire(tmp_path, s3):
    bucket = s3.bucket()
    deployment = on_storage(tmp_path, s3, bucket, signed_urls=True, signed_url_seconds=600)
    served = Served(deployment.app())
    try:
        auth = deployment.token(served.app, "full")
        manifest = finish(served, auth, kick_off(served, auth, "/Patient/$export"))
        assert manifest["requiresAccessToken"] is False
        counted = Counter[str]()
        with httpx.Client(timeout=30) as plain:  # no Authorization header
            for item in manifest["output"]:
                url = item["url"]
                assert url.startswith(f"{s3.endpoint}/{bucket}/{PREFIX}/")
                assert "X-Amz-Expires=600" in url
                assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in url
                r = plain.get(url)
                assert r.status_code == 200
                lines = [orjson.loads(line) for line in r.content.splitlines()]
                assert len(lines) == item["count"]
                counted[item["type"]] += len(lines)
        assert counted["Patient"] == total(served, auth, "Patient")
        assert counted["Appointment"] == total(served, auth, "Appointment")
    finally:
        served.stop()


def test_cancel_mid_job_deletes_its_objects_and_uploads(tmp_path, s3):
    bucket = s3.bucket()
    deployment = on_storage(tmp_path, s3, bucket)
    app = deployment.app()
    connector = app.state.facade.connectors[NYRA]
    search = connector.search
    calls = Counter[str]()
    reached = threading.Event()

    async def held(request, cursor=None):
        calls[request.resource_type] += 1
        if calls["Patient"] > 2:
            reached.set()
            await asyncio.Event().wait()  # held until the job is cancelled
        return await search(request, cursor)

    connector.search = held
    served = Served(app)
    try:
        auth = deployment.token(app, "full")
        status_url = kick_off(served, auth, f"/Group/{NYRA}/$export")
        job = status_url.rsplit("/", 1)[1]
        assert reached.wait(30)
        # Two pages of 5 Patients: a file of 7 (file_max_records), whole and so sealed
        # once a checkpoint said so, and one of 3, begun.
        assert s3.keys(bucket) == [f"{PREFIX}/{job}/Patient.{NYRA}.001.ndjson"]
        assert s3.uploads(bucket) == [f"{PREFIX}/{job}/Patient.{NYRA}.002.ndjson"]
        r = served.http.delete(status_url, headers=auth)
        assert r.status_code == 202
        r = served.http.get(status_url, headers=auth)
        assert r.status_code == 404
        assert r.json()["issue"][0]["code"] == "not-found"
        assert s3.uploads(bucket) == []
        assert s3.keys(bucket) == []
    finally:
        served.stop()


def test_cancel_after_the_job_deletes_its_files(tmp_path, s3):
    bucket = s3.bucket()
    deployment = on_storage(tmp_path, s3, bucket)
    served = Served(deployment.app())
    try:
        auth = deployment.token(served.app, "full")
        status_url = kick_off(served, auth, f"/Group/{LEYR}/$export")
        manifest = finish(served, auth, status_url)
        assert s3.keys(bucket) != []
        assert served.http.delete(status_url, headers=auth).status_code == 202
        assert s3.keys(bucket) == []
        r = served.http.get(manifest["output"][0]["url"], headers=auth)
        assert r.status_code == 404
    finally:
        served.stop()


def test_storage_failure_is_an_operation_outcome_without_secrets(tmp_path, s3):
    # A bucket that does not exist: the first upload is refused.
    deployment = on_storage(tmp_path, s3, "no-such-bucket-here")
    served = Served(deployment.app())
    try:
        auth = deployment.token(served.app, "full")
        status_url = kick_off(served, auth, f"/Group/{LEYR}/$export")
        for _ in range(3000):
            r = served.http.get(status_url, headers=auth)
            if r.status_code != 202:
                break
        assert r.status_code == 503
        assert r.json() == {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "transient",
                    "diagnostics": "the export failed, object storage: starting an upload "
                    "failed (NoSuchBucket); kick it off again",
                }
            ],
        }
        for secret in (*CREDENTIALS.values(), s3.endpoint, "no-such-bucket-here"):
            if secret != "us-east-1":
                assert secret not in r.text
    finally:
        served.stop()


@needs_redis
def test_two_apps_share_redis_and_storage_but_no_disk(tmp_path, s3):
    """A job kicked off on one is polled, downloaded and cancelled through the other,
    which has a directory of its own."""
    bucket = s3.bucket()
    prefix = namespace()
    apps = []
    for name in ("one", "two"):
        deployment = on_storage(tmp_path / name, s3, bucket)
        deployment.settings = dataclasses.replace(
            deployment.settings, redis_url=REDIS_URL, redis_prefix=prefix
        )
        apps.append((deployment, deployment.app()))
    one, two = Served(apps[0][1]), Served(apps[1][1])
    try:
        auth = apps[0][0].token(one.app, "full")
        status_url = kick_off(one, auth, "/Patient/$export")
        job = status_url.rsplit("/", 1)[1]
        manifest = finish(two, auth, f"{two.base}/$export-poll/{job}")
        # The files are the other app's to serve: they are on the storage.
        for item in manifest["output"]:
            assert item["url"].startswith(f"{two.base}/$export-file/{job}/")
        resources = download(two, auth, manifest)
        ids = [r["id"] for rs in resources.values() for r in rs]
        assert len(ids) == len(set(ids))
        assert len(resources["Patient"]) == total(two, auth, "Patient")
        assert job not in two.app.state.exports.running
        assert not (tmp_path / "two" / "files").exists()
        assert not (tmp_path / "one" / "files").exists()
        r = two.http.delete(f"{two.base}/$export-poll/{job}", headers=auth)
        assert r.status_code == 202
        assert one.http.get(status_url, headers=auth).status_code == 404
        assert s3.keys(bucket) == []
    finally:
        one.stop()
        two.stop()
        forget(prefix)


def _serve_config(
    source: str, base_url: str, sandbox, s3, bucket: str, folder: Path, prefix: str
) -> Path:
    keys = ", ".join(
        "{ " + ", ".join(f'{k} = "{v}"' for k, v in g.credentials().items()) + " }"
        for g in sandbox.api_keys()
    )
    folder.mkdir(parents=True)
    path = folder / "adapter.toml"
    path.write_text(f"""
[server]
open_access = true
redis_url = "{REDIS_URL}"
redis_prefix = "{prefix}"
shutdown_seconds = 1

[export]
dir = "{folder / "export"}"
storage = "s3://{bucket}/{PREFIX}"
endpoint_url = "{s3.endpoint}"

[sources.{source}]
connector = "nyra"
base_url = "{base_url}"
timezone = "Asia/Kolkata"
keys = [{keys}]
""")
    return path


@needs_redis
def test_two_service_processes_share_redis_and_storage_but_no_disk(tmp_path, s3):
    """``fhir-adapter serve`` twice, each with a directory of its own: a job kicked off on
    one is polled, downloaded and cancelled through the other."""
    bucket = s3.bucket()
    source = f"nyra-s{uuid.uuid4().hex[:8]}"
    sandbox = NyraSandbox(seed=4, patients=15, limits=FAST)
    prefix = namespace()
    with vendor_on_a_port(sandbox.app) as base_url:
        configs = [
            _serve_config(source, base_url, sandbox, s3, bucket, tmp_path / name, prefix)
            for name in ("one", "two")
        ]
        one, two = Facade(configs[0], 1), Facade(configs[1], 1)
        try:
            one.wait_until_started()
            two.wait_until_started()
            with httpx.Client(timeout=30) as http:
                r = http.get(
                    f"{one.base}/fhir/Group/{source}/$export",
                    headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
                )
                assert r.status_code == 202, r.text
                job = r.headers["content-location"].rsplit("/", 1)[1]
                status_url = f"{two.base}/fhir/$export-poll/{job}"
                for _ in range(3000):
                    r = http.get(status_url)
                    if r.status_code != 202:
                        break
                    time.sleep(0.01)
                assert r.status_code == 200, r.text
                manifest = r.json()
                ids = []
                for item in manifest["output"]:
                    assert item["url"].startswith(f"{two.base}/fhir/$export-file/{job}/")
                    got = http.get(item["url"])
                    assert got.status_code == 200
                    lines = [orjson.loads(line) for line in got.content.splitlines()]
                    assert len(lines) == item["count"]
                    ids += [(item["type"], line["id"]) for line in lines]
                assert len(ids) == len(set(ids))
                assert Counter(t for t, _ in ids) == {
                    "Patient": len(sandbox.patients),
                    "Appointment": len(sandbox.appointments),
                }
                assert not (tmp_path / "one" / "export" / "files").exists()
                assert not (tmp_path / "two" / "export" / "files").exists()
                assert http.delete(status_url).status_code == 202
                r = http.get(f"{one.base}/fhir/$export-poll/{job}")
                assert r.status_code == 404
                assert s3.keys(bucket) == []
                assert s3.uploads(bucket) == []
        finally:
            one.stop()
            two.stop()
            forget(prefix)


def test_storage_unreachable_for_a_file_or_a_cancel_is_no_500(tmp_path, s3):
    # A moto server of this test's own in front of the same (process-wide) buckets, to be
    # stopped and started again on its port.
    bucket = s3.bucket()
    own = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    own.start()
    port = own.get_host_and_port()[1]
    deployment = Deployment(tmp_path)
    deployment.settings = dataclasses.replace(
        deployment.settings,
        export=dataclasses.replace(
            deployment.settings.export,
            storage=f"s3://{bucket}/{PREFIX}",
            endpoint_url=f"http://127.0.0.1:{port}",
        ),
    )
    served = Served(deployment.app())
    try:
        auth = deployment.token(served.app, "full")
        status_url = kick_off(served, auth, f"/Group/{LEYR}/$export")
        manifest = finish(served, auth, status_url)
        own.stop()  # the storage stops answering
        r = served.http.get(manifest["output"][0]["url"], headers=auth)
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        assert r.json()["issue"] == [
            {
                "severity": "error",
                "code": "transient",
                "diagnostics": "object storage: reading an object failed "
                "(EndpointConnectionError); try again later",
            }
        ]
        assert str(port) not in r.text
        # Cancelled at once for the client; the files are deleted once storage answers.
        assert served.http.delete(status_url, headers=auth).status_code == 202
        assert served.http.get(status_url, headers=auth).status_code == 404
        assert s3.keys(bucket) != []
        own = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        own.start()  # the runner's next sweep deletes them
        for _ in range(3000):
            if not s3.keys(bucket):
                break
            time.sleep(0.01)
        assert s3.keys(bucket) == []
        assert s3.uploads(bucket) == []
    finally:
        served.stop()
        own.stop()


def test_a_job_stopped_mid_way_resumes_in_a_new_app_each_record_once(tmp_path, s3):
    bucket = s3.bucket()
    deployment = on_storage(tmp_path, s3, bucket)
    first = deployment.app()
    connector = first.state.facade.connectors[NYRA]
    search = connector.search
    calls = Counter[str]()
    reached = threading.Event()

    async def held(request, cursor=None):
        calls[request.resource_type] += 1
        if calls["Patient"] > 2 or calls["Appointment"]:
            reached.set()
            await asyncio.Event().wait()  # held until the app stops
        return await search(request, cursor)

    connector.search = held
    serving = Served(first)
    auth = deployment.token(first, "full")
    status_url = kick_off(serving, auth, f"/Group/{NYRA}/$export")
    assert reached.wait(30)
    serving.stop()  # mid-job: files begun, one of them whole and sealed
    job = status_url.rsplit("/", 1)[1]
    assert s3.keys(bucket) == [f"{PREFIX}/{job}/Patient.{NYRA}.001.ndjson"]

    second = deployment.app()
    serving = Served(second)
    try:
        auth = deployment.token(second, "full")
        manifest = finish(serving, auth, f"{serving.base}/$export-poll/{job}")
        resources = download(serving, auth, manifest)
        for resource_type in ("Patient", "Appointment"):
            ids = [r["id"] for r in resources[resource_type]]
            assert len(ids) == len(set(ids))
            assert len(ids) == total(serving, auth, resource_type, _source=NYRA)
        assert s3.uploads(bucket) == []
    finally:
        serving.stop()
