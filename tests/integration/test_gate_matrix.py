"""One gate, every road: no resource of a type outside the token's SMART scopes, nor from a
source outside the client's ``sources``, reaches the client or its Subscription endpoint.

Clients with one narrow scope each (and one limited to each source) take every road out of
the service, on both sources: search and read of each type, each ``_include`` and
``_revinclude`` the CapabilityStatement advertises, both forms of ``Patient/$everything``,
the three bulk exports with and without ``_type``, Group read and search, Subscription
create, and rest-hook delivery with the full payload. What comes back is walked by
:func:`assert_visible`; where the road itself is out of scope the answer is a 403
OperationOutcome; where it only touches a type out of scope (an include), what it would
have added is left out and the Bundle says so in an outcome entry (``suppressed``).

Everything runs in process: the sandboxes behind ``httpx`` ASGI transports, the export
jobs awaited as tasks, the Subscription poller driven round by round, and notifications
taken by an injected transport; nothing waits on a clock.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from fhir_check import validate
from harness import FAST
from visibility import assert_visible, entries, secret_of, source_of, weekday

from adapter.app import create_app
from adapter.auth.clients import load_clients
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import ExportSettings, Settings, SubscriptionSettings
from mappings import decode_id

LEYR, NYRA = "leyr-a", "nyra-b"
SOURCES = (LEYR, NYRA)
HOOKS = "http://hooks.test"
JSON = {"content-type": "application/fhir+json"}
Params = list[tuple[str, str]] | tuple[()]
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
# What a bulk export holds without _type: at system level every listable type; for a
# Patient or Group export the patient compartment.
COMPARTMENT = ("Patient", "Appointment")
EXPORTED = (
    *COMPARTMENT,
    "Practitioner",
    "Location",
    "Organization",
    "HealthcareService",
    "Schedule",
    "Device",
)
# Types the service keeps itself rather than reading them from a source.
NOT_FROM_SOURCES = frozenset({"ConceptMap", "Group", "Subscription", "Basic"})
_SCOPE = re.compile(r"system/(\*|[A-Z][A-Za-z]+)\.([cruds]+)")


@dataclass(frozen=True)
class Client:
    """A configured client: its SMART v2 system scopes, and its sources (None: all)."""

    scopes: tuple[str, ...]
    sources: tuple[str, ...] | None = None

    def may(self, resource_type: str, letter: str) -> bool:
        """Whether a scope grants ``letter`` (of ``cruds``) on ``resource_type``."""
        for scope in self.scopes:
            match = _SCOPE.fullmatch(scope)
            assert match, scope
            if match.group(1) in ("*", resource_type) and letter in match.group(2):
                return True
        return False

    def readable(self, universe: set[str]) -> frozenset[str]:
        return frozenset(t for t in universe if self.may(t, "r"))

    @property
    def reads_all(self) -> bool:
        return self.may("*", "r")

    @property
    def seen(self) -> tuple[str, ...]:
        return self.sources if self.sources is not None else SOURCES

    def sees(self, source: str) -> bool:
        return source in self.seen


CLIENTS = {
    "patient-only": Client(("system/Patient.rs",)),
    "appointment-only": Client(("system/Appointment.rs",)),
    "practitioner-only": Client(("system/Practitioner.rs",)),
    "calendar": Client(("system/Schedule.rs", "system/Slot.rs")),
    "subscription-only": Client(("system/Subscription.cruds",)),
    "everything": Client(("system/*.cruds",)),
    "nyra-only": Client(("system/*.cruds",), (NYRA,)),
    "leyr-only": Client(("system/*.cruds",), (LEYR,)),
    "sub-patient": Client(("system/Subscription.cruds", "system/Patient.rs")),
    "sub-appointment": Client(("system/Subscription.cruds", "system/Appointment.rs")),
}


# -- what may come back ------------------------------------------------------------------------


def suppressed_issues(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The issues of a Bundle's outcome entries that say something was left out."""
    return [
        issue
        for e in body.get("entry") or []
        if e["search"]["mode"] == "outcome"
        for issue in e["resource"]["issue"]
        if issue.get("code") == "suppressed"
    ]


