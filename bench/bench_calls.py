"""Vendor calls per FHIR request: the README walkthrough's reads and searches, counted at
the vendors.

A Leyr and a Nyra sandbox each serve on a loopback port (uvicorn, a thread of this
process), behind a small ASGI middleware that counts every request the sandbox receives:
the count is the vendor's, whatever the facade believes it sent. The facade is the
service itself (``create_app`` from a configuration naming both sources, no Redis,
no read cache unless said) served on a port of its own; each figure is one FHIR request
made over HTTP.

Each request is measured three ways, each in a facade started for it:

- ``cold``: the facade's first request (nothing kept: no directory, no slot lengths);
- ``warm``: after the directory is warm (every directory type searched once at each
  source, and the scenario's own preceding requests, such as the Patient pages before
  an Appointment page);
- ``again``: the same request once more, right after the warm one.

Rows about Slots run with ``cache_seconds = 60`` on both sources (the repeated search
within it is the point); all others without a read cache, as the sources are configured
by default.

    .venv/bin/python bench/bench_calls.py [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapter.sandbox import LeyrSandbox, NyraSandbox, RateLimits  # noqa: E402

LEYR, NYRA = "leyr-sandbox", "nyra-sandbox"
# Limits far above what one request needs: a figure is never a retry after a 429.
LIMITS = RateLimits(per_second=10_000, per_minute=100_000)


class Counting:
    """ASGI middleware: every request the vendor receives, by path."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").decode()
            self.paths.append(scope["path"] + (f"?{query}" if query else ""))
        await self.app(scope, receive, send)


@contextlib.contextmanager
def on_a_port(app: Any, lifespan: str = "off") -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan)
    )
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[sock]),), daemon=True)
    thread.start()
    try:
        for _ in range(400):
            if server.started:
                break
            time.sleep(0.025)
        else:
            raise RuntimeError("a server did not start within 10 s")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def config(leyr_url: str, nyra_url: str, leyr: LeyrSandbox, nyra: NyraSandbox, cache: float) -> str:
    ld, nd = leyr.defaults(), nyra.defaults()
    keys = ", ".join(
        "{ " + ", ".join(f'{k} = "{v}"' for k, v in key.items()) + " }" for key in nd["keys"]
    )
    return f"""
[server]
open_access = true
trusted_hosts = ["127.0.0.1:*"]

[sources.{LEYR}]
connector = "leyr"
base_url = "{leyr_url}"
emr = "{ld["emr"]}"
care_units = {json.dumps(ld["care_units"])}
timezone = "{ld["timezone"]}"
client_id = "{ld["client_id"]}"
client_secret = "{ld["client_secret"]}"
cache_seconds = {cache}

[sources.{NYRA}]
connector = "nyra"
base_url = "{nyra_url}"
timezone = "{nd["timezone"]}"
keys = [{keys}]
rate_limit = {{ per_second = {LIMITS.per_second}, per_minute = {LIMITS.per_minute} }}
cache_seconds = {cache}
"""


@dataclass
class World:
    """Both sandboxes on ports, counted; a facade is started per measurement."""

    leyr: LeyrSandbox
    nyra: NyraSandbox
    counted: dict[str, Counting]
    urls: dict[str, str]
    # Ids the requests need, found once from the sandboxes' data.
    ids: dict[str, str] = field(default_factory=dict)
    # The vendor paths each measurement called: (row, phase) -> vendor -> paths.
    paths: dict[tuple[str, str], dict[str, list[str]]] = field(default_factory=dict)

    @contextlib.contextmanager
    def facade(self, cache: float) -> Iterator[httpx.Client]:
        from adapter.app import create_app
        from adapter.settings import load_settings

        with tempfile.TemporaryDirectory() as root:
            path = Path(root) / "adapter.toml"
            path.write_text(
                config(self.urls["leyr"], self.urls["nyra"], self.leyr, self.nyra, cache)
            )
            app = create_app(load_settings(path, env={}), workers=1)
            with (
                on_a_port(app, lifespan="on") as base,
                httpx.Client(base_url=f"{base}/fhir", timeout=120) as http,
            ):
                yield http

    def mark(self) -> dict[str, int]:
        return {name: len(c.paths) for name, c in self.counted.items()}

    def since(self, mark: dict[str, int]) -> dict[str, list[str]]:
        return {name: c.paths[mark[name] :] for name, c in self.counted.items()}


