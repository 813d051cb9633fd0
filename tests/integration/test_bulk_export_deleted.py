"""A ``_since`` export's ``deleted`` list over HTTP, against both sandboxes: records removed
at the vendor after an export saw them are listed once, as DELETE entries."""

from __future__ import annotations

import orjson
import pytest
from bulk import LEYR, NYRA, Deployment, Served, download, finish, kick_off
from fhir_check import validate

from mappings import encode_id


@pytest.fixture
def deployment(tmp_path):
    return Deployment(tmp_path)


@pytest.fixture
def served(deployment):
    serving = Served(deployment.app())
    yield serving
    serving.stop()


def deleted_lines(served: Served, auth: dict[str, str], manifest: dict) -> list[dict]:
    lines = []
    for item in manifest["deleted"]:
        assert item["type"] == "Bundle"
        r = served.http.get(item["url"], headers=auth)
        assert r.status_code == 200
        got = [orjson.loads(line) for line in r.content.splitlines()]
        assert len(got) == item["count"]
        lines.extend(got)
    for bundle in lines:
        validate(bundle)
    return lines


def test_a_since_export_lists_what_disappeared_at_the_vendor(deployment, served):
    auth = deployment.token(served.app, "full")
    first = finish(served, auth, kick_off(served, auth))
    assert first["deleted"] == []  # no _since: nothing to tell
    whole = download(served, auth, first)

    # Removed at the vendors, behind the service's back.
    cu = next(iter(deployment.leyr.patients))
    leyr_patient = next(iter(deployment.leyr.patients[cu]))
    deployment.leyr.patients[cu].remove(leyr_patient["id"])
    leyr_appointment = next(iter(deployment.leyr.appointments[cu]))
    deployment.leyr.appointments[cu].remove(leyr_appointment["id"])
    nyra_patient = next(iter(deployment.nyra.patients))
    deployment.nyra.patients.remove(nyra_patient["id"])
    gone = {
        f"Patient/{encode_id(LEYR, leyr_patient['id'], cu)}",
        f"Appointment/{encode_id(LEYR, leyr_appointment['id'], cu)}",
        f"Patient/{encode_id(NYRA, nyra_patient['id'])}",
    }
    assert gone <= {f"{t}/{r['id']}" for t, rs in whole.items() for r in rs}

    manifest = finish(served, auth, kick_off(served, auth, _since=first["transactionTime"]))
    lines = deleted_lines(served, auth, manifest)
    assert all(b["type"] == "transaction" and len(b["entry"]) == 1 for b in lines)
    assert all(b["entry"][0]["request"]["method"] == "DELETE" for b in lines)
    assert sorted(b["entry"][0]["request"]["url"] for b in lines) == sorted(gone)

    # Told once: an export since the one that noticed them has none.
    later = finish(served, auth, kick_off(served, auth, _since=manifest["transactionTime"]))
    assert later["deleted"] == []
    # An export since before both still tells them; one of Patients alone, only those.
    again = finish(
        served, auth, kick_off(served, auth, _type="Patient", _since=first["transactionTime"])
    )
    urls = sorted(b["entry"][0]["request"]["url"] for b in deleted_lines(served, auth, again))
    assert urls == sorted(u for u in gone if u.startswith("Patient/"))


def test_a_record_that_comes_back_is_not_deleted(deployment, served):
    auth = deployment.token(served.app, "full")
    first = finish(served, auth, kick_off(served, auth, _type="Patient"))
    record = next(iter(deployment.nyra.patients))
    deployment.nyra.patients.remove(record["id"])
    noticed = finish(served, auth, kick_off(served, auth, _type="Patient"))
    assert noticed["deleted"] == []  # without _since nothing is listed, but it is noticed
    deployment.nyra.patients.put(record)
    back = finish(served, auth, kick_off(served, auth, _type="Patient"))
    assert back["deleted"] == []
    since_first = finish(
        served, auth, kick_off(served, auth, _type="Patient", _since=first["transactionTime"])
    )
    assert since_first["deleted"] == []