def assert_suppression_told(body: dict[str, Any], left_out: set[str], what: str) -> None:
    """Each type in ``left_out`` is named by an outcome issue: information, suppressed."""
    issues = suppressed_issues(body)
    for resource_type in sorted(left_out):
        told = [
            i
            for i in issues
            if i.get("severity") == "information" and resource_type in i.get("diagnostics", "")
        ]
        assert told, (
            f"{what}: the {resource_type}s left out are not told by an outcome entry "
            f"(severity information, code suppressed); the outcome issues are {issues}"
        )


def assert_forbidden(response: httpx.Response, what: str) -> None:
    assert response.status_code == 403, f"{what}: {response.status_code} {response.text[:300]}"
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", what
    assert [i["code"] for i in body["issue"]] == ["forbidden"], f"{what}: {body}"


def assert_not_found(response: httpx.Response, what: str) -> None:
    assert response.status_code == 404, f"{what}: {response.status_code} {response.text[:300]}"
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", what
    assert body["issue"][0]["code"] == "not-found", f"{what}: {body}"


# -- the deployment ----------------------------------------------------------------------------


class Hooks:
    """Rest-hook endpoints under ``http://hooks.test/{name}``, as the transport the
    Subscription poller delivers through: each notification's body, by endpoint name."""

    def __init__(self) -> None:
        self.got: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._take)

    def _take(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        validate(body)
        self.got[request.url.path.strip("/")].append(body)
        return httpx.Response(200)

    def resources(self, name: str) -> list[dict[str, Any]]:
        return [e["resource"] for b in self.got[name] for e in b.get("entry") or []]


class World:
    """Both sandboxes behind ``leyr-a`` and ``nyra-b``, the clients of :data:`CLIENTS`
    (or ``clients``), and the app in process over them."""

    def __init__(self, root: Path, clients: dict[str, Client] = CLIENTS) -> None:
        self.root = root
        self.leyr = LeyrSandbox(seed=6, patients=8)
        self.nyra = NyraSandbox(seed=6, patients=8, limits=FAST)
        self.sources = {
            LEYR: {"connector": "leyr", **self.leyr.defaults()},
            NYRA: {"connector": "nyra", **self.nyra.defaults()},
        }
        self.hooks = Hooks()
        self.loop = asyncio.new_event_loop()
        self.app: Any = None
        self.http: httpx.AsyncClient | None = None
        self.started(clients)
        self.universe = {r["type"] for r in self.statement()["resource"]}

    def started(self, clients: dict[str, Client]) -> None:
        """The app (anew, over the same sandboxes and directories) with ``clients``."""
        self.stop()
        raw = {
            name: {
                "secret": secret_of(name),
                "scopes": list(client.scopes),
                "rate_limit": {"per_minute": 100_000},
                **({"sources": list(client.sources)} if client.sources is not None else {}),
            }
            for name, client in clients.items()
        }
        settings = Settings(
            sources=self.sources,
            clients=load_clients(raw, list(self.sources)),
            cursor_key=b"g" * 32,
            token_key=b"t" * 32,
            token_minutes=60,
            audit_ndjson=str(self.root / "audit.ndjson"),
            export=ExportSettings(dir=str(self.root / "export")),
            subscriptions=SubscriptionSettings(
                dir=str(self.root / "subscriptions"),
                poll_seconds=60.0,  # never waited for: the tests take the rounds
                allowed_endpoints=(f"{HOOKS}:*",),
            ),
        )
        transports = {
            LEYR: self.leyr.transport(),
            NYRA: self.nyra.transport(),
            "subscriptions": self.hooks.transport(),
        }
        self.app = create_app(settings, transports=transports)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://fhir.test"
        )
        self._tokens: dict[str, str] = {}
        self._reference: dict[str, dict[str, Any]] = {}

    def stop(self) -> None:
        if self.http is not None:
            self.loop.run_until_complete(self.http.aclose())
            self.loop.run_until_complete(self.app.state.aclose())
            self.http = None

    def close(self) -> None:
        self.stop()
        self.loop.close()

    def call(self, method: str, url: str, client: str | None = None, **kw: Any) -> httpx.Response:
        """A request (as ``client``, with its token), its FHIR JSON body validated as R4."""
        assert self.http is not None
        headers = {**kw.pop("headers", {})}
        if client is not None:
            headers["authorization"] = f"Bearer {self.token(client)}"
        r = self.loop.run_until_complete(self.http.request(method, url, headers=headers, **kw))
        if r.headers.get("content-type", "").startswith("application/fhir+json"):
            validate(r.json())
        return r

    def get(self, url: str, client: str, params: Params = ()) -> httpx.Response:
        return self.call("GET", url, client, params=list(params))

    def token(self, client: str) -> str:
        if client not in self._tokens:
            r = self.loop.run_until_complete(
                self.http.post(  # type: ignore[union-attr]
                    "/auth/token",
                    data={"grant_type": "client_credentials"},
                    auth=(client, secret_of(client)),
                )
            )
            assert r.status_code == 200, r.text
            self._tokens[client] = r.json()["access_token"]
        return self._tokens[client]

    def reference(self, url: str, params: Params = ()) -> dict[str, Any]:
        """The answer the ``everything`` client (every type, every source) gets."""
        key = f"{url}?{urlencode(list(params))}"
        if key not in self._reference:
            r = self.get(url, "everything", params)
            assert r.status_code == 200, f"{key}: {r.text[:300]}"
            self._reference[key] = r.json()
        return self._reference[key]

    def statement(self) -> dict[str, Any]:
        r = self.call("GET", "/fhir/metadata")
        assert r.status_code == 200
        return r.json()["rest"][0]  # type: ignore[no-any-return]

    def advertised(self, key: str) -> dict[str, list[str]]:
        """Type -> its ``searchInclude`` (or ``searchRevInclude``) values, as advertised."""
        return {r["type"]: r[key] for r in self.statement()["resource"] if r.get(key)}

    def search_params(self, resource_type: str, source: str) -> list[tuple[str, str]]:
        """A search of ``resource_type`` at ``source`` with matches (Slot: a Schedule's
        slots on a weekday ahead)."""
        params = [("_source", source), ("_count", "3")]
        if resource_type == "Slot":
            schedule = self.reference("/fhir/Schedule", [("_source", source), ("_count", "1")])
            day = weekday(3)
            params += [
                ("schedule", f"Schedule/{schedule['entry'][0]['resource']['id']}"),
                ("start", f"ge{day}"),
                ("start", f"lt{day + timedelta(days=1)}"),
            ]
        return params

    def one_id(self, resource_type: str, source: str) -> str | None:
        """The id of a ``resource_type`` at ``source``, if it has any."""
        body = self.reference(f"/fhir/{resource_type}", self.search_params(resource_type, source))
        found = entries(body, "match")
        return found[0][2] if found else None


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """One deployment for the tests that only read (searches, reads, exports, Groups,
    Subscription creates that no poller takes up)."""
    w = World(tmp_path_factory.mktemp("gate"))
    yield w
    w.close()


