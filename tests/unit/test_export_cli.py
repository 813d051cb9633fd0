"""``fhir-adapter export``: NDJSON files and a Bulk Data manifest from the embedded
sandbox sources, resumed after Ctrl-C without duplicates, and its failures' exit codes."""

from __future__ import annotations

import shlex
from pathlib import Path

import orjson
import pytest
from fhir_check import validate

from adapter.cli import main
from adapter.connectors.leyr import LeyrConnector
from adapter.connectors.nyra import NyraConnector
from adapter.export import engine
from adapter.export_command import STATE_FILE
from adapter.sandbox import NyraSandbox
from mappings import encode_id


@pytest.fixture(autouse=True)
def _embedded_default(monkeypatch, tmp_path):
    monkeypatch.delenv("FHIR_ADAPTER_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # the change journal lives under [export] dir


def read_export(folder: Path) -> tuple[dict, dict[str, list[dict]]]:
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    by_type: dict[str, list[dict]] = {}
    for item in manifest["output"]:
        path = Path(item["url"].removeprefix("file://"))
        assert path.parent == folder.resolve()
        lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
        assert len(lines) == item["count"]
        for resource in lines:
            validate(resource)
            assert resource["resourceType"] == item["type"]
        by_type.setdefault(item["type"], []).extend(lines)
    return manifest, by_type


def test_an_export_writes_ndjson_and_its_manifest(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["export", "--source", "nyra-sandbox", "--type", "Patient,Appointment",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    manifest, by_type = read_export(out)
    assert manifest["transactionTime"].endswith("Z")
    assert "--source nyra-sandbox" in manifest["request"]
    assert manifest["error"] == []
    assert set(by_type) == {"Patient", "Appointment"}
    assert len(by_type["Patient"]) == 200  # the embedded sandbox's patients
    for resources in by_type.values():
        ids = [r["id"] for r in resources]
        assert len(ids) == len(set(ids))
        assert all(i.startswith("nyra-sandbox.") for i in ids)
    assert "export done" in capsys.readouterr().out


def test_a_type_filter_keeps_what_its_search_matches(tmp_path):
    out = tmp_path / "out"
    code = main(["export", "--source", "nyra-sandbox", "--type", "Patient",
                 "--type-filter", "Patient?gender=female", "--out", str(out)])  # fmt: skip
    assert code == 0
    manifest, by_type = read_export(out)
    assert "--type-filter Patient?gender=female" in manifest["request"]
    sandbox = NyraSandbox(seed=7, patients=200)  # the embedded source, as configured
    females = {encode_id("nyra-sandbox", p["id"]) for p in sandbox.patients
               if p["gender"] == "FEMALE"}  # fmt: skip
    assert females
    assert {r["id"] for r in by_type["Patient"]} == females


def test_elements_subset_what_is_written(tmp_path):
    out = tmp_path / "out"
    code = main(["export", "--source", "nyra-sandbox", "--type", "Patient,Location",
                 "--elements", "Patient.gender", "--out", str(out)])  # fmt: skip
    assert code == 0
    manifest, by_type = read_export(out)
    assert "--elements Patient.gender" in manifest["request"]
    assert len(by_type["Patient"]) == 200
    for patient in by_type["Patient"]:
        assert set(patient) == {"resourceType", "id", "meta", "gender"}
        assert "SUBSETTED" in [t["code"] for t in patient["meta"]["tag"]]
    assert all("SUBSETTED" not in str(r["meta"]) for r in by_type["Location"])


def test_ctrl_c_stops_cleanly_and_resume_continues_without_duplicates(tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    assert main(["export", "--type", "Patient", "--out", str(whole)]) == 0
    _, expected = read_export(whole)

    search = LeyrConnector.search
    calls = []

    async def interrupted(self, request, cursor=None):
        calls.append(cursor)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return await search(self, request, cursor)

    monkeypatch.setattr(LeyrConnector, "search", interrupted)
    out = tmp_path / "out"
    assert main(["export", "--type", "Patient", "--out", str(out)]) == 130
    assert not (out / "manifest.json").exists()
    state = orjson.loads((out / STATE_FILE).read_bytes())["state"]
    leyr = next(p for p in state["parts"] if p["source"] == "leyr-sandbox")
    assert leyr["written"] == 100 and not leyr["done"]
    # A page written after the last checkpoint (a crash mid-write) is cut off on resume.
    with (out / leyr["files"][-1]["name"]).open("ab") as partial:
        partial.write(b'{"resourceType": "Patient", "id": "half-writ')
    # Started again without --resume, it refuses to overwrite.
    assert main(["export", "--type", "Patient", "--out", str(out)]) == 2

    monkeypatch.setattr(LeyrConnector, "search", search)
    assert main(["export", "--out", str(out), "--resume"]) == 0
    _, got = read_export(out)
    ids = [r["id"] for r in got["Patient"]]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(r["id"] for r in expected["Patient"])


def test_a_failing_source_names_the_error_file(tmp_path, monkeypatch, capsys):
    async def failing(self, request, cursor=None):
        raise RuntimeError("the vendor is down")

    monkeypatch.setattr(NyraConnector, "search", failing)
    monkeypatch.setattr(engine, "TRIES", 1)
    out = tmp_path / "out"
    assert main(["export", "--type", "Patient", "--out", str(out)]) == 1
    assert str(out / "errors.ndjson") in capsys.readouterr().err
    manifest, by_type = read_export(out)
    assert len(by_type["Patient"]) == 200  # the other source is exported
    [error] = manifest["error"]
    assert error["type"] == "OperationOutcome"
    lines = (out / "errors.ndjson").read_bytes().splitlines()
    assert len(lines) == error["count"] == 1
    validate(orjson.loads(lines[0]))


@pytest.mark.parametrize(
    "args",
    [
        ["--source", "nowhere"],
        ["--type", "Slot"],
        ["--since", "yesterday"],
        ["--resume"],
        ["--type", "Patient", "--type-filter", "Appointment?status=booked"],
        ["--type-filter", "Patient?colour=blue"],
        ["--type", "Patient", "--elements", "Patient.colour"],
    ],
)
def test_usage_mistakes_exit_2(tmp_path, args, capsys):
    assert main(["export", "--out", str(tmp_path / "out"), *args]) == 2
    assert capsys.readouterr().err.startswith("export: ")


def test_the_export_table_is_strict_and_has_defaults(tmp_path):
    from adapter.settings import ExportSettings, SettingsError, load_settings

    assert load_settings(env={}).export == ExportSettings()
    path = tmp_path / "adapter.toml"
    base = '[server]\nopen_access = true\n[sources.s]\nconnector = "nyra"\ntimezone = "UTC"\n'
    base += "sandbox = { seed = 1, patients = 3 }\n"
    path.write_text(base + '[export]\ndir = "x"\nkeep_hours = 2\nfile_max_records = 10\n')
    settings = load_settings(path, env={})
    assert settings.export == ExportSettings("x", 2.0, 0.5, 10)
    path.write_text(base + "[export]\nbudget_shar = 0.2\n")
    with pytest.raises(SettingsError, match=r"budget_shar.*did you mean 'budget_share'"):
        load_settings(path, env={})
    path.write_text(base + "[export]\nbudget_share = 1.5\n")
    with pytest.raises(SettingsError, match="budget_share must be above 0 and at most 1"):
        load_settings(path, env={})


def test_the_resume_hint_is_the_whole_command_and_it_continues(tmp_path, monkeypatch, capsys):
    # A source only a configuration file names: the hint must carry --config.
    config = tmp_path / "slow exports.toml"
    config.write_text(
        "[server]\nopen_access = true\n\n"
        '[sources.nyra-slow]\nconnector = "nyra"\ntimezone = "Asia/Kolkata"\n'
        "sandbox = { seed = 3, patients = 150 }\n"
    )
    search = NyraConnector.search
    calls = []

    async def interrupted(self, request, cursor=None):
        calls.append(cursor)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return await search(self, request, cursor)

    monkeypatch.setattr(NyraConnector, "search", interrupted)
    out = tmp_path / "slowexp"
    args = ["export", "--config", str(config), "--type", "Patient", "--out", str(out)]
    assert main(args) == 130
    err = capsys.readouterr().err.strip()
    command = shlex.join(["fhir-adapter", "export", "--config", str(config), "--out", str(out)])
    assert err == f"export stopped; `{command} --resume` continues it"
    # Started again without --resume, it refuses and says the same.
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        f"export: {out} holds an unfinished export; `{command} --resume` continues it"
    )

    monkeypatch.setattr(NyraConnector, "search", search)
    hint = shlex.split(f"{command} --resume")
    assert hint[0] == "fhir-adapter"
    assert main(hint[1:]) == 0
    _, got = read_export(out)
    assert len({r["id"] for r in got["Patient"]}) == len(got["Patient"]) == 150

    # A finished export is not offered --resume: nothing of it is left to continue.
    capsys.readouterr()
    for again in (args, hint[1:]):
        assert main(again) == 2
        assert capsys.readouterr().err.strip() == (
            f"export: {out} holds a finished export (its manifest.json); "
            "export into another directory, or remove this one first"
        )
