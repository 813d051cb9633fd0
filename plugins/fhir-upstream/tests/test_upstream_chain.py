"""The facade as an upstream: a regional facade over two hospital facades (one over a
FHIR server, which lets the regional facade in with SMART Backend Services; one over
Nyra, open). Reads, searches, ``_include`` and writes pass through both
levels; ids stay within FHIR's 64 characters, or are refused by name."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fhir_upstream_connector.sandbox import FhirSandbox
from jwt.algorithms import ECAlgorithm
from upstream_keys import key_pair
from upstream_world import FAST, client, facade, references

from adapter.auth.clients import load_clients
from adapter.sandbox import NyraSandbox
from adapter.settings import ExportSettings

pytestmark = pytest.mark.anyio


class Chain:
    def __init__(self, root: Path, scopes: tuple[str, ...] = ("system/*.cruds",)) -> None:
        self.ehr = FhirSandbox(seed=5, patients=10)
        self.nyra = NyraSandbox(seed=5, patients=10, limits=FAST)
        # Hospital A lets only the regional facade in: SMART Backend Services, ES384.
        private, public = key_pair("ES384")
        jwk = orjson.loads(ECAlgorithm.to_jwk(load_pem_public_key(public.encode())))
        jwks = {"keys": [{**jwk, "kid": "regional-1", "alg": "ES384"}]}
        self.clients = load_clients({"regional": {"jwks": jwks, "scopes": list(scopes)}}, ["ehr"])
        self.hospital_a = facade(
            {"ehr": {"connector": "fhir-upstream", **self.ehr.defaults()}},
            {"ehr": self.ehr.transport()},
            open_access=False,
            token_key=b"t" * 32,
            clients=self.clients,
        )
        self.hospital_b = facade(
            {"nyra": {"connector": "nyra", **self.nyra.defaults()}},
            {"nyra": self.nyra.transport()},
        )
        upstream = {"connector": "fhir-upstream", "auth": {"type": "none"}, "timezone": "UTC"}
        self.regional = facade(
            {
                "hosp-a": {
                    **upstream,
                    "base_url": "http://hosp-a.test/fhir",
                    "auth": {
                        "type": "smart",
                        "client_id": "regional",
                        "private_key": private,
                        "algorithm": "ES384",
                        "key_id": "regional-1",
                        "token_url": "http://hosp-a.test/auth/token",
                        "scope": "system/*.cruds",
                    },
                },
                "hosp-b": {**upstream, "base_url": "http://hosp-b.test/fhir"},
            },
            {
                "hosp-a": httpx.ASGITransport(app=self.hospital_a),
                "hosp-b": httpx.ASGITransport(app=self.hospital_b),
            },
            export=ExportSettings(dir=str(root)),
        )

    def at_hospital_a(self) -> httpx.AsyncClient:
        """A client of hospital A's facade, with a token of the regional facade's."""
        regional = self.clients["regional"]
        token, _ = self.hospital_a.state.tokens.issue(regional, dict(regional.scopes))
        return client(
            self.hospital_a, "http://hosp-a.test/fhir", {"Authorization": f"Bearer {token}"}
        )


@pytest.fixture
def chain(tmp_path) -> Chain:
    return Chain(tmp_path)


async def test_reads_and_searches_through_two_levels(chain):
    async with (
        client(chain.regional) as http,
        chain.at_hospital_a() as a,
    ):
        r = await http.get("/Patient", params={"_count": "7"})
        assert r.status_code == 200, r.text
        found, url = [], None
        while True:
            bundle = (await http.get(url) if url else r).json()
            found += [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
            url = next((x["url"] for x in bundle["link"] if x["relation"] == "next"), None)
            if url is None:
                break
        assert {p["meta"]["source"] for p in found} == {"hosp-a", "hosp-b"}
        assert len(found) == 20 and len({p["id"] for p in found}) == 20
        assert all(len(p["id"]) <= 64 for p in found)
        first = next(p for p in found if p["meta"]["source"] == "hosp-a")
        assert first["id"].startswith("hosp-a.ehr.")
        async with client(chain.hospital_a, "http://hosp-a.test/fhir") as anyone:
            refused = await anyone.get(f"/Patient/{first['id'].removeprefix('hosp-a.')}")
            assert refused.status_code == 401  # the regional facade came in with its token
        below = await a.get(f"/Patient/{first['id'].removeprefix('hosp-a.')}")
        assert below.status_code == 200
        read = await http.get(f"/Patient/{first['id']}")
        assert read.status_code == 200
        assert read.json()["name"] == below.json()["name"]
        family = first["name"][0]["family"]
        r = await http.get("/Patient", params={"family": family})
        hits = [e["resource"]["id"] for e in r.json()["entry"] if e["search"]["mode"] == "match"]
        assert first["id"] in hits


async def test_include_through_two_levels_resolves_every_reference(chain):
    async with client(chain.regional) as http:
        r = await http.get(
            "/Appointment",
            params={"_count": "10", "_include": "Appointment:patient", "_source": "hosp-a"},
        )
        assert r.status_code == 200, r.text
        entries = r.json()["entry"]
        matches = [e["resource"] for e in entries if e["search"]["mode"] == "match"]
        included = {e["resource"]["id"] for e in entries if e["search"]["mode"] == "include"}
        wanted = {
            ref.split("/")[1]
            for m in matches
            for ref in references(m)
            if ref.startswith("Patient/")
        }
        assert wanted and wanted == included
        for ref in sorted(set().union(*(references(m) for m in matches))):
            got = await http.get(f"/{ref}")
            assert got.status_code == 200, (ref, got.text)


async def test_writes_through_two_levels(chain):
    async with client(chain.regional) as http:
        made = await http.post(
            "/Patient",
            json={
                "resourceType": "Patient",
                "meta": {"source": "hosp-a"},
                "name": [{"family": "Eklund", "given": ["Maja"]}],
                "birthDate": "1990-02-03",
            },
        )
        assert made.status_code == 201, made.text
        patient = made.json()
        assert patient["id"].startswith("hosp-a.ehr.")
        held = [
            p
            for p in chain.ehr.store["Patient"].values()
            if p.get("name", [{}])[0].get("family") == "Eklund"
        ]
        assert len(held) == 1
        r = await http.get(
            "/Appointment", params={"_source": "hosp-a", "status": "booked", "_count": "1"}
        )
        (appointment,) = [
            e["resource"] for e in r.json()["entry"] if e["search"]["mode"] == "match"
        ]
        etag = f'W/"{appointment["meta"]["versionId"]}"'
        changed = await http.put(
            f"/Appointment/{appointment['id']}",
            json={**appointment, "status": "cancelled"},
            headers={"If-Match": etag},
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["status"] == "cancelled"
        upstream_id = appointment["id"].split(".")[-1]
        assert chain.ehr.store["Appointment"][upstream_id]["status"] == "cancelled"
        stale = await http.put(
            f"/Appointment/{appointment['id']}",
            json={**appointment, "status": "booked"},
            headers={"If-Match": etag},
        )
        assert stale.status_code == 412, stale.text
        assert chain.ehr.store["Appointment"][upstream_id]["status"] == "cancelled"


async def test_a_bulk_export_through_two_levels(chain):
    async with client(chain.regional) as http:
        kick = await http.get(
            "/$export",
            params={"_type": "Patient,Appointment"},
            headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
        )
        assert kick.status_code == 202, kick.text
        # The job runs in this event loop: wait for it, then ask for its manifest.
        await asyncio.gather(*chain.regional.state.exports.running.values())
        status = await http.get(kick.headers["content-location"])
        assert status.status_code == 200, status.text
        manifest = status.json()
        exported: dict[str, list[dict]] = {}
        for item in manifest["output"]:
            r = await http.get(item["url"])
            assert r.status_code == 200
            exported.setdefault(item["type"], []).extend(
                orjson.loads(line) for line in r.content.splitlines()
            )
        assert manifest.get("error", []) == []
        patients = exported["Patient"]
        assert len(patients) == 20 and len({p["id"] for p in patients}) == 20
        assert {p["meta"]["source"] for p in patients} == {"hosp-a", "hosp-b"}
        held = len(chain.ehr.appointments) + len(chain.nyra.appointments)
        assert len(exported["Appointment"]) == held
        ids = {p["id"] for p in patients}
        for appointment in exported["Appointment"]:
            for ref in references(appointment):
                if ref.startswith("Patient/"):
                    assert ref.split("/")[1] in ids


async def test_an_id_that_outgrows_64_characters_a_level_up_is_refused_by_name(chain):
    long_id = "L" * 55  # "ehr." + 55 fits at the hospital; "hosp-a.ehr." + 55 does not
    chain.ehr.store["Patient"][long_id] = {
        "resourceType": "Patient",
        "id": long_id,
        "meta": {"versionId": "1"},
        "name": [{"family": "Longfellow"}],
    }
    async with (
        client(chain.regional) as http,
        chain.at_hospital_a() as a,
    ):
        below = await a.get("/Patient", params={"family": "Longfellow"})
        (entry,) = below.json()["entry"]
        assert entry["resource"]["id"] == f"ehr.{long_id}"
        r = await http.get("/Patient", params={"family": "Longfellow"})
        assert r.status_code == 200
        (entry,) = r.json()["entry"]
        assert entry["search"]["mode"] == "outcome"
        (issue,) = entry["resource"]["issue"]
        assert issue["severity"] == "warning"
        assert f"ehr.{long_id}" in issue["diagnostics"] and "left out" in issue["diagnostics"]


async def test_what_the_hospital_lets_the_region_see_bounds_what_the_region_serves(tmp_path):
    chain = Chain(tmp_path, scopes=("system/Patient.rs",))
    async with client(chain.regional) as http:
        patients = await http.get("/Patient", params={"_source": "hosp-a"})
        assert patients.status_code == 200
        assert [e["search"]["mode"] for e in patients.json()["entry"]] == ["match"] * 10
        r = await http.get("/Appointment", params={"_count": "100"})
        assert r.status_code == 200, r.text
        entries = r.json()["entry"]
        served = {
            e["resource"]["meta"]["source"] for e in entries if e["search"]["mode"] == "match"
        }
        assert served == {"hosp-b"}
        (outcome,) = [e["resource"] for e in entries if e["search"]["mode"] == "outcome"]
        assert outcome["issue"][0]["diagnostics"] == (
            "source hosp-a: the API key lacks the permission access to Appointment"
        )