@pytest.fixture
def fresh(tmp_path: Path):
    """A deployment of a test's own, for the tests that write or deliver."""
    w = World(tmp_path)
    yield w
    w.close()


# -- search and read ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CLIENTS))
def test_search_and_read_of_each_type(world, name):
    """Search and read of each type a source serves, on each source: 403 out of scope; a
    source the client may not use answers no matches and reads as unknown; otherwise the
    same matches the unrestricted client gets."""
    client = CLIENTS[name]
    readable = client.readable(world.universe)
    served = sorted(world.universe - NOT_FROM_SOURCES)
    for resource_type in served:
        for source in SOURCES:
            what = f"{name}: {resource_type} search at {source}"
            url = f"/fhir/{resource_type}"
            params = world.search_params(resource_type, source)
            r = world.get(url, name, params)
            if not client.may(resource_type, "s"):
                assert_forbidden(r, what)
            else:
                assert r.status_code == 200, f"{what}: {r.text[:300]}"
                body = r.json()
                assert_visible(body, readable, client.seen)
                if client.sees(source):
                    assert entries(body) == entries(world.reference(url, params)), what
                else:
                    assert "entry" not in body and body["total"] == 0, what

            fhir_id = world.one_id(resource_type, source)
            if fhir_id is None:
                continue
            what = f"{name}: read of {resource_type}/{fhir_id}"
            r = world.get(f"/fhir/{resource_type}/{fhir_id}", name)
            if not client.may(resource_type, "r"):
                assert_forbidden(r, what)
            elif not client.sees(source):
                assert_not_found(r, what)
            else:
                assert r.status_code == 200, f"{what}: {r.text[:300]}"
                assert r.json()["id"] == fhir_id
                assert_visible(r.json(), readable, client.seen)


