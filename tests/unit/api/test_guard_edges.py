"""What the request guard holds every request to, whatever route it goes to: the Host it
names (the links the service gives out are made from it when no public_base_url is set),
the security headers of every answer, and the time its body may take; and how the route
table answers a method or a media type a path does not take.

The apps run in process over the sandboxes; a few requests are driven at the ASGI level,
where a client can do what httpx would not (trickle a body, send two Host headers).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from harness import FAST

from adapter import cli
from adapter.api.guard import MAX_BODY, SECURITY_HEADERS
from adapter.app import create_app
from adapter.auth.clients import load_clients
from adapter.cli import main
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import (
    CONFIG_ENV,
    CURSOR_KEY_ENV,
    DEMO_SECRET_ENV,
    TOKEN_KEY_ENV,
    Settings,
    SettingsError,
    load_settings,
)

pytestmark = pytest.mark.anyio

EVIL = "evil.example"
FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON = {"content-type": "application/fhir+json"}
SECRET = "guard-client-secret-0123456789"
EVERYTHING = {"secret": SECRET, "scopes": ["system/*.cruds"]}


def _app(*, open_access: bool = False, **server: Any):
    """Both sandboxes and one client holding every scope (none under open access)."""
    sandboxes = {
        "leyr-a": LeyrSandbox(seed=2, patients=10),
        "nyra-b": NyraSandbox(seed=2, patients=10, limits=FAST),
    }
    sources = {
        "leyr-a": {"connector": "leyr", "emr": "webdoc", **sandboxes["leyr-a"].defaults()},
        "nyra-b": {"connector": "nyra", **sandboxes["nyra-b"].defaults()},
    }
    clients = {} if open_access else load_clients({"c": EVERYTHING}, list(sources))
    settings = Settings(
        sources=sources,
        clients=clients,
        open_access=open_access,
        cursor_key=b"c" * 32,
        token_key=b"t" * 32,
        **server,
    )
    return create_app(settings, transports={n: s.transport() for n, s in sandboxes.items()})


def _client(app, base: str = "http://fhir.test") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)


async def _token(c: httpx.AsyncClient, **headers: str) -> dict[str, str]:
    r = await c.post(
        "/auth/token",
        data={"grant_type": "client_credentials"},
        auth=("c", SECRET),
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return {"authorization": f"Bearer {r.json()['access_token']}"}


def _refused_for_host(r: httpx.Response, host: str) -> None:
    assert r.status_code == 400
    OperationOutcome.model_validate(r.json())
    assert host not in r.text
    assert all(host not in v for v in r.headers.values())


# -- the Host ----------------------------------------------------------------------------


async def test_an_untrusted_host_is_refused_everywhere_and_never_repeated():
    app = _app(trusted_hosts=("fhir.example.org", "*.example.net"))
    async with _client(app, "http://fhir.example.org") as c:
        auth = await _token(c)
        for method, path, extra in [
            ("GET", "/fhir/metadata", {}),
            ("GET", "/fhir/Patient", auth),
            ("GET", "/fhir/Patient/leyr-a.x", auth),
            ("POST", "/fhir/Patient/_search", {**auth, **FORM}),
            ("GET", "/fhir/.well-known/smart-configuration", {}),
            ("GET", "/.well-known/smart-configuration", {}),
            ("POST", "/auth/token", FORM),
            ("GET", "/nowhere", {}),
        ]:
            r = await c.request(method, path, headers={**extra, "host": EVIL})
            _refused_for_host(r, EVIL)
        # What an orchestrator asks by address is answered whatever the Host.
        for probe in ("/healthz", "/readyz", "/metrics"):
            assert (await c.get(probe, headers={"host": "10.1.2.3:8080"})).status_code == 200


@pytest.mark.parametrize(
    "host,trusted",
    [
        ("fhir.example.org", True),
        ("FHIR.Example.ORG", True),
        ("fhir.example.org:8443", False),  # a pattern without a port takes no port
        ("api.example.net", True),
        ("a.b.example.net:9000", False),
        ("example.net", False),  # *.name is its subdomains, not the name
        ("fhir.example.org.evil.example", False),
        ("evilexample.net", False),
        ("internal:8080", True),
        ("internal:8081", False),
        ("[::1]:8080", True),
        ("[::1]", True),  # :* is any port, or none
        ("fhir.example.org/x", False),
        ("fhir.example.org:", False),
        ("", False),
    ],
)
async def test_trusted_host_patterns(host, trusted):
    app = _app(
        trusted_hosts=("fhir.example.org", "*.example.net", "internal:8080", "[::1]:*"),
        open_access=True,
    )
    async with _client(app, "http://fhir.example.org") as c:
        r = await c.get("/fhir/metadata", headers={"host": host})
    if trusted:
        assert r.status_code == 200
        assert r.json()["implementation"]["url"].lower() == f"http://{host.lower()}/fhir"
    else:
        _refused_for_host(r, host or "\0")


async def test_with_a_public_base_url_links_come_from_it_and_the_host_is_not_used():
    base = "https://fhir.example.org/r4/fhir"
    app = _app(public_base_url=base)
    async with _client(app, "http://x") as c:
        auth = await _token(c, host=EVIL)
        bundle = await c.get(
            "/fhir/Patient", params={"_count": "2"}, headers={**auth, "host": EVIL}
        )
        statement = await c.get("/fhir/metadata", headers={"host": EVIL})
        smart = await c.get("/fhir/.well-known/smart-configuration", headers={"host": EVIL})
    assert bundle.status_code == 200
    assert {link["url"].split("/Patient?")[0] for link in bundle.json()["link"]} == {base}
    assert all(e["fullUrl"].startswith(base + "/") for e in bundle.json()["entry"])
    assert statement.json()["implementation"]["url"] == base
    assert smart.json()["token_endpoint"] == "https://fhir.example.org/r4/auth/token"
    for r in (bundle, statement, smart):
        assert EVIL not in r.text


async def test_without_either_a_loopback_address_takes_loopback_hosts_only():
    """As ``serve --host 127.0.0.1`` runs it: a page on another site whose name resolves to
    this machine (DNS rebinding) sends its own name as the Host, and is refused."""
    app = _app(open_access=True)
    async with _client(app, "http://127.0.0.1:8080") as c:
        for host in ("127.0.0.1:8080", "127.0.0.1", "localhost:8080", "[::1]:8080", "127.9.9.9"):
            assert (await c.get("/fhir/metadata", headers={"host": host})).status_code == 200
        for host in (EVIL, "evil.example:8080", "localhost.evil.example", "10.0.0.5"):
            _refused_for_host(await c.get("/fhir/metadata", headers={"host": host}), host)


async def test_without_either_another_address_takes_no_host():
    """``serve`` does not start so; an app run by other means is held to the same."""
    app = _app(open_access=True)
    async with _client(app, "http://10.0.0.5:8080") as c:
        for host in ("10.0.0.5:8080", EVIL):
            _refused_for_host(await c.get("/fhir/metadata", headers={"host": host}), host)
        assert (await c.get("/healthz")).status_code == 200


async def test_two_host_headers_are_refused():
    app = _app(trusted_hosts=("fhir.test",), open_access=True)
    sent = await _asgi(app, "GET", "/fhir/metadata", [(b"host", b"fhir.test"), (b"host", b"x")])
    assert sent[0]["status"] == 400


def test_trusted_hosts_are_read_and_checked_from_the_configuration(tmp_path):
    path = tmp_path / "adapter.toml"
    text = """
