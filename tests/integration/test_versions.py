"""Versions over HTTP against both sandboxes: ``meta.versionId`` and ``ETag`` on reads and
searches, ``If-Match`` on updates (412 with the vendor untouched), and the clients that
must send it (428)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime

import httpx
import pytest
from fhir_check import check_response
from serving import on_a_port
from worlds import JSON, World, booking, leyr_own, nyra_own

from adapter.app import create_app
from adapter.auth.clients import load_clients
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings
from mappings import decode_id

STALE = 'W/"0123456789abcdef"'


@contextmanager
def serving(app) -> Iterator[httpx.Client]:
    hooks = {"response": [check_response]}
    with on_a_port(app) as base, httpx.Client(base_url=base, timeout=30, event_hooks=hooks) as c:
        yield c


def book(world: World, served: httpx.Client, source: str, hour: int) -> httpx.Response:
    patient = served.get("/Patient", params={"_source": source, "_count": "1"}).json()
    patient_id = patient["entry"][0]["resource"]["id"]
    r = served.post(
        "/Appointment", json=booking(world, served, source, patient_id, hour), headers=JSON
    )
    assert r.status_code == 201, r.json()
    return r


def change_at_vendor(world: World, fhir_id: str) -> None:
    """A change made through the vendor's own API, not through the facade."""
    gid = decode_id(fhir_id)

    async def send() -> httpx.Response:
        if gid.source.startswith("leyr"):
            auth = {
                "x-leyr-client-id": world.leyr.client_id,
                "x-leyr-client-secret": world.leyr.client_secret,
            }
            path = f"/emrs/webdoc/care-units/{gid.scope}/appointments/{gid.vendor_id}"
            async with httpx.AsyncClient(
                transport=world.leyr.transport(), base_url="http://l"
            ) as c:
                return await c.patch(path, json={"comment": "changed at the vendor"}, headers=auth)
        grant = world.nyra.api_keys()[0]
        auth = {
            "x-api-key": grant.key,
            "x-api-secret": grant.secret,
            "authorization": f"Bearer {grant.token}",
        }
        path = f"/appointments/{gid.vendor_id}/status"
        async with httpx.AsyncClient(transport=world.nyra.transport(), base_url="http://n") as c:
            return await c.patch(path, json={"status": "CANCELLED"}, headers=auth)

    r = asyncio.run(send())
    assert r.status_code < 300, r.text


def at_vendor(world: World, fhir_id: str) -> dict:
    gid = decode_id(fhir_id)
    if gid.source.startswith("leyr"):
        return leyr_own(world, gid.scope, "appointments", gid.vendor_id).json()
    return nyra_own(world, "appointments", gid.vendor_id).json()["data"]


def etag(resource: dict) -> str:
    return f'W/"{resource["meta"]["versionId"]}"'


@pytest.mark.parametrize("source", ["leyr-w", "nyra-w"])
def test_reads_carry_a_version_that_changes_with_the_vendor_record(world, served, source):
    made = book(world, served, source, hour=9)
    first = served.get(f"/Appointment/{made.json()['id']}")
    again = served.get(f"/Appointment/{made.json()['id']}")
    assert first.headers["etag"] == again.headers["etag"] == etag(first.json())
    assert made.headers["etag"] == first.headers["etag"]
    assert first.json()["meta"]["versionId"] == again.json()["meta"]["versionId"]
    assert parsedate_to_datetime(first.headers["last-modified"]).tzinfo is not None
    assert first.json()["meta"]["lastUpdated"]
    change_at_vendor(world, made.json()["id"])
    changed = served.get(f"/Appointment/{made.json()['id']}")
    assert changed.headers["etag"] != first.headers["etag"]
    assert changed.headers["etag"] == etag(changed.json())


@pytest.mark.parametrize("source", ["leyr-w", "nyra-w"])
def test_search_results_carry_the_version_a_read_gives(served, source):
    for resource_type in ("Patient", "Appointment"):
        page = served.get(f"/{resource_type}", params={"_source": source, "_count": "5"}).json()
        assert page["entry"]
        for entry in page["entry"]:
            resource = entry["resource"]
            read = served.get(f"/{resource_type}/{resource['id']}")
            assert resource["meta"]["versionId"] == read.json()["meta"]["versionId"]
            assert read.headers["etag"] == etag(resource)


@pytest.mark.parametrize("source", ["leyr-w", "nyra-w"])
def test_a_stale_if_match_is_412_and_the_vendor_is_untouched(world, served, source):
    made = book(world, served, source, hour=11).json()
    before = at_vendor(world, made["id"])
    r = served.put(
        f"/Appointment/{made['id']}",
        json={**made, "status": "cancelled"},
        headers={**JSON, "If-Match": STALE},
    )
    assert r.status_code == 412
    assert "If-Match" in r.json()["issue"][0]["diagnostics"]
    assert at_vendor(world, made["id"]) == before