@pytest.mark.parametrize("name", ["everything", "nyra-only", "leyr-only", "patient-only"])
def test_a_search_of_every_source_holds_only_what_the_client_may_use(world, name):
    """A search without ``_source`` finds at the client's sources, all of them, only."""
    client = CLIENTS[name]
    for resource_type in ("Patient", "Practitioner", "Location"):
        r = world.get(f"/fhir/{resource_type}", name, [("_count", "50")])
        if not client.may(resource_type, "s"):
            assert_forbidden(r, f"{name}: {resource_type} search")
            continue
        assert r.status_code == 200, r.text
        found = assert_visible(r.json(), client.readable(world.universe), client.seen)
        assert {source_of(f) for f in found} == set(client.seen), (name, resource_type)


# -- _include and _revinclude ------------------------------------------------------------------


def check_related(world: World, name: str, key: str, parameter: str) -> int:
    """Every value of ``key`` (searchInclude, searchRevInclude) on every type that
    advertises it, on both sources, for ``name``: the matches as the unrestricted client
    gets them, and of what it gets added only what ``name`` may read, the rest told as
    suppressed. The number of searches made."""
    client = CLIENTS[name]
    readable = client.readable(world.universe)
    made = 0
    for resource_type, values in sorted(world.advertised(key).items()):
        for value in values:
            for source in SOURCES:
                what = f"{name}: {resource_type}?{parameter}={value} at {source}"
                url = f"/fhir/{resource_type}"
                params = [*world.search_params(resource_type, source), (parameter, value)]
                r = world.get(url, name, params)
                made += 1
                if not client.may(resource_type, "s"):
                    assert_forbidden(r, what)
                    continue
                assert r.status_code == 200, f"{what}: {r.text[:300]}"
                body = r.json()
                assert_visible(body, readable, client.seen)
                full = world.reference(url, params)
                expected = [
                    (mode, kind, fhir_id)
                    for mode, kind, fhir_id in entries(full)
                    if kind in readable and client.sees(decode_id(fhir_id).source)
                ]
                assert entries(body) == expected, what
                if not client.sees(source):
                    continue
                assert entries(body, "match"), f"{what}: no matches to include from"
                left_out = {kind for _, kind, _ in entries(full, "include")} - readable
                assert_suppression_told(body, left_out, what)
                if client.reads_all:
                    assert not suppressed_issues(body), f"{what}: nothing was left out"
    return made


@pytest.mark.parametrize("name", list(CLIENTS))
def test_include_adds_only_readable_types(world, name):
    """Each advertised ``_include``: the included resources of types the token may not
    read are left out, and told of as suppressed; the matches are all there."""
    assert check_related(world, name, "searchInclude", "_include")


@pytest.mark.parametrize("name", list(CLIENTS))
def test_revinclude_adds_only_readable_types(world, name):
    """Each advertised ``_revinclude``: the referencing resources (Appointments) are left
    out for a token that may not read them, and told of as suppressed."""
    assert check_related(world, name, "searchRevInclude", "_revinclude")


