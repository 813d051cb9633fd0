"""``fhir-adapter export --storage s3://...``: the files and the manifest on object storage
(moto on a loopback port, its endpoint and credentials from the environment), resumed
after Ctrl-C without duplicates; ``[export]``'s storage keys, strictly checked."""

from __future__ import annotations

import orjson
import pytest
from fhir_check import validate
from objectstore import CREDENTIALS, moto_on_a_port

from adapter.cli import main
from adapter.connectors.leyr import LeyrConnector
from adapter.export_command import STATE_FILE
from adapter.settings import ExportSettings, SettingsError, load_settings


@pytest.fixture(scope="module")
def s3():
    with moto_on_a_port() as service:
        yield service


@pytest.fixture(autouse=True)
def _environment(monkeypatch, tmp_path, s3):
    monkeypatch.delenv("FHIR_ADAPTER_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # the change journal lives under [export] dir
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)  # as any AWS tool takes it


def read_objects(s3, bucket: str, manifest: dict) -> dict[str, list[dict]]:
    by_type: dict[str, list[dict]] = {}
    for item in manifest["output"]:
        assert item["url"].startswith(f"s3://{bucket}/nightly/")
        key = item["url"].removeprefix(f"s3://{bucket}/")
        lines = [orjson.loads(line) for line in s3.read(bucket, key).splitlines()]
        assert len(lines) == item["count"]
        for resource in lines:
            validate(resource)
        by_type.setdefault(item["type"], []).extend(lines)
    return by_type


def test_the_files_and_manifest_go_to_object_storage(tmp_path, s3, capsys):
    bucket = s3.bucket()
    out = tmp_path / "out"
    code = main(["export", "--source", "nyra-sandbox", "--type", "Patient,Appointment",
                 "--storage", f"s3://{bucket}/nightly", "--out", str(out)])  # fmt: skip
    assert code == 0
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["requiresAccessToken"] is False
    by_type = read_objects(s3, bucket, manifest)
    assert len(by_type["Patient"]) == 200  # the embedded sandbox's patients
    ids = [r["id"] for rs in by_type.values() for r in rs]
    assert len(ids) == len(set(ids))
    export_id = orjson.loads((out / STATE_FILE).read_bytes())["id"]
    stored = orjson.loads(s3.read(bucket, f"nightly/{export_id}/manifest.json"))
    assert stored == manifest
    assert not list(out.glob("*.ndjson"))
    assert s3.uploads(bucket) == []
    assert f"in s3://{bucket}/nightly/{export_id};" in capsys.readouterr().out


def test_ctrl_c_then_resume_uploads_each_record_once(tmp_path, s3, monkeypatch):
    bucket = s3.bucket()
    search = LeyrConnector.search
    calls = []

    async def interrupted(self, request, cursor=None):
        calls.append(cursor)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return await search(self, request, cursor)

    monkeypatch.setattr(LeyrConnector, "search", interrupted)
    out = tmp_path / "out"
    args = ["export", "--type", "Patient", "--storage", f"s3://{bucket}/nightly"]
    assert main([*args, "--out", str(out)]) == 130
    monkeypatch.setattr(LeyrConnector, "search", search)
    assert main(["export", "--out", str(out), "--resume"]) == 0
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    ids = [r["id"] for r in read_objects(s3, bucket, manifest)["Patient"]]
    assert len(ids) == len(set(ids)) == 400  # both embedded sources' patients


def test_storage_refusing_exits_1_naming_no_secret(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["export", "--type", "Patient", "--storage", "s3://no-such-bucket/x",
                 "--out", str(out)])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert err == (
        "export: object storage: starting an upload failed (NoSuchBucket); "
        f"`--resume --out {out}` continues it\n"
    )


def test_a_storage_url_of_another_shape_exits_2(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", "--storage", "https://bucket/x", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        'export: --storage: object storage must be given as "s3://bucket/prefix"\n'
    )


BASE = (
    '[server]\nopen_access = true\n[sources.s]\nconnector = "nyra"\ntimezone = "UTC"\n'
    "sandbox = { seed = 1, patients = 3 }\n"
)


def test_the_storage_keys_are_read_and_checked(tmp_path):
    path = tmp_path / "adapter.toml"
    path.write_text(
        BASE + '[export]\nstorage = "s3://exports/bulk"\nendpoint_url = "http://127.0.0.1:9000"\n'
        'region = "eu-north-1"\nsigned_urls = true\nsigned_url_seconds = 900\n'
    )
    export = load_settings(path, env={}).export
    assert export == ExportSettings(
        storage="s3://exports/bulk",
        endpoint_url="http://127.0.0.1:9000",
        region="eu-north-1",
        signed_urls=True,
        signed_url_seconds=900,
    )


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('storage = "bucket/x"', '[export] storage must be "s3://bucket/prefix"'),
        ('storage = "s3://x"', '[export] storage must be "s3://bucket/prefix"'),
        ('storage = "s3://b-1"\nendpoint_url = "minio:9000"', "endpoint_url must be an http"),
        ("signed_urls = true", "[export] signed_urls needs [export] storage"),
        ('storage = "s3://b-1"\nsigned_url_seconds = 0', "signed_url_seconds"),
        ('storage = "s3://b-1"\nstorage_class = "GLACIER"', "storage_class"),
    ],
)
def test_storage_mistakes_are_refused_by_name(tmp_path, table, problem):
    path = tmp_path / "adapter.toml"
    path.write_text(BASE + f"[export]\n{table}\n")
    with pytest.raises(SettingsError) as refused:
        load_settings(path, env={})
    assert any(problem in line for line in refused.value.problems), refused.value.problems
