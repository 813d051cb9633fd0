"""A deployment for the Bulk Data export tests (both sandboxes, the clients, one export
directory) and a Bulk Data client's steps against it: kick off, poll the status URL,
download each file."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from fhir_check import validate
from harness import FAST
from serving import on_a_port

from adapter.app import create_app
from adapter.auth.clients import load_clients
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import ExportSettings, Settings

__all__ = [
    "ASYNC",
    "LEYR",
    "NYRA",
    "Deployment",
    "Served",
    "download",
    "finish",
    "kick_off",
    "references",
    "total",
]

LEYR, NYRA = "leyr-x", "nyra-x"
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
POLLS = 3000  # status requests before a test gives up on a job


class Deployment:
    """Both sandboxes and the clients; apps made over them share one export directory."""

    def __init__(self, root: Path, file_max_records: int = 7) -> None:
        self.leyr = LeyrSandbox(seed=4, patients=15)
        self.nyra = NyraSandbox(seed=4, patients=15, limits=FAST)
        self.sources = {
            LEYR: {"connector": "leyr", **self.leyr.defaults()},
            NYRA: {"connector": "nyra", **self.nyra.defaults()},
        }
        # Status polls come every 10 ms: no client here meets its own rate limit however
        # long a job takes on a busy machine (those limits have tests of their own).
        unlimited = {"rate_limit": {"per_minute": 1_000_000}}
        raw = {
            "full": {"secret": "s" * 24, "scopes": ["system/*.cruds"], **unlimited},
            "other": {"secret": "o" * 24, "scopes": ["system/*.rs"], **unlimited},
            "patients": {"secret": "p" * 24, "scopes": ["system/Patient.rs"], **unlimited},
            "nyra-only": {
                "secret": "n" * 24,
                "scopes": ["system/*.rs"],
                "sources": [NYRA],
                **unlimited,
            },
        }
        self.clients = load_clients(raw, list(self.sources))
        self.settings = Settings(
            sources=self.sources,
            clients=self.clients,
            cursor_key=b"c" * 32,
            token_key=b"t" * 32,
            token_minutes=60,
            export=ExportSettings(dir=str(root), file_max_records=file_max_records),
        )

    def app(self) -> Any:
        transports = {LEYR: self.leyr.transport(), NYRA: self.nyra.transport()}
        app = create_app(self.settings, transports=transports)
        app.state.exports.poll_seconds = 0.05
        app.state.exports.page_size = 5
        return app

    def token(self, app: Any, name: str) -> dict[str, str]:
        client = self.clients[name]
        token, _ = app.state.tokens.issue(client, dict(client.scopes))
        return {"Authorization": f"Bearer {token}"}


class Served:
    """An app on a loopback port, with uvicorn (and so its lifespan) in a thread, and a
    client of it (``http``, at ``base``)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._running = contextlib.ExitStack()
        self.base = self._running.enter_context(on_a_port(app, stop_seconds=20)) + "/fhir"
        self.http = self._running.enter_context(httpx.Client(base_url=self.base, timeout=30))

    def stop(self) -> None:
        self._running.close()


def kick_off(served: Served, auth: dict[str, str], path: str = "/$export", **params: str) -> str:
    r = served.http.get(path, params=params, headers={**ASYNC, **auth})
    assert r.status_code == 202, r.text
    return r.headers["content-location"]


def finish(served: Served, auth: dict[str, str], status_url: str) -> dict[str, Any]:
    """Poll the status URL until the manifest comes (bounded)."""
    for _ in range(POLLS):
        r = served.http.get(status_url, headers=auth)
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 202, r.text
        assert r.headers["x-progress"]
        assert r.headers["retry-after"].isdigit()
        time.sleep(0.01)
    raise AssertionError("the export did not finish")


def download(served: Served, auth: dict[str, str], manifest: dict[str, Any]) -> dict[str, list]:
    """Every output resource by type, each line validated as R4."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for item in manifest["output"]:
        r = served.http.get(item["url"], headers=auth)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [orjson.loads(line) for line in r.content.splitlines()]
        assert len(lines) == item["count"]
        for resource in lines:
            validate(resource)
            assert resource["resourceType"] == item["type"]
        by_type.setdefault(item["type"], []).extend(lines)
    return by_type


def held(deployment: Deployment, resource_type: str, *sources: str) -> int:
    """How many records of ``resource_type`` the sandboxes of ``sources`` (all by default)
    hold, counted in their own tables: what an export must hold, by the vendor's count
    rather than the facade's."""
    tables = {"Patient": "patients", "Appointment": "appointments"}[resource_type]
    count = 0
    for source in sources or (LEYR, NYRA):
        kept = getattr(deployment.leyr if source == LEYR else deployment.nyra, tables)
        for table in kept.values() if isinstance(kept, dict) else (kept,):
            count += sum(1 for _ in table)
    return count


def total(served: Served, auth: dict[str, str], resource_type: str, **params: str) -> int:
    r = served.http.get(f"/{resource_type}", params={"_summary": "count", **params}, headers=auth)
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def references(resources: dict[str, list[dict[str, Any]]]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str) and "/" in ref and not ref.startswith("#"):
                kind, _, fhir_id = ref.rpartition("/")
                found.add((kind.rpartition("/")[2], fhir_id))
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for rs in resources.values():
        for resource in rs:
            walk(resource)
    return found