def test_the_advertised_includes_are_taken(world):
    """The include tests take what the CapabilityStatement lists: it lists the includes
    whose leaks they are there to catch (an empty list would pass them all)."""
    includes = world.advertised("searchInclude")
    revincludes = world.advertised("searchRevInclude")
    assert {"Appointment", "Schedule", "Slot"} <= set(includes)
    assert {"Patient", "Practitioner"} <= set(revincludes)
    assert "Appointment:practitioner" in includes["Appointment"]
    assert revincludes["Patient"] == ["Appointment:patient"]


# -- Patient/$everything -----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CLIENTS))
def test_everything_holds_only_readable_types(world, name):
    """Both forms of ``Patient/$everything``: 403 without read of Patient; a patient of a
    source the client may not use is unknown; otherwise only the types the token may read,
    the same of them as the unrestricted client gets."""
    client = CLIENTS[name]
    readable = client.readable(world.universe)
    everyone = world.get("/fhir/Patient/$everything", name, [("_count", "3")])
    if not client.may("Patient", "r"):
        assert_forbidden(everyone, f"{name}: Patient/$everything")
    else:
        assert everyone.status_code == 200, everyone.text
        body = everyone.json()
        found = assert_visible(body, readable, client.seen)
        assert entries(body, "match"), f"{name}: Patient/$everything found no patient"
        assert {source_of(f) for f in found} <= set(client.seen)
    for source in SOURCES:
        patient = world.one_id("Patient", source)
        what = f"{name}: Patient/{patient}/$everything"
        r = world.get(f"/fhir/Patient/{patient}/$everything", name)
        if not client.may("Patient", "r"):
            assert_forbidden(r, what)
        elif not client.sees(source):
            assert_not_found(r, what)
        else:
            assert r.status_code == 200, f"{what}: {r.text[:300]}"
            body = r.json()
            assert_visible(body, readable, client.seen)
            assert entries(body, "match") == [("match", "Patient", patient)], what
            full = world.reference(f"/fhir/Patient/{patient}/$everything")
            assert len({kind for _, kind, _ in entries(full)}) > 3, "a record of several types"
            expected = [e for e in entries(full) if e[1] in readable]
            assert entries(body) == expected, what


# -- bulk export -------------------------------------------------------------------------------


def _export_cases() -> list[tuple[str, str, str | None]]:
    cases = []
    for name in ("patient-only", "appointment-only", "everything", "nyra-only", "leyr-only"):
        client = CLIENTS[name]
        paths = ["$export", "Patient/$export"]
        if client.may("Group", "r"):
            paths += [f"Group/{s}/$export" for s in SOURCES]
        for path in paths:
            for types in (None, "Patient", "Appointment", "Patient,Appointment"):
                cases.append((name, path, types))
    return cases


def finish(world: World, name: str, status_url: str) -> dict[str, Any]:
    """The manifest, once the job (a task on the world's loop) has run to its end."""
    job = status_url.rsplit("/", 1)[1]
    task = world.app.state.exports.running.get(job)
    if task is not None:
        world.loop.run_until_complete(asyncio.wait([task]))
    r = world.call("GET", status_url, name)
    assert r.status_code == 200, f"the export did not finish: {r.status_code} {r.text[:200]}"
    return r.json()  # type: ignore[no-any-return]


def exported(world: World, name: str, manifest: dict[str, Any]) -> dict[str, list[dict]]:
    """Every line of every output file, by the type the manifest says it holds."""
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in manifest["output"]:
        r = world.call("GET", item["url"], name)
        assert r.status_code == 200
        lines = [orjson.loads(line) for line in r.content.splitlines()]
        assert len(lines) == item["count"]
        for resource in lines:
            validate(resource)
            assert resource["resourceType"] == item["type"], item
        by_type[item["type"]].extend(lines)
    return by_type