DIRECTORY = ("Practitioner", "Location", "Organization", "Schedule", "HealthcareService", "Device")


def warm_directory(http: httpx.Client) -> None:
    for kind in DIRECTORY:
        for source in (LEYR, NYRA):
            r = http.get(f"/{kind}", params={"_source": source, "_count": "1"})
            if r.status_code != 200 and kind not in ("HealthcareService", "Device"):
                raise RuntimeError(f"{kind} at {source}: {r.status_code} {r.text[:200]}")


@dataclass
class Row:
    name: str
    request: Callable[[World], str]
    before: Callable[[World, httpx.Client], None] = lambda world, http: None
    cache: float = 0.0
    floors: str = ""


def get(http: httpx.Client, url: str) -> dict[str, Any]:
    r = http.get(url)
    if r.status_code != 200:
        raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
    body: dict[str, Any] = r.json()
    return body


def next_of(body: dict[str, Any]) -> str:
    for link in body.get("link") or ():
        if link["relation"] == "next":
            return str(link["url"]).split("/fhir", 1)[1]
    raise RuntimeError("no next page")


def patient_pages(world: World, http: httpx.Client) -> None:
    body = get(http, "/Patient?_count=20")
    get(http, next_of(body))


def first_appointment_page(world: World, http: httpx.Client) -> None:
    body = get(http, "/Appointment?_count=20")
    world.ids["next"] = next_of(body)


def days(first: int, last: int) -> tuple[str, str]:
    today = date.today()
    return (today + timedelta(days=first)).isoformat(), (today + timedelta(days=last)).isoformat()


def slot_url(actor: str) -> str:
    start, end = days(8, 22)  # 14 days
    return f"/Slot?schedule.actor={actor}&start=ge{start}&start=lt{end}&_count=50"


ROWS = [
    Row("metadata", lambda w: "/metadata"),
    Row("Patient?_count=5", lambda w: "/Patient?_count=5"),
    Row("Patient?_count=20", lambda w: "/Patient?_count=20"),
    Row("Patient/{leyr id}", lambda w: f"/Patient/{w.ids['leyr_patient']}"),
    Row("Patient/{nyra id}", lambda w: f"/Patient/{w.ids['nyra_patient']}"),
    Row(
        "Patient?name=rao&birthdate=ge1980&_source=nyra",
        lambda w: f"/Patient?name=rao&birthdate=ge1980&_source={NYRA}",
    ),
    Row("Patient?gender=female&_summary=count", lambda w: "/Patient?gender=female&_summary=count"),
    Row(
        "Appointment?status=booked&date=ge{today}&_include=Appointment:patient&_count=4",
        lambda w: (
            f"/Appointment?status=booked&date=ge{date.today().isoformat()}"
            "&_include=Appointment:patient&_count=4"
        ),
    ),
    Row(
        "Patient?_sort=-birthdate&_elements=name,birthDate&_count=3",
        lambda w: "/Patient?_sort=-birthdate&_elements=name,birthDate&_count=3",
    ),
    Row("Appointment?_count=20", lambda w: "/Appointment?_count=20"),
    Row(
        "Appointment?_count=20, after Patient pages",
        lambda w: "/Appointment?_count=20",
        before=patient_pages,
    ),
    Row(
        "Appointment?_count=20, its next page",
        lambda w: w.ids["next"],
        before=first_appointment_page,
    ),
    Row(
        "Appointment?_count=20&_include=Appointment:actor",
        lambda w: "/Appointment?_count=20&_include=Appointment:actor",
    ),
    Row(
        "Appointment?_source=leyr&_count=1&_include=Appointment:actor",
        lambda w: f"/Appointment?_source={LEYR}&_count=1&_include=Appointment:actor",
    ),
    Row(
        "Practitioner?name=dr&_revinclude=Appointment:practitioner&_count=1",
        lambda w: "/Practitioner?name=dr&_revinclude=Appointment:practitioner&_count=1",
    ),
    Row("Appointment?_source=nyra&_count=1", lambda w: f"/Appointment?_source={NYRA}&_count=1"),
    Row("Slot, one Nyra doctor, 14 days", lambda w: slot_url(w.ids["nyra_doctor"]), cache=60),
    Row("Slot, one Leyr practitioner, 14 days", lambda w: slot_url(w.ids["leyr_doctor"]), cache=60),
    Row("Patient/{nyra id}/$everything", lambda w: f"/Patient/{w.ids['nyra_patient']}/$everything"),
    Row("Patient/{leyr id}/$everything", lambda w: f"/Patient/{w.ids['leyr_patient']}/$everything"),
    Row("Patient/$everything?_count=4", lambda w: "/Patient/$everything?_count=4"),
    Row("Group", lambda w: "/Group"),
]


