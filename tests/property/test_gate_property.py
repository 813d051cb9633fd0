"""Whatever the token's read scopes and the client's sources, no road hands out more.

A token is asked for at ``/auth/token`` with a drawn set of read scopes (``system/{type}.rs``
for a subset of the types the sources serve, sometimes with ``system/*.rs``), narrowed from
a client that holds ``system/*.rs`` over both sources or over one. The road is drawn too: a
search (with any of the ``_include`` and ``_revinclude`` values the CapabilityStatement
advertises for its type, at one source or at all), a read, or either form of
``Patient/$everything``. A road whose own type the token may not read is a 403
OperationOutcome; a read of another source's resource a 404; anything else a Bundle (or
resource) holding only types the token may read from sources the client may use, with
the matches the unrestricted client gets, and what an include left out told as suppressed.

The app runs in process over both sandboxes; fresh examples on every run.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fhir_check import validate
from harness import FAST
from hypothesis import event, given, settings
from hypothesis import strategies as st
from visibility import assert_visible, entries, secret_of, weekday

from adapter.app import create_app
from adapter.auth.clients import load_clients
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import ExportSettings, Settings

LEYR, NYRA = "leyr-a", "nyra-b"
SOURCES = (LEYR, NYRA)
TYPES = (
    "Patient",
    "Appointment",
    "Practitioner",
    "Location",
    "Organization",
    "HealthcareService",
    "Schedule",
    "Slot",
    "Device",
)
# Clients holding every read, over both sources or one: tokens are narrowed from them.
READERS = {"reader": SOURCES, "reader-nyra": (NYRA,), "reader-leyr": (LEYR,)}
EXAMPLES = 25
Params = list[tuple[str, str]]


class Deployment:
    """Both sandboxes, the reader clients, and the app in process over them; what the
    strategies draw from (the advertised includes, an id of each type at each source)."""

    def __init__(self, root: Path) -> None:
        self.leyr = LeyrSandbox(seed=9, patients=6)
        self.nyra = NyraSandbox(seed=9, patients=6, limits=FAST)
        sources = {
            LEYR: {"connector": "leyr", **self.leyr.defaults()},
            NYRA: {"connector": "nyra", **self.nyra.defaults()},
        }
        raw = {
            name: {
                "secret": secret_of(name),
                "scopes": ["system/*.rs"],
                "sources": list(seen),
                "rate_limit": {"per_minute": 100_000},
            }
            for name, seen in READERS.items()
        }
        settings_ = Settings(
            sources=sources,
            clients=load_clients(raw, list(sources)),
            cursor_key=b"p" * 32,
            token_key=b"k" * 32,
            token_minutes=60,
            export=ExportSettings(dir=str(root / "export")),
        )
        self.app = create_app(
            settings_, transports={LEYR: self.leyr.transport(), NYRA: self.nyra.transport()}
        )
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://fhir.test"
        )
        self._reference: dict[str, dict[str, Any]] = {}
        self.full = self.token("reader", ["system/*.rs"])
        rest = self.call("GET", "/fhir/metadata").json()["rest"][0]
        self.includes = {r["type"]: r.get("searchInclude", []) for r in rest["resource"]}
        self.revincludes = {r["type"]: r.get("searchRevInclude", []) for r in rest["resource"]}
        self.ids = {
            (t, s): found[0][2]
            for t in TYPES
            for s in SOURCES
            if (found := entries(self.reference(f"/fhir/{t}", self.search_params(t, s)), "match"))
        }

    def call(self, method: str, url: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        r = self.loop.run_until_complete(self.http.request(method, url, headers=headers, **kw))
        if r.headers.get("content-type", "").startswith("application/fhir+json"):
            validate(r.json())
        return r

    def token(self, client: str, scopes: list[str]) -> str:
        r = self.loop.run_until_complete(
            self.http.post(
                "/auth/token",
                data={"grant_type": "client_credentials", "scope": " ".join(scopes)},
                auth=(client, secret_of(client)),
            )
        )
        assert r.status_code == 200, r.text
        assert set(r.json()["scope"].split()) == set(scopes), r.json()["scope"]
        return str(r.json()["access_token"])

    def reference(self, url: str, params: Params) -> dict[str, Any]:
        """What a token that reads everything, of a client of both sources, gets."""
        key = f"{url}?{urlencode(params)}"
        if key not in self._reference:
            r = self.call("GET", url, self.full, params=params)
            assert r.status_code == 200, f"{key}: {r.text[:300]}"
            self._reference[key] = r.json()
        return self._reference[key]

    def search_params(self, resource_type: str, source: str | None) -> Params:
        """A search with matches: three of them, at ``source`` (None: at every source);
        a Slot search names a Schedule (of ``source``, else Leyr's) and a weekday ahead."""
        params = [("_count", "3")] + ([("_source", source)] if source else [])
        if resource_type == "Slot":
            of = self.reference("/fhir/Schedule", [("_count", "1"), ("_source", source or LEYR)])
            day = weekday(3)
            params += [
                ("schedule", f"Schedule/{of['entry'][0]['resource']['id']}"),
                ("start", f"ge{day}"),
                ("start", f"lt{day + timedelta(days=1)}"),
            ]
        return params

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.run_until_complete(self.app.state.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory):
    d = Deployment(tmp_path_factory.mktemp("gate-property"))
    yield d
    d.close()


@st.composite
def grants(draw: st.DrawFn, road: str | None = None) -> tuple[str, list[str], frozenset[str]]:
    """(client, the read scopes asked for, the types they let it read). The type a road
    is of (``road``) is among them more often than not: a 403 ends the road early."""
    client = draw(st.sampled_from(sorted(READERS)))
    types = draw(st.sets(st.sampled_from(TYPES), max_size=len(TYPES)))
    if road is not None and draw(st.integers(0, 3)):
        types.add(road)
    wildcard = draw(st.integers(0, 3)) == 0 if types else True
    scopes = [f"system/{t}.rs" for t in sorted(types)] + (["system/*.rs"] if wildcard else [])
    readable = frozenset(TYPES) | {"Group", "ConceptMap", "Subscription"} if wildcard else types
    return client, scopes, frozenset(readable)


def assert_forbidden(r: httpx.Response, what: str) -> None:
    assert r.status_code == 403, f"{what}: {r.status_code} {r.text[:300]}"
    assert [i["code"] for i in r.json()["issue"]] == ["forbidden"], what


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_a_search_with_includes_holds_only_what_the_token_may_read(deployment, data):
    related = sorted(t for t in TYPES if deployment.includes[t] or deployment.revincludes[t])
    searched = data.draw(st.sampled_from([*related, "Location"]), "searched type")
    client, scopes, readable = data.draw(grants(searched), "grant")
    seen = READERS[client]
    source = data.draw(st.sampled_from([None, *SOURCES]), "_source")
    values = deployment.includes[searched] + [f"rev:{v}" for v in deployment.revincludes[searched]]
    chosen = data.draw(
        st.lists(st.sampled_from(values), min_size=1, unique=True) if values else st.just([]),
        "_include and _revinclude",
    )
    params = deployment.search_params(searched, source)
    params += [
        ("_revinclude", v.removeprefix("rev:")) if v.startswith("rev:") else ("_include", v)
        for v in chosen
    ]
    what = f"{scopes} of {client}: {searched}?{urlencode(params)}"

    token = deployment.token(client, scopes)
    r = deployment.call("GET", f"/fhir/{searched}", token, params=params)
    if searched not in readable:
        event("search: 403")
        assert_forbidden(r, what)
        return
    assert r.status_code == 200, f"{what}: {r.text[:300]}"
    body = r.json()
    assert_visible(body, readable, seen)
    if source is None:
        event("search: of every source")
        return  # pages of different sources: nothing to compare with
    full = deployment.reference(f"/fhir/{searched}", params)
    expected = entries(full, "match") if source in seen else []
    assert entries(body, "match") == expected, f"{what}: the matches"
    if source not in seen:
        event("search: of a source not seen")
        return
    kept = [e for e in entries(full, "include") if e[1] in readable]
    assert entries(body, "include") == kept, f"{what}: what was included"
    issues = [
        issue
        for e in body.get("entry") or []
        if e["search"]["mode"] == "outcome"
        for issue in e["resource"]["issue"]
        if issue.get("code") == "suppressed" and issue.get("severity") == "information"
    ]
    left_outs = sorted({kind for _, kind, _ in entries(full, "include")} - readable)
    event(f"search: compared, {'some' if left_outs else 'nothing'} left out")
    for left_out in left_outs:
        assert any(left_out in i.get("diagnostics", "") for i in issues), (
            f"{what}: the {left_out}s left out are not told as suppressed ({issues})"
        )


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_a_read_or_everything_holds_only_what_the_token_may_read(deployment, data):
    road = data.draw(st.sampled_from(["read", "everything", "everything-of-one"]), "road")
    if road == "everything":
        resource_type, source = "Patient", None
        url, params = "/fhir/Patient/$everything", [("_count", data.draw(st.sampled_from("123")))]
    else:
        pairs = sorted(deployment.ids) if road == "read" else [("Patient", s) for s in SOURCES]
        resource_type, source = data.draw(st.sampled_from(pairs), "of")
        fhir_id = deployment.ids[(resource_type, source)]
        suffix = "/$everything" if road == "everything-of-one" else ""
        url, params = f"/fhir/{resource_type}/{fhir_id}{suffix}", []
    client, scopes, readable = data.draw(grants(resource_type), "grant")
    seen = READERS[client]
    event(f"{road}: {'403' if resource_type not in readable else 'read'}")
    what = f"{scopes} of {client}: {url}"

    r = deployment.call("GET", url, deployment.token(client, scopes), params=params)
    if resource_type not in readable:
        assert_forbidden(r, what)
    elif source is not None and source not in seen:
        assert r.status_code == 404, f"{what}: {r.status_code} {r.text[:300]}"
        assert r.json()["issue"][0]["code"] == "not-found", what
    else:
        assert r.status_code == 200, f"{what}: {r.text[:300]}"
        found = assert_visible(r.json(), readable, seen)
        assert found, f"{what}: nothing"
        if road != "read":
            assert {"Patient"} <= {f["resourceType"] for f in found}, what


def test_the_token_is_narrowed_to_the_scopes_asked(deployment):
    """The property tests hold each token to exactly what it was asked with: a narrower
    token may not search what the client itself may."""
    token = deployment.token("reader", ["system/Patient.rs"])
    assert deployment.call("GET", "/fhir/Patient", token).status_code == 200
    assert_forbidden(deployment.call("GET", "/fhir/Appointment", token), "Appointment")