def count_of(world: World, resource_type: str, source: str) -> int:
    body = world.reference(f"/fhir/{resource_type}", [("_source", source), ("_summary", "count")])
    return int(body["total"])


@pytest.mark.parametrize(
    ("name", "path", "types"), _export_cases(), ids=lambda v: "all-types" if v is None else v
)
def test_export_holds_only_readable_types_and_seen_sources(world, name, path, types):
    """``$export``, ``Patient/$export`` and ``Group/{source}/$export``: a ``_type`` naming a
    type the token may not read is a 403; without ``_type`` the export holds the types it
    may read; every line is of those types and the client's sources (the Group's one),
    each resource of them once."""
    client = CLIENTS[name]
    readable = client.readable(world.universe)
    what = f"{name}: {path} _type={types}"
    default = EXPORTED if path == "$export" else COMPARTMENT
    served = world.app.state.facade.declared.types
    asked = types.split(",") if types else [t for t in default if t in readable and t in served]
    params = {"_type": types} if types else {}
    r = world.call("GET", f"/fhir/{path}", name, params=params, headers=ASYNC)
    group = path.split("/")[1] if path.startswith("Group/") else None
    if any(t not in readable for t in asked):
        assert_forbidden(r, what)
        return
    if group is not None and not client.sees(group):
        assert_not_found(r, what)
        return
    assert r.status_code == 202, f"{what}: {r.status_code} {r.text[:300]}"
    manifest = finish(world, name, r.headers["content-location"])
    assert manifest["error"] == [], what
    sources = (group,) if group is not None else client.seen
    held = {t for t in asked if any(count_of(world, t, s) for s in sources)}
    assert {item["type"] for item in manifest["output"]} == held, what
    resources = exported(world, name, manifest)
    for resource in (line for lines in resources.values() for line in lines):
        assert_visible(resource, readable, sources)
    for resource_type in asked:
        ids = [r["id"] for r in resources[resource_type]]
        assert len(ids) == len(set(ids)), f"{what}: a {resource_type} exported twice"
        for source in SOURCES:
            mine = [i for i in ids if decode_id(i).source == source]
            expected = count_of(world, resource_type, source) if source in sources else 0
            assert len(mine) == expected, f"{what}: {resource_type}s of {source}"


# -- Groups ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CLIENTS))
def test_groups_are_the_sources_the_client_may_use(world, name):
    """A Group is a source: search finds those the client may use, a read of another is
    unknown (404), and both need the Group scope."""
    client = CLIENTS[name]
    search = world.get("/fhir/Group", name)
    if not client.may("Group", "s"):
        assert_forbidden(search, f"{name}: Group search")
    else:
        assert search.status_code == 200, search.text
        body = search.json()
        assert_visible(body, client.readable(world.universe), client.seen)
        assert sorted(fhir_id for _, _, fhir_id in entries(body)) == sorted(client.seen)
        assert body["total"] == len(client.seen)
    for source in SOURCES:
        what = f"{name}: read of Group/{source}"
        r = world.get(f"/fhir/Group/{source}", name)
        if not client.may("Group", "r"):
            assert_forbidden(r, what)
        elif not client.sees(source):
            assert_not_found(r, what)
        else:
            assert r.status_code == 200, f"{what}: {r.text[:300]}"
            assert r.json()["id"] == source and r.json()["meta"]["source"] == source


# -- Subscriptions -----------------------------------------------------------------------------


def subscription(hook: str, criteria: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "gate matrix",
        "criteria": criteria,
        "channel": {
            "type": "rest-hook",
            "endpoint": f"{HOOKS}/{hook}",
            "payload": "application/fhir+json",
        },
    }