def test_a_version_changed_at_the_vendor_meanwhile_is_412(world, served):
    made = book(world, served, "leyr-w", hour=14)
    seen = made.headers["etag"]
    change_at_vendor(world, made.json()["id"])
    before = at_vendor(world, made.json()["id"])
    r = served.put(
        f"/Appointment/{made.json()['id']}",
        json={**made.json(), "status": "cancelled"},
        headers={**JSON, "If-Match": seen},
    )
    assert r.status_code == 412
    assert at_vendor(world, made.json()["id"]) == before
    assert before["comment"] == "changed at the vendor" and before["status"] != "cancelled"


@pytest.mark.parametrize(("source", "weak"), [("leyr-w", True), ("nyra-w", False)])
def test_a_current_if_match_succeeds_and_answers_the_new_etag(world, served, source, weak):
    made = book(world, served, source, hour=15)
    version = made.json()["meta"]["versionId"]
    header = f'W/"{version}"' if weak else f'"{version}"'
    r = served.put(
        f"/Appointment/{made.json()['id']}",
        json={**made.json(), "status": "cancelled"},
        headers={**JSON, "If-Match": header},
    )
    assert r.status_code == 200, r.json()
    assert r.headers["etag"] == etag(r.json()) != made.headers["etag"]
    assert served.get(f"/Appointment/{r.json()['id']}").headers["etag"] == r.headers["etag"]


def test_if_match_on_a_create_is_400(world, served):
    patient = served.get("/Patient", params={"_source": "nyra-w", "_count": "1"}).json()
    body = booking(world, served, "nyra-w", patient["entry"][0]["resource"]["id"], 16)
    before = len(world.nyra.appointments)
    r = served.post("/Appointment", json=body, headers={**JSON, "If-Match": STALE})
    assert r.status_code == 400 and "If-Match" in r.json()["issue"][0]["diagnostics"]
    assert len(world.nyra.appointments) == before


def test_a_client_that_must_send_if_match_gets_428_without_it():
    leyr = LeyrSandbox(seed=3, patients=6)
    nyra = NyraSandbox(seed=3, patients=6)
    sources = {
        "leyr-w": {"connector": "leyr", **leyr.defaults()},
        "nyra-w": {"connector": "nyra", **nyra.defaults()},
    }
    secret = "careful-secret-0123456789"
    table = {"secret": secret, "scopes": ["system/*.cruds"], "require_if_match": True}
    clients = load_clients({"careful": table}, list(sources))
    app = create_app(
        Settings(sources=sources, clients=clients, cursor_key=b"v" * 32, token_key=b"t" * 32),
        transports={"leyr-w": leyr.transport(), "nyra-w": nyra.transport()},
    )
    own = World.__new__(World)  # the sandboxes only, for booking()
    own.leyr, own.nyra = leyr, nyra
    with serving(app) as http:
        form = {"grant_type": "client_credentials"}
        issued = httpx.post(f"{http.base_url}/auth/token", data=form, auth=("careful", secret))
        auth = {"authorization": f"Bearer {issued.json()['access_token']}"}
        patients = http.get(
            "/fhir/Patient", params={"_source": "nyra-w", "_count": "1"}, headers=auth
        ).json()
        body = booking(own, http, "nyra-w", patients["entry"][0]["resource"]["id"], 10)
        made = http.post("/fhir/Appointment", json=body, headers={**JSON, **auth}).json()
        before = at_vendor_nyra(nyra, made["id"])
        url = f"/fhir/Appointment/{made['id']}"
        cancel = {**made, "status": "cancelled"}
        r = http.put(url, json=cancel, headers={**JSON, **auth})
        assert r.status_code == 428 and "If-Match" in r.json()["issue"][0]["diagnostics"]
        assert at_vendor_nyra(nyra, made["id"]) == before and before["status"] == "BOOKED"
        r = http.put(url, json=cancel, headers={**JSON, **auth, "If-Match": etag(made)})
        assert r.status_code == 200, r.json()
        assert r.json()["status"] == "cancelled"


def at_vendor_nyra(nyra: NyraSandbox, fhir_id: str) -> dict:
    own = World.__new__(World)
    own.nyra = nyra
    return at_vendor(own, fhir_id)


def test_the_capability_statement_says_versioned(served):
    rest = served.get("/metadata").json()["rest"][0]
    versioning = {r["type"]: r.get("versioning") for r in rest["resource"]}
    assert versioning["Appointment"] == "versioned-update"
    assert versioning["Patient"] == versioning["Practitioner"] == "versioned"
    assert not any(r.get("conditionalUpdate") for r in rest["resource"])