[server]
open_access = true
trusted_hosts = ["FHIR.example.org", "*.example.net:*", "[::1]:8080"{extra}]
body_seconds = 2.5

[sources.nyra-demo]
connector = "nyra"
timezone = "Asia/Kolkata"
sandbox = {{ seed = 1, patients = 2 }}
"""
    path.write_text(text.format(extra=""))
    settings = load_settings(path, env={})
    assert settings.trusted_hosts == ("fhir.example.org", "*.example.net:*", "[::1]:8080")
    assert settings.body_seconds == 2.5
    path.write_text(text.format(extra=', "https://x.org", "a b"'))
    with pytest.raises(SettingsError) as refused:
        load_settings(path, env={})
    assert [p.split(":")[0] for p in refused.value.problems] == [
        "[server] trusted_hosts[3]",
        "[server] trusted_hosts[4]",
    ]
    assert "x.org" not in str(refused.value)


# -- serve ---------------------------------------------------------------------------------


@pytest.fixture
def own_environment(monkeypatch):
    """What serve exports for its workers does not leak into other tests; nothing is
    served and stdout is left alone."""
    saved = dict(os.environ)
    for name in (CONFIG_ENV, CURSOR_KEY_ENV, TOKEN_KEY_ENV, DEMO_SECRET_ENV):
        os.environ.pop(name, None)
    served: list[Any] = []
    real_bound = cli._bound
    # Any free port: these tests are about what serve accepts, not about 8080.
    monkeypatch.setattr("adapter.cli._bound", lambda host, port: real_bound(host, 0))

    def serve_one(app: Any, args: Any, grace: float, sock: Any, kept: Any) -> int:
        sock.close()
        served.append(args)
        return 0

    monkeypatch.setattr("adapter.cli._serve_one", serve_one)
    monkeypatch.setattr("adapter.ops.logs.configure", lambda settings: None)
    yield served
    os.environ.clear()
    os.environ.update(saved)


def test_serve_refuses_another_address_without_public_base_url_or_trusted_hosts(
    own_environment, capsys, tmp_path
):
    path = tmp_path / "adapter.toml"
    path.write_text(
        '[server]\nopen_access = true\n[sources.nyra-demo]\nconnector = "nyra"\n'
        'timezone = "Asia/Kolkata"\nsandbox = { seed = 1, patients = 2 }\n'
    )
    assert main(["serve", "--config", str(path), "--host", "0.0.0.0"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "configuration error: serving on 0.0.0.0 (not a loopback address) needs [server] "
        "public_base_url or trusted_hosts: the links it gives out would otherwise be made "
        "from whatever Host header a client sends"
    ]
    assert captured.out == "" and own_environment == []
    assert CONFIG_ENV not in os.environ  # nothing exported for workers never started


def test_the_embedded_demo_trusts_localhost_so_a_container_can_serve_it(own_environment):
    assert main(["serve", "--host", "0.0.0.0"]) == 0
    assert [args.host for args in own_environment] == ["0.0.0.0"]


@pytest.mark.parametrize(
    "host,server",
    [
        ("127.0.0.1", ""),
        ("localhost", ""),
        ("::1", ""),
        ("127.0.0.2", ""),
        ("0.0.0.0", 'trusted_hosts = ["fhir.example.org"]'),
        ("0.0.0.0", 'public_base_url = "https://fhir.example.org/fhir"'),
        ("::", 'trusted_hosts = ["fhir.example.org"]'),
    ],
)
def test_serve_starts_on_loopback_or_with_either(own_environment, tmp_path, host, server):
    path = tmp_path / "adapter.toml"
    path.write_text(
        f'[server]\nopen_access = true\n{server}\n[sources.nyra-demo]\nconnector = "nyra"\n'
        'timezone = "Asia/Kolkata"\nsandbox = { seed = 1, patients = 2 }\n'
    )
    assert main(["serve", "--config", str(path), "--host", host]) == 0
    assert [args.host for args in own_environment] == [host]


# -- security headers ----------------------------------------------------------------------


async def test_every_answer_carries_the_security_headers_once():
    app = _app(trusted_hosts=("fhir.test",))
    async with _client(app) as c:
        auth = await _token(c)
        bundle = (await c.get("/fhir/Patient", params={"_count": "1"}, headers=auth)).json()
        read = bundle["entry"][0]["fullUrl"].removeprefix("http://fhir.test")
        answers = {
            "search": await c.get("/fhir/Patient", headers=auth),
            "read": await c.get(read, headers=auth),
            "not found": await c.get("/fhir/Patient/leyr-a.nobody", headers=auth),
            "no token": await c.get("/fhir/Patient"),
            "bad parameter": await c.get("/fhir/Patient?birthdate=x", headers=auth),
            "method": await c.delete("/fhir/Patient", headers=auth),
            "URL too long": await c.get("/fhir/Patient?x=" + "a" * 9000, headers=auth),
            "host": await c.get("/fhir/metadata", headers={"host": EVIL}),
            "metadata": await c.get("/fhir/metadata"),
            "token": await c.post(
                "/auth/token", data={"grant_type": "client_credentials"}, auth=("c", SECRET)
            ),
            "token refused": await c.post(
                "/auth/token", data={"grant_type": "client_credentials"}, auth=("c", "wrong")
            ),
            "smart": await c.get("/.well-known/smart-configuration"),
            "healthz": await c.get("/healthz"),
            "readyz": await c.get("/readyz"),
            "metrics": await c.get("/metrics"),
            "no such path": await c.get("/nowhere"),
        }
    for what, r in answers.items():
        for name, value in SECURITY_HEADERS:
            assert r.headers.get_list(name.decode()) == [value.decode()], (what, name)


# -- the body ------------------------------------------------------------------------------


async def _asgi(
    app,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    chunks: list[bytes] = (),  # type: ignore[assignment]
    more: bool = False,
) -> list[dict]:
    """One request at the ASGI level: ``chunks`` of its body, then (``more``) a body that
    never goes on. What the app sent."""
    sent: list[dict] = []
    queue = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    if not more:
        queue.append({"type": "http.request", "body": b"", "more_body": False})
    stalled = asyncio.Event()

    async def receive() -> dict:
        if queue:
            return queue.pop(0)
        await stalled.wait()  # the rest of the body never comes
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("fhir.test", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 10)
    return sent


@pytest.mark.parametrize(
    "path,media",
    [
        ("/fhir/Patient", b"application/fhir+json"),
        ("/fhir/Appointment/leyr-a.x", b"application/fhir+json"),
        ("/fhir/Patient/_search", b"application/x-www-form-urlencoded"),
        ("/auth/token", b"application/x-www-form-urlencoded"),
    ],
)
async def test_a_body_that_trickles_in_is_cut_off_with_408(path, media):
    app = _app(open_access=path != "/auth/token", body_seconds=0.05)
    method = "PUT" if path.count("/") == 3 and "_search" not in path else "POST"
    headers = [(b"host", b"fhir.test"), (b"content-type", media), (b"content-length", b"500")]
    # The rest of the body never comes: only the body's deadline can answer (_asgi's
    # wait of 10 s is a safety net, failing an app that would wait for ever).
    sent = await _asgi(app, method, path, headers, [b'{"resourceType": "Pat'], more=True)
    start, body = sent[0], sent[1]
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    outcome = OperationOutcome.model_validate_json(body["body"])
    assert outcome.issue[0].code == "timeout"


async def test_a_body_that_arrives_in_time_is_served():
    app = _app(open_access=True, body_seconds=5)
    headers = [(b"host", b"fhir.test"), (b"content-type", b"application/x-www-form-urlencoded")]
    headers.append((b"transfer-encoding", b"chunked"))
    sent = await _asgi(app, "POST", "/fhir/Patient/_search", headers, [b"_count=", b"1"])
    assert sent[0]["status"] == 200


async def test_a_body_over_the_limit_is_413_declared_or_not():
    app = _app(open_access=True)
    form = [(b"host", b"fhir.test"), (b"content-type", b"application/x-www-form-urlencoded")]
    declared = [*form, (b"content-length", str(MAX_BODY + 1).encode())]
    sent = await _asgi(app, "POST", "/fhir/Patient/_search", declared, more=True)
    assert sent[0]["status"] == 413  # refused before anything is read
    endless = [*form, (b"content-length", b"9" * 5000)]  # more digits than int() takes
    sent = await _asgi(app, "POST", "/fhir/Patient/_search", endless, more=True)
    assert sent[0]["status"] == 413
    chunked = [*form, (b"transfer-encoding", b"chunked")]
    sent = await _asgi(app, "POST", "/fhir/Patient/_search", chunked, [b"a" * 65536] * 17)
    assert sent[0]["status"] == 413


async def test_a_refused_body_is_read_to_its_end_before_the_answer():
    """A client still writing a body the guard refuses gets the answer, not a reset: the
    body (up to a bound) is read and dropped first, and only then is the refusal sent."""
    app = _app()  # no token: a 401
    chunks = [b"x" * 65536] * 20  # 1.25 MiB, over the 1 MiB the routes take
    headers = [(b"host", b"fhir.test"), (b"content-type", b"application/fhir+json")]
    queue: list[dict] = []
    sent: list[dict] = []

    async def receive() -> dict:
        return queue.pop(0)

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            assert not queue, "the answer went out before the body was read"
        sent.append(message)

    for declared in (None, str(sum(map(len, chunks))).encode()):
        queue[:] = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
        queue.append({"type": "http.request", "body": b"", "more_body": False})
        sent.clear()
        extra = [
            (b"transfer-encoding", b"chunked")
            if declared is None
            else (b"content-length", declared)
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/fhir/Patient",
            "raw_path": b"/fhir/Patient",
            "query_string": b"",
            "root_path": "",
            "headers": [*headers, *extra],
            "client": ("127.0.0.1", 5000),
            "server": ("fhir.test", 80),
        }
        await asyncio.wait_for(app(scope, receive, send), 10)
        assert sent[0]["status"] == (401 if declared is None else 413)
        assert not queue


# -- methods and media types ---------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path,allow",
    [
        ("DELETE", "/fhir/Patient", "GET, HEAD, POST"),
        ("PUT", "/fhir/Patient", "GET, HEAD, POST"),
        ("DELETE", "/fhir/Patient/leyr-a.x", "GET, HEAD, PUT"),
        ("POST", "/fhir/Patient/leyr-a.x", "GET, HEAD, PUT"),
        ("GET", "/fhir/Patient/_search", "POST"),
        ("PUT", "/fhir/Patient/_search", "POST"),
        ("POST", "/fhir/metadata", "GET, HEAD"),
        ("DELETE", "/fhir/metadata", "GET, HEAD"),
        ("PUT", "/fhir/.well-known/smart-configuration", "GET, HEAD"),
        ("PATCH", "/fhir/Patient/leyr-a.x", "GET, HEAD, PUT"),
    ],
)
async def test_a_method_the_path_does_not_take_is_405_with_its_methods(method, path, allow):
    app = _app(open_access=True)
    async with _client(app) as c:
        # A body of a type no route takes: the method is judged first (405, not 415).
        r = await c.request(method, path, content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow
    OperationOutcome.model_validate(r.json())


@pytest.mark.parametrize(
    "method,path,media",
    [
        ("POST", "/fhir/Patient", "text/plain"),
        ("POST", "/fhir/Patient", "application/x-www-form-urlencoded"),
        ("PUT", "/fhir/Appointment/leyr-a.x", "application/xml"),
        ("POST", "/fhir/Patient/_search", "application/fhir+json"),
    ],
)
async def test_a_body_of_a_type_the_route_does_not_take_is_415(method, path, media):
    app = _app(open_access=True)
    async with _client(app) as c:
        r = await c.request(method, path, content=b"{}", headers={"content-type": media})
    assert r.status_code == 415
    OperationOutcome.model_validate(r.json())


async def test_an_interaction_no_source_offers_is_405_with_what_the_path_takes():
    app = _app(open_access=True)
    slot = {
        "resourceType": "Slot",
        "schedule": {"reference": "Schedule/x"},
        "status": "free",
        "start": "2030-01-01T10:00:00Z",
        "end": "2030-01-01T10:30:00Z",
    }
    async with _client(app) as c:
        r = await c.post("/fhir/Slot", json=slot, headers=JSON)
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == "GET, HEAD"


def test_settings_default_keeps_in_process_apps_unchecked():
    """Tests and embedders that make Settings themselves are not held to a Host."""
    assert Settings(sources={}).trusted_hosts == ()
    assert dataclasses.replace(Settings(sources={}), body_seconds=1).body_seconds == 1
