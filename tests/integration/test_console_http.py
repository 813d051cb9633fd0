"""The console over HTTP (in process): who may enter, what its forms demand, how it
answers what does not exist, and that a failed log-in is throttled as a token request is.
Its browser tests are in test_console_browser.py."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync
from services import REDIS_URL, forget, namespace, needs_redis

from adapter.api.auth import LoginThrottle
from adapter.app import create_app
from adapter.auth.operators import hash_password, load_operators
from adapter.settings import (
    DEMO_SECRET_ENV,
    ExportSettings,
    Settings,
    SettingsError,
    SubscriptionSettings,
    load_settings,
)

pytestmark = pytest.mark.anyio

OPERATOR, PASSWORD = "ann", "a long operator password"
PAGES = ("sources", "clients", "exports", "subscriptions", "errors", "config")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def console_settings(tmp: Path, **changes: object) -> Settings:
    settings = load_settings(env={DEMO_SECRET_ENV: "a-demo-secret-of-some-length"})
    operators, _ = load_operators({OPERATOR: {"password_hash": hash_password(PASSWORD)}})
    return dataclasses.replace(
        settings,
        operators=operators,
        export=ExportSettings(dir=str(tmp / "export")),
        subscriptions=SubscriptionSettings(dir=str(tmp / "subscriptions")),
        **changes,
    )


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(console_settings(tmp_path))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
    ) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client
    await app.state.aclose()


async def log_in(http: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    form = await http.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    return await http.post(
        "/console/login", data={"csrf": csrf.group(1), "name": OPERATOR, "password": password}
    )


async def csrf_of(http: httpx.AsyncClient) -> str:
    page = await http.get("/console/sources")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


async def test_every_page_needs_a_session(http):
    for name in PAGES:
        answer = await http.get(f"/console/{name}")
        assert (answer.status_code, answer.headers["location"]) == (303, "/console/login")


async def test_log_in_sets_a_strict_http_only_session_cookie_and_pages_keep_the_csp(http):
    answer = await log_in(http)
    assert (answer.status_code, answer.headers["location"]) == (303, "/console/sources")
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith("console_session=")
    )
    assert "; HttpOnly" in cookie and "; SameSite=strict" in cookie
    assert "; Path=/console" in cookie and "Secure" not in cookie
    for name in PAGES:
        page = await http.get(f"/console/{name}")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CSP
        assert page.headers["cache-control"] == "no-store"
        assert "<script>" not in page.text and "style=" not in page.text


async def test_the_cookie_is_secure_behind_https(tmp_path):
    app = create_app(console_settings(tmp_path))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://127.0.0.1:8443"
    ) as http:
        answer = await log_in(http)
    await app.state.aclose()
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith("console_session=")
    )
    assert "; Secure" in cookie


async def test_a_log_in_without_the_forms_token_is_refused(http):
    answer = await http.post("/console/login", data={"name": OPERATOR, "password": PASSWORD})
    assert answer.status_code == 403
    assert answer.json()["issue"][0]["diagnostics"] == "the form's CSRF token is missing or wrong"


async def test_failed_log_ins_are_throttled_with_whole_seconds(http):
    http.app.state.console.throttle = LoginThrottle(limit=2, window=60.0)
    for _ in range(2):
        wrong = await log_in(http, "not the password")
        assert wrong.status_code == 200
        assert "do not match an operator" in wrong.text
    held = await log_in(http)  # even the right password, until the window has passed
    assert held.status_code == 429
    assert held.headers["retry-after"] in {str(s) for s in range(1, 61)}
    assert held.json()["issue"][0]["code"] == "throttled"


async def test_forms_need_the_sessions_token_and_name_what_exists(http):
    await log_in(http)
    csrf = await csrf_of(http)
    refused = await http.post("/console/exports/abc/cancel", data={"csrf": "forged"})
    assert refused.status_code == 403
    missing = await http.post("/console/exports/abcdefgh/cancel", data={"csrf": csrf})
    assert (missing.status_code, missing.json()["issue"][0]["code"]) == (404, "not-found")
    store = http.app.state.subscriptions.store
    await store.create(
        {
            "owner": "demo",
            "resource": {
                "resourceType": "Subscription",
                "id": "abc123",
                "status": "active",
                "criteria": "Appointment?status=booked",
                "channel": {"type": "rest-hook", "endpoint": "https://h.example.org/x"},
            },
        }
    )
    active = await http.post("/console/subscriptions/abc123/requeue", data={"csrf": csrf})
    assert (active.status_code, active.json()["issue"][0]["diagnostics"]) == (
        409,
        "only a Subscription in error is set back",
    )
    unknown = await http.post("/console/subscriptions/nothing/requeue", data={"csrf": csrf})
    assert unknown.status_code == 404


async def test_static_files_are_the_packages_own(http):
    css = await http.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"] == "text/css; charset=utf-8"
    other = await http.get("/console/static/..%2Fsessions.py")
    assert other.status_code == 404


async def clients_table(http: httpx.AsyncClient) -> dict[str, list[int]]:
    page = await http.get("/console/clients")
    rows = re.findall(r'<tr data-client="([^"]+)">(.*?)</tr>', page.text)
    return {
        name: [int(c) for c in re.findall(r"<td>([^<]*)</td>", cells)[1:]] for name, cells in rows
    }


async def test_clients_page_counts_requests_refusals_and_tokens(http):
    """Counted since the process started (by every app in it): what one token request
    and two FHIR requests add."""
    await log_in(http)
    before = await clients_table(http)
    granted = await http.post(
        "/auth/token",
        auth=("demo", "a-demo-secret-of-some-length"),
        data={"grant_type": "client_credentials"},
    )
    token = granted.json()["access_token"]
    assert (await http.get("/fhir/Patient")).status_code == 401
    read = await http.get("/fhir/metadata", headers={"Authorization": f"Bearer {token}"})
    assert read.status_code == 200
    after = await clients_table(http)
    zero = [0, 0, 0, 0, 0]
    added = {
        name: [a - b for a, b in zip(after[name], before.get(name, zero), strict=True)]
        for name in after
    }
    # requests, 401, 403, 429, tokens issued
    assert added["demo"] == [0, 0, 0, 0, 1]
    assert added["-"] == [2, 1, 0, 0, 0]


def test_operators_configuration_is_strict(tmp_path):
    path = tmp_path / "adapter.toml"
    path.write_text(
        "[server]\nopen_access = true\n"
        '[sources.nyra-demo]\nconnector = "nyra"\ntimezone = "Asia/Kolkata"\n'
        "sandbox = { seed = 7, patients = 10 }\n"
        '[operators.ann]\npassword = "plain"\n'
    )
    with pytest.raises(SettingsError) as refused:
        load_settings(path, {})
    assert refused.value.problems == [
        "[operators.ann]: unknown key 'password' (did you mean 'password_hash'?)",
        "[operators.ann] password_hash is required",
    ]
    path.write_text(
        path.read_text().replace('password = "plain"', f'password_hash = "{hash_password("x")}"')
    )
    assert list(load_settings(path, {}).operators) == ["ann"]


@needs_redis
async def test_with_redis_a_session_opened_at_one_worker_serves_at_another(tmp_path):
    prefix = namespace()
    settings = console_settings(tmp_path, redis_url=REDIS_URL, redis_prefix=prefix)
    one, two = create_app(settings), create_app(settings)
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080")
        for app in (one, two)
    ]
    try:
        answer = await log_in(clients[0])
        assert answer.status_code == 303
        session_id = clients[0].cookies["console_session"]
        key = f"{prefix}console:session:{hashlib.sha256(session_id.encode()).hexdigest()}"
        assert redis_sync.Redis.from_url(REDIS_URL).exists(key) == 1
        clients[1].cookies.set("console_session", session_id, path="/console")
        page = await clients[1].get("/console/config")
        assert page.status_code == 200 and f'<span class="who">{OPERATOR}</span>' in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        out = await clients[1].post("/console/logout", data={"csrf": csrf.group(1)})
        assert (out.status_code, out.headers["location"]) == (303, "/console/login")
        again = await clients[0].get("/console/config")
        assert (again.status_code, again.headers["location"]) == (303, "/console/login")
    finally:
        for client in clients:
            await client.aclose()
        for app in (one, two):
            await app.state.aclose()
        assert forget(prefix) >= 0


async def test_without_operators_the_log_in_page_says_how_to_add_one(tmp_path):
    app = create_app(dataclasses.replace(console_settings(tmp_path), operators={}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
    ) as http:
        page = await http.get("/console/login")
        refused = await log_in(http)
    await app.state.aclose()
    assert "No operator is configured" in page.text
    assert refused.status_code == 200 and "do not match an operator" in refused.text


async def test_the_sources_page_shows_each_budgeted_sources_lanes(http):
    await log_in(http)
    page = await http.get("/console/sources")
    assert page.status_code == 200
    # Nyra has a budget, divided between the four lanes at their default shares; an idle
    # deployment has nobody waiting in any of them.
    for lane, share in (("interactive", 50), ("writes", 25), ("bulk", 15), ("background", 10)):
        assert f'<li class="lane lane-idle">{lane}: {share}%, 0 waiting, idle</li>' in page.text
