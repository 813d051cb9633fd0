"""``Patient/$everything`` over HTTP, in-process against both sandboxes.

A patient's record: the Patient, its Appointments (as ``Appointment?patient=`` finds them
at its source) and everything these reference, once each; every entry valid R4, and every
reference in the Bundle resolvable. ``_type`` and the token's scopes restrict the types,
``_since`` keeps what changed after it (a ``_since`` in the future: an empty Bundle), the
type-level form pages through every patient with signed cursors.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fhir_check import acheck_response
from harness import FAST

from adapter.app import create_app
from adapter.auth.clients import load_clients
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import ExportSettings, Settings
from mappings import encode_id

pytestmark = pytest.mark.anyio

LEYR, NYRA = "leyr-a", "nyra-b"
SOURCES = (LEYR, NYRA)
CONFIG = {
    LEYR: {"connector": "leyr", "timezone": "Europe/Stockholm", "emr": "webdoc"},
    NYRA: {"connector": "nyra", "timezone": "Asia/Kolkata"},
}
SECRET = "everything-client-secret-0123456789ab"
PATIENTS = 12


def _app(tmp_path, clients: dict[str, Any] | None = None, **limits: Any):
    sandboxes = {
        LEYR: LeyrSandbox(seed=3, patients=PATIENTS),
        NYRA: NyraSandbox(seed=3, patients=PATIENTS, limits=FAST),
    }
    sources = {
        name: {**config, **sandboxes[name].defaults(), "retry": {"attempts": 1}}
        for name, config in CONFIG.items()
    }
    settings = Settings(
        sources=sources,
        clients=load_clients(clients or {}, list(sources)),
        open_access=not clients,
        cursor_key=b"c" * 32,
        token_key=b"t" * 32,
        export=ExportSettings(dir=str(tmp_path)),
        **limits,
    )
    return create_app(settings, transports={n: s.transport() for n, s in sandboxes.items()})


async def _valid(response: httpx.Response) -> None:
    if response.request.url.path.startswith("/fhir/"):
        await acheck_response(response)  # every FHIR body is valid R4


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://fhir.test",
        event_hooks={"response": [_valid]},
    )


async def _token(c: httpx.AsyncClient, name: str) -> dict[str, str]:
    r = await c.post("/auth/token", data={"grant_type": "client_credentials"}, auth=(name, SECRET))
    assert r.status_code == 200, r.text
    return {"authorization": f"Bearer {r.json()['access_token']}"}


def _resources(bundle: dict[str, Any], mode: str | None = None) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if e["search"]["mode"] != "outcome" and (mode is None or e["search"]["mode"] == mode)
    ]


def _keys(resources: list[dict[str, Any]]) -> list[str]:
    return [f"{r['resourceType']}/{r['id']}" for r in resources]


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [
            ref
            for key, item in value.items()
            for ref in (
                [item] if key == "reference" and isinstance(item, str) else _references(item)
            )
        ]
    if isinstance(value, list):
        return [ref for item in value for ref in _references(item)]
    return []


async def _booked_patient(c: httpx.AsyncClient, source: str) -> str:
    """A patient of ``source`` with Appointments."""
    r = await c.get("/fhir/Appointment", params={"_source": source, "_count": 5})
    for appointment in _resources(r.json(), "match"):
        for ref in _references(appointment):
            if ref.startswith("Patient/"):
                return ref.split("/", 1)[1]
    raise AssertionError(f"no appointment at {source}")


@pytest.mark.parametrize("source", SOURCES)
async def test_a_patients_record(tmp_path, source):
    async with _client(_app(tmp_path)) as c:
        patient_id = await _booked_patient(c, source)
        r = await c.get(f"/fhir/Patient/{patient_id}/$everything")
        assert r.status_code == 200, r.text
        bundle = r.json()
        assert bundle["type"] == "searchset" and bundle["total"] == 1
        assert _keys(_resources(bundle, "match")) == [f"Patient/{patient_id}"]
        held = _keys(_resources(bundle))
        assert len(held) == len(set(held))  # each once
        r = await c.get(
            "/fhir/Appointment", params={"patient": f"Patient/{patient_id}", "_count": 100}
        )
        booked = {k for k in _keys(_resources(r.json(), "match"))}
        assert booked and booked <= set(held)
        types = {k.split("/")[0] for k in held}
        assert {"Patient", "Appointment", "Practitioner"} <= types
        for resource in _resources(bundle):
            assert resource["meta"]["lastUpdated"]
            assert resource["meta"]["source"] == source
        # Every reference is in the Bundle, or is read through the facade.
        for ref in {ref for r in _resources(bundle) for ref in _references(r)}:
            if ref not in held:
                assert (await c.get(f"/fhir/{ref}")).status_code == 200, ref
        assert bundle["link"][0]["url"] == f"http://fhir.test/fhir/Patient/{patient_id}/$everything"


@pytest.mark.parametrize("source", SOURCES)
async def test_type_restricts_the_types(tmp_path, source):
    async with _client(_app(tmp_path)) as c:
        patient_id = await _booked_patient(c, source)
        path = f"/fhir/Patient/{patient_id}/$everything"
        r = await c.get(path, params={"_type": "Patient,Appointment"})
        assert r.status_code == 200, r.text
        types = {x["resourceType"] for x in _resources(r.json())}
        assert types == {"Patient", "Appointment"}
        r = await c.get(path, params={"_type": "Practitioner"})
        assert {x["resourceType"] for x in _resources(r.json())} == {"Practitioner"}
        assert _resources(r.json(), "match") == []
        assert "_type=Practitioner" in r.json()["link"][0]["url"]
        r = await c.get(path, params={"_type": "Nothing"})
        assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["_type"]


@pytest.mark.parametrize("source", SOURCES)
async def test_since(tmp_path, source):
    async with _client(_app(tmp_path)) as c:
        patient_id = await _booked_patient(c, source)
        path = f"/fhir/Patient/{patient_id}/$everything"
        first = _resources((await c.get(path)).json())
        # Long ago: everything. After the latest change: nothing. In the future: nothing.
        r = await c.get(path, params={"_since": "2000-01-01T00:00:00Z"})
        assert _keys(_resources(r.json())) == _keys(first)
        latest = max(x["meta"]["lastUpdated"] for x in first)
        r = await c.get(path, params={"_since": latest})
        assert r.status_code == 200 and "entry" not in r.json() and r.json()["total"] == 0
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        r = await c.get(path, params={"_since": future})
        assert r.status_code == 200 and "entry" not in r.json()
        # Unchanged content keeps its time: asked again, the same times.
        again = _resources((await c.get(path)).json())
        assert [x["meta"]["lastUpdated"] for x in again] == [
            x["meta"]["lastUpdated"] for x in first
        ]
        for bad in ("2026-01-01", "yesterday", "2026-01-01T00:00:00"):
            r = await c.get(path, params={"_since": bad})
            assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["_since"]


async def test_an_unknown_patient_is_404(tmp_path):
    async with _client(_app(tmp_path)) as c:
        for fhir_id in (encode_id(LEYR, "no-such-patient"), encode_id("elsewhere", "1"), "x"):
            r = await c.get(f"/fhir/Patient/{fhir_id}/$everything")
            assert r.status_code == 404, (fhir_id, r.text)


async def test_every_patient_page_by_page(tmp_path):
    async with _client(_app(tmp_path)) as c:
        r = await c.get("/fhir/Patient", params={"_count": 100})
        every = set(_keys(_resources(r.json(), "match")))
        assert len(every) == 2 * PATIENTS
        seen: list[str] = []
        url: str | None = "/fhir/Patient/$everything?_count=4&_type=Patient,Appointment"
        pages = 0
        while url is not None:
            r = await c.get(url)
            assert r.status_code == 200, r.text
            bundle = r.json()
            seen += _keys(_resources(bundle, "match"))
            assert {x["resourceType"] for x in _resources(bundle, "include")} <= {"Appointment"}
            links = {link["relation"]: link["url"] for link in bundle["link"]}
            url = links.get("next")
            if url is not None:
                assert "_type=Patient%2CAppointment" in url
                url = urlsplit(url)._replace(scheme="", netloc="").geturl()
            pages += 1
            assert pages < 20
        assert sorted(seen) == sorted(every)


async def test_a_page_that_would_pass_the_call_cap_is_refused(tmp_path):
    async with _client(_app(tmp_path, max_vendor_calls=20)) as c:
        r = await c.get("/fhir/Patient/$everything", params={"_count": 30})
        assert r.status_code == 400
        assert r.json()["issue"][0]["code"] == "too-costly"
        assert r.json()["issue"][0]["expression"] == ["_count"]
        r = await c.get("/fhir/Patient/$everything", params={"_type": "Patient,Appointment"})
        assert r.status_code == 200, r.text


async def test_scopes_restrict_the_types(tmp_path):
    clients = {
        "patients": {"secret": SECRET, "scopes": ["system/Patient.rs"]},
        "bookings": {"secret": SECRET, "scopes": ["system/Patient.r", "system/Appointment.r"]},
        "none": {"secret": SECRET, "scopes": ["system/Appointment.rs"]},
        "nyra": {"secret": SECRET, "scopes": ["system/*.rs"], "sources": [NYRA]},
    }
    async with _client(_app(tmp_path, clients)) as c:
        tokens = {name: await _token(c, name) for name in clients}
        r = await c.get(
            "/fhir/Appointment", params={"_source": LEYR, "_count": 5}, headers=tokens["nyra"]
        )
        assert r.status_code == 200  # (no Leyr appointments for this client)
        r = await c.get("/fhir/Appointment", params={"_count": 5}, headers=tokens["none"])
        patient_id = next(
            ref.split("/", 1)[1]
            for a in _resources(r.json(), "match")
            for ref in _references(a)
            if ref.startswith(f"Patient/{LEYR}")
        )
        path = f"/fhir/Patient/{patient_id}/$everything"
        r = await c.get(path, headers=tokens["patients"])
        assert {x["resourceType"] for x in _resources(r.json())} == {"Patient"}
        r = await c.get(path, headers=tokens["bookings"])
        assert {x["resourceType"] for x in _resources(r.json())} == {"Patient", "Appointment"}
        assert (await c.get(path, headers=tokens["none"])).status_code == 403
        assert (await c.get(path, headers=tokens["nyra"])).status_code == 404
        r = await c.get("/fhir/Patient/$everything", headers=tokens["nyra"])
        assert r.status_code == 200, r.text
        assert {x["meta"]["source"] for x in _resources(r.json())} == {NYRA}


async def test_the_capability_statement_lists_everything(tmp_path):
    async with _client(_app(tmp_path)) as c:
        statement = (await c.get("/fhir/metadata")).json()
        [patient] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Patient"]
        assert {
            "name": "everything",
            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        } in patient["operation"]