@pytest.mark.parametrize("criteria_type", ["Patient", "Appointment"])
@pytest.mark.parametrize("name", list(CLIENTS))
def test_subscribing_needs_read_of_the_criteria_type(world, name, criteria_type):
    """A Subscription tells of the resources its criteria finds: making one needs the
    Subscription create scope and read of the criteria's type (else 403, forbidden)."""
    client = CLIENTS[name]
    criteria = f"{criteria_type}?"
    what = f"{name}: Subscription on {criteria}"
    r = world.call(
        "POST", "/fhir/Subscription", name, json=subscription(name, criteria), headers=JSON
    )
    if not client.may("Subscription", "c"):
        assert_forbidden(r, what)
        assert r.headers["www-authenticate"].endswith('error="insufficient_scope"')
    elif not client.may(criteria_type, "r"):
        assert_forbidden(r, what)
    else:
        assert r.status_code == 201, f"{what}: {r.text[:300]}"
        assert r.json()["criteria"] == criteria and r.json()["status"] == "requested"


class Deliveries:
    """Subscriptions made over HTTP and the poller's rounds taken one by one."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.made: dict[str, tuple[str, str]] = {}  # hook -> (client, Subscription id)

    def subscribe(self, hook: str, client: str, criteria: str) -> None:
        r = self.world.call(
            "POST", "/fhir/Subscription", client, json=subscription(hook, criteria), headers=JSON
        )
        assert r.status_code == 201, f"{client}: {r.text[:300]}"
        self.made[hook] = (client, r.json()["id"])

    def status(self, hook: str) -> str:
        client, sub_id = self.made[hook]
        r = self.world.get(f"/fhir/Subscription/{sub_id}", client)
        assert r.status_code == 200, r.text
        return str(r.json()["status"])

    def rounds_until(self, check: Any, what: str, limit: int = 40) -> None:
        poller = self.world.app.state.subscriptions
        for _ in range(limit):
            if check():
                return
            self.world.loop.run_until_complete(poller.round())
        assert check(), f"not within {limit} rounds: {what}"

    def one_more_round(self) -> None:
        """A round after what was waited for: anything that would leak late shows."""
        self.world.loop.run_until_complete(self.world.app.state.subscriptions.round())

    def all_active(self) -> None:
        self.rounds_until(
            lambda: all(self.status(h) == "active" for h in self.made), "every Subscription active"
        )


def new_patient(source: str, family: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "meta": {"source": source},
        "name": [{"given": ["Gate"], "family": family}],
        "gender": "female",
        "birthDate": "1990-04-05",
    }
    if source == LEYR:
        body["telecom"] = [{"system": "phone", "value": "+46701234567"}]
        body["identifier"] = [{"system": "urn:oid:1.2.752.129.2.1.3.1", "value": "199004052380"}]
    else:
        body["telecom"] = [{"system": "phone", "value": "+919812345678"}]
    return body


def told_ids(world: World, hook: str) -> set[str]:
    return {r["id"] for r in world.hooks.resources(hook)}


def test_delivery_holds_only_the_criteria_type_from_the_clients_sources(fresh):
    """Full-payload notifications, while another client creates a Patient at each source
    and each vendor changes records of its own: each Subscription is told only of its
    criteria's type, readable by its owner, from its owner's sources."""
    world = fresh
    subs = Deliveries(world)
    subs.subscribe("nyra-patients", "nyra-only", "Patient?")
    subs.subscribe("leyr-patients", "leyr-only", "Patient?")
    subs.subscribe("patients", "sub-patient", "Patient?")
    subs.subscribe("appointments", "sub-appointment", "Appointment?")
    subs.subscribe("all-patients", "everything", "Patient?")
    subs.subscribe("all-appointments", "everything", "Appointment?")
    subs.all_active()

    # Another client creates a Patient at each source through the facade, and each vendor
    # changes a patient and an appointment of its own.
    made = {}
    for source in SOURCES:
        r = world.call(
            "POST",
            "/fhir/Patient",
            "everything",
            json=new_patient(source, "Gatekeep"),
            headers=JSON,
        )
        assert r.status_code == 201, r.text
        made[source] = r.json()["id"]
    next(iter(world.leyr.patients["L0_1"]))["last_name"] = "Vendorsson"
    next(iter(world.nyra.patients))["name"] = "Vendor Rao"
    next(iter(world.nyra.appointments))["notes"] = "moved by the front desk"
    next(iter(world.leyr.appointments["L0_1"]))["status"] = "cancelled"

    def everything_told() -> bool:
        patients = world.hooks.resources("all-patients")
        appointments = world.hooks.resources("all-appointments")
        return (
            set(made.values()) <= told_ids(world, "all-patients")
            and {source_of(p) for p in patients} >= {LEYR, NYRA}
            and {source_of(p) for p in patients if p["id"] not in made.values()} >= {LEYR, NYRA}
            and {source_of(a) for a in appointments} >= {LEYR, NYRA}
        )

    subs.rounds_until(everything_told, "the unrestricted client told of every change")
    subs.one_more_round()

    universe = world.universe
    for hook, (client, _) in subs.made.items():
        criteria_type = "Appointment" if "appointments" in hook else "Patient"
        readable = CLIENTS[client].readable(universe) & {criteria_type}
        for body in world.hooks.got[hook]:
            assert body["type"] == "history"
            assert_visible(body, readable, CLIENTS[client].seen)
        assert world.hooks.got[hook], f"{hook}: nothing delivered"
    assert made[NYRA] in told_ids(world, "nyra-patients")
    assert made[LEYR] not in told_ids(world, "nyra-patients")
    assert made[LEYR] in told_ids(world, "leyr-patients")
    assert set(made.values()) <= told_ids(world, "patients")

    # Each delivery left one audit record: who, which Subscription, how many of each
    # type; no resource of a patient named.
    events = [
        orjson.loads(line)
        for line in (world.root / "audit.ndjson").read_bytes().splitlines()
        if b'"110106"' in line
    ]
    for hook, (client, sub_id) in subs.made.items():
        mine = [
            e for e in events if e["entity"][0]["what"]["reference"] == f"Subscription/{sub_id}"
        ]
        criteria_type = "Appointment" if "appointments" in hook else "Patient"
        assert [(e["agent"][0]["who"]["display"], e["entity"][0]["detail"]) for e in mine] == [
            (client, [{"type": criteria_type, "valueString": str(len(body["entry"]))}])
            for body in world.hooks.got[hook]
        ], hook
        assert all(len(e["entity"]) == 1 for e in mine)


def test_delivery_stops_at_scopes_taken_away(fresh):
    """A client whose read of the criteria type is taken out of its configuration after it
    subscribed is told nothing more of that type."""
    world = fresh
    subs = Deliveries(world)
    subs.subscribe("patients", "sub-patient", "Patient?")
    subs.subscribe("all-patients", "everything", "Patient?")
    subs.all_active()
    before = len(world.hooks.got["patients"])
    narrowed = {**CLIENTS, "sub-patient": Client(("system/Subscription.cruds",))}
    world.started(narrowed)  # the same Subscriptions, sandboxes and directories
    made = world.call(
        "POST", "/fhir/Patient", "everything", json=new_patient(NYRA, "Afterward"), headers=JSON
    )
    assert made.status_code == 201, made.text
    next(iter(world.leyr.patients["L0_1"]))["last_name"] = "Latersson"
    subs.rounds_until(
        lambda: (
            made.json()["id"] in told_ids(world, "all-patients")
            and any(
                p["name"][0]["family"] == "Latersson" for p in world.hooks.resources("all-patients")
            )
        ),
        "the unrestricted client told of both changes",
    )
    subs.one_more_round()
    for body in world.hooks.got["patients"][before:]:
        assert_visible(body, narrowed["sub-patient"].readable(world.universe), SOURCES)
    assert world.hooks.got["patients"][before:] == []
    _, sub_id = subs.made["patients"]
    r = world.get(f"/fhir/Subscription/{sub_id}", "sub-patient")
    assert (r.status_code, r.json()["status"], r.json()["error"]) == (
        200,
        "error",
        "the client's scopes no longer allow read of Patient",
    )
