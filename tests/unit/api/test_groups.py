"""Groups over HTTP: one per source the caller may see, its id the source's name.

In-process against both sandboxes: the Group search and read, ``_id`` and ``name``, the
quantity (the source's exact number of patients), the scopes (``system/Group.rs``), and a
client limited to some sources seeing only their Groups.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fhir_check import acheck_response
from harness import FAST

from adapter.app import create_app
from adapter.auth.clients import load_clients
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import ExportSettings, Settings

pytestmark = pytest.mark.anyio

LEYR, NYRA = "leyr-a", "nyra-b"
SECRET = "groups-client-secret-0123456789abcdef"
PATIENTS = {LEYR: 7, NYRA: 9}


def _app(tmp_path, clients: dict[str, Any] | None = None):
    sandboxes = {
        LEYR: LeyrSandbox(seed=5, patients=PATIENTS[LEYR]),
        NYRA: NyraSandbox(seed=5, patients=PATIENTS[NYRA], limits=FAST),
    }
    sources = {
        LEYR: {"connector": "leyr", "emr": "webdoc", **sandboxes[LEYR].defaults()},
        NYRA: {"connector": "nyra", **sandboxes[NYRA].defaults()},
    }
    settings = Settings(
        sources=sources,
        clients=load_clients(clients or {}, list(sources)),
        open_access=not clients,
        cursor_key=b"c" * 32,
        token_key=b"t" * 32,
        export=ExportSettings(dir=str(tmp_path)),
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


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


async def test_one_group_per_source_with_its_patient_count(tmp_path):
    async with _client(_app(tmp_path)) as c:
        r = await c.get("/fhir/Group")
        assert r.status_code == 200, r.text
        bundle = r.json()
        assert bundle["type"] == "searchset" and bundle["total"] == 2
        groups = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
        assert set(groups) == {LEYR, NYRA}
        for name, group in groups.items():
            assert group["type"] == "person" and group["actual"] is True
            assert group["name"] == name and "member" not in group
            assert group["quantity"] == PATIENTS[name]
            assert bundle["entry"][0]["fullUrl"].startswith("http://fhir.test/fhir/Group/")
        r = await c.get(f"/fhir/Group/{NYRA}")
        assert r.status_code == 200 and r.json() == groups[NYRA]


async def test_the_quantity_is_what_a_patient_search_counts(tmp_path):
    async with _client(_app(tmp_path)) as c:
        for source in (LEYR, NYRA):
            group = (await c.get(f"/fhir/Group/{source}")).json()
            r = await c.get("/fhir/Patient", params={"_source": source, "_summary": "count"})
            assert group["quantity"] == r.json()["total"]


@pytest.mark.parametrize(
    "query,found",
    [
        ({"_id": LEYR}, [LEYR]),
        ({"_id": f"{NYRA},{LEYR}"}, [LEYR, NYRA]),
        ({"_id": "other"}, []),
        ({"name": "nyra"}, [NYRA]),
        ({"name": "LEYR"}, [LEYR]),
        ({"name:exact": "leyr"}, []),
        ({"name:contains": "r-"}, [LEYR, NYRA]),
        ({"name": "nyra b"}, [NYRA]),  # its hyphen is a word break, as a space
        ({"unknown": "x"}, [LEYR, NYRA]),
    ],
)
async def test_search_by_id_and_name(tmp_path, query, found):
    async with _client(_app(tmp_path)) as c:
        r = await c.get("/fhir/Group", params=query)
        assert r.status_code == 200, r.text
        assert sorted(_ids(r.json())) == found


async def test_bad_parameters(tmp_path):
    async with _client(_app(tmp_path)) as c:
        r = await c.get(
            "/fhir/Group", params={"unknown": "x"}, headers={"prefer": "handling=strict"}
        )
        assert r.status_code == 400
        r = await c.get("/fhir/Group", params={"_id:exact": LEYR})
        assert r.status_code == 400
        r = await c.get("/fhir/Group", params={"name:contains": "-"})
        assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["name:contains"]
        r = await c.get("/fhir/Group", params={"_summary": "count"})
        assert r.status_code == 200 and r.json()["total"] == 2 and "entry" not in r.json()
        r = await c.get("/fhir/Group/nobody")
        assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


async def test_writes_are_not_taken(tmp_path):
    async with _client(_app(tmp_path)) as c:
        r = await c.post("/fhir/Group", json={"resourceType": "Group"})
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
        assert r.json()["resourceType"] == "OperationOutcome"
        r = await c.put(f"/fhir/Group/{LEYR}", json={"resourceType": "Group", "id": LEYR})
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "scopes,search,read",
    [
        (["system/Group.rs"], True, True),
        (["system/Group.read"], True, True),
        (["system/*.rs"], True, True),
        (["system/Group.r"], False, True),
        (["system/Group.s"], True, False),
        (["system/Patient.rs"], False, False),
    ],
)
async def test_scopes(tmp_path, scopes, search, read):
    app = _app(tmp_path, {"c": {"secret": SECRET, "scopes": scopes}})
    async with _client(app) as c:
        token = await _token(c, "c")
        r = await c.get("/fhir/Group", headers=token)
        assert r.status_code == (200 if search else 403), r.text
        r = await c.get(f"/fhir/Group/{LEYR}", headers=token)
        assert r.status_code == (200 if read else 403), r.text
        assert (await c.get("/fhir/Group")).status_code == 401


async def test_a_client_sees_only_its_sources_groups(tmp_path):
    clients = {
        "one": {"secret": SECRET, "scopes": ["system/Group.rs"], "sources": [NYRA]},
        "all": {"secret": SECRET, "scopes": ["system/Group.rs"]},
    }
    async with _client(_app(tmp_path, clients)) as c:
        one, every = await _token(c, "one"), await _token(c, "all")
        r = await c.get("/fhir/Group", headers=one)
        assert _ids(r.json()) == [NYRA] and r.json()["total"] == 1
        assert (await c.get(f"/fhir/Group/{NYRA}", headers=one)).status_code == 200
        r = await c.get(f"/fhir/Group/{LEYR}", headers=one)
        assert r.status_code == 404
        assert sorted(_ids((await c.get("/fhir/Group", headers=every)).json())) == [LEYR, NYRA]


async def test_the_capability_statement_lists_group(tmp_path):
    async with _client(_app(tmp_path)) as c:
        statement = (await c.get("/fhir/metadata")).json()
        [group] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Group"]
        assert {i["code"] for i in group["interaction"]} == {"read", "search-type"}
        assert {p["name"] for p in group["searchParam"]} == {"_id", "name"}