def measure(world: World, row: Row) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    with world.facade(row.cache) as http:
        row.before(world, http)
        mark = world.mark()
        get(http, row.request(world))
        out["cold"] = {k: len(v) for k, v in world.since(mark).items()}
        world.paths[row.name, "cold"] = world.since(mark)
    with world.facade(row.cache) as http:
        warm_directory(http)
        row.before(world, http)
        mark = world.mark()
        started = time.perf_counter()
        get(http, row.request(world))
        out["ms"] = {"warm": round((time.perf_counter() - started) * 1000)}
        out["warm"] = {k: len(v) for k, v in world.since(mark).items()}
        world.paths[row.name, "warm"] = world.since(mark)
        mark = world.mark()
        get(http, row.request(world))
        out["again"] = {k: len(v) for k, v in world.since(mark).items()}
        world.paths[row.name, "again"] = world.since(mark)
    return out


def find_ids(world: World) -> None:
    """The ids the walkthrough uses, found through a facade as a client finds them."""
    with world.facade(0) as http:
        for name, source in (("leyr_patient", LEYR), ("nyra_patient", NYRA)):
            body = get(http, f"/Patient?_source={source}&_count=1")
            world.ids[name] = body["entry"][0]["resource"]["id"]
        for name, source in (("nyra_doctor", NYRA), ("leyr_doctor", LEYR)):
            body = get(http, f"/Appointment?_source={source}&_count=1")
            world.ids[name] = next(
                p["actor"]["reference"]
                for p in body["entry"][0]["resource"]["participant"]
                if p["actor"]["reference"].startswith("Practitioner/")
            )


def cell(figures: dict[str, int]) -> str:
    return f"{figures.get('leyr', 0)} + {figures.get('nyra', 0)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--only", help="rows whose name holds this text")
    parser.add_argument("--paths", action="store_true", help="print the vendor paths of each")
    args = parser.parse_args()

    leyr = LeyrSandbox(seed=7, patients=args.patients)
    nyra = NyraSandbox(seed=7, patients=args.patients, keys=1, limits=LIMITS)
    counted = {"leyr": Counting(leyr.app), "nyra": Counting(nyra.app)}
    with on_a_port(counted["leyr"]) as leyr_url, on_a_port(counted["nyra"]) as nyra_url:
        world = World(leyr, nyra, counted, {"leyr": leyr_url, "nyra": nyra_url})
        find_ids(world)
        print("| request | cold (Leyr + Nyra) | warm | again | warm ms |")
        print("|---|---|---|---|---|")
        for row in ROWS:
            if args.only and args.only not in row.name:
                continue
            got = measure(world, row)
            print(
                f"| `{row.name}` | {cell(got['cold'])} | {cell(got['warm'])} | "
                f"{cell(got['again'])} | {got['ms']['warm']} |",
                flush=True,
            )
            if args.paths:
                for phase in ("cold", "warm", "again"):
                    for vendor, paths in world.paths[row.name, phase].items():
                        for path in paths:
                            print(f"    {phase} {vendor} {path}")


if __name__ == "__main__":
    main()
