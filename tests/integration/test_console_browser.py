"""The operator's console in a real headless Chromium (Debian's ``chromium``, driven by
playwright through ``executable_path``: no browser download), against the service on a
loopback port with both sandbox sources.

One operator's visit: log in; see both sources; a Nyra sandbox that fails every call
opens its circuit, and the Sources page says so at its next refresh; the hour's charts
are drawn; an export job is cancelled; a Subscription in ``error`` is set back to
``requested``; a form posted without its CSRF token is refused; no page holds a
patient's name; log out. With ``CONSOLE_SCREENSHOTS=DIR`` each page's screenshot is
saved there (docs/console/ holds the committed ones).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving import on_a_port

from adapter.app import create_app
from adapter.auth.operators import hash_password, load_operators
from adapter.sandbox import sandbox_for
from adapter.settings import DEMO_SECRET_ENV, ExportSettings, SubscriptionSettings, load_settings

CHROMIUM = "/usr/bin/chromium"
SECRET = "demo-secret-for-the-console-test"
OPERATOR, PASSWORD = "night-shift", "correct horse battery staple"
PAGES = ("sources", "clients", "exports", "subscriptions", "errors", "config")
SUB_ID = "c0ffee00c0ffee00c0ffee00"


def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true, yet no {CHROMIUM} (make test installs Debian's chromium)")
        pytest.skip(f"no {CHROMIUM}: apt-get install -y chromium")
    return CHROMIUM


class World:
    """The service on a port, its Nyra sandbox's faults, a token, and what the console
    must never show: the patients' names."""

    def __init__(self, base: str, faults: Any, token: str, names: set[str]) -> None:
        self.base = base
        self.faults = faults
        self.token = token
        self.names = names

    def fhir(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.base + path, headers=headers, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("console")
    settings = load_settings(env={DEMO_SECRET_ENV: SECRET})
    operators, _ = load_operators({OPERATOR: {"password_hash": hash_password(PASSWORD)}})
    # Nyra's circuit opens at its first failure and stays open; a read is tried once.
    nyra = {
        **settings.sources["nyra-sandbox"],
        "circuit": {"failures": 1, "open_seconds": 3600},
        "retry": {"attempts": 1},
    }
    settings = dataclasses.replace(
        settings,
        sources={**settings.sources, "nyra-sandbox": nyra},
        operators=operators,
        export=ExportSettings(dir=str(root / "export")),
        subscriptions=SubscriptionSettings(dir=str(root / "subscriptions")),
    )
    boxes = {
        name: sandbox_for(source["connector"], source["sandbox"], source)
        for name, source in settings.sources.items()
    }
    app = create_app(settings, transports={name: box.transport() for name, box in boxes.items()})
    # A Subscription as the poller leaves one whose endpoint kept failing.
    asyncio.run(
        app.state.subscriptions.store.create(
            {
                "owner": "demo",
                "resource": {
                    "resourceType": "Subscription",
                    "id": SUB_ID,
                    "status": "error",
                    "reason": "appointments",
                    "criteria": "Appointment?status=booked",
                    "error": "the endpoint failed 5 times in a row",
                    "channel": {
                        "type": "rest-hook",
                        "endpoint": "https://hooks.example.org/private/path/token-123",
                        "payload": "application/fhir+json",
                    },
                },
                "base": "http://127.0.0.1/fhir",
                "types": None,
                "failures": 5,
            }
        )
    )
    # Without the lifespan, the Subscriptions' poller does not run: what the console sets
    # stays as it set it. Export jobs start as they are submitted.
    with on_a_port(app, lifespan="off") as base:
        granted = httpx.post(
            base + "/auth/token",
            auth=("demo", SECRET),
            data={"grant_type": "client_credentials"},
        )
        token = granted.json()["access_token"]
        world = World(base, boxes["nyra-sandbox"].faults, token, set())
        listed = world.fhir("GET", "/fhir/Patient?_count=100")
        assert listed.status_code == 200
        for entry in listed.json()["entry"]:
            for name in entry["resource"].get("name", []):
                if name.get("family") and name.get("given"):
                    world.names.add(f"{name['given'][0]} {name['family']}")
        assert len(world.names) >= 50
        yield world


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=_chromium(), headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


def _shots() -> Path | None:
    where = os.environ.get("CONSOLE_SCREENSHOTS")
    return Path(where) if where else None


def _snap(page: Any, name: str) -> None:
    where = _shots()
    if where is not None:
        where.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(where / f"{name}.png"), full_page=True)


def _no_patient_name(world: World, page: Any) -> None:
    html = page.content()
    shown = sorted(name for name in world.names if name in html)
    assert shown == []


def _log_in(page: Any, base: str) -> None:
    page.goto(base + "/console/sources")
    assert page.url == base + "/console/login"
    page.fill("input[name=name]", OPERATOR)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/console/sources")


def test_an_operators_visit(world: World, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text))  # CSP refusals too
    base = world.base

    # A wrong password is told, and nothing else.
    page.goto(base + "/console/login")
    _snap(page, "login")
    page.fill("input[name=name]", OPERATOR)
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert page.locator("p.problem").inner_text() == (
        "That name and password do not match an operator."
    )

    _log_in(page, base)
    cookie = next(c for c in context.cookies() if c["name"] == "console_session")
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/console")

    # Both sources, their circuits closed.
    rows = page.locator("table.sources tbody tr")
    assert rows.count() == 2
    assert page.locator("tr[data-source=leyr-sandbox] td.circuit").inner_text() == "closed"
    assert page.locator("tr[data-source=nyra-sandbox] td.circuit").inner_text() == "closed"
    assert page.locator("tr[data-source=nyra-sandbox] td.state").inner_text() == "up"

    # Nyra fails every call: one search opens its circuit; the next refresh shows it.
    world.faults.error_rate = 1.0
    searched = world.fhir("GET", "/fhir/Patient?_count=5")
    assert searched.status_code == 200
    page.reload()
    assert page.locator("tr[data-source=nyra-sandbox] td.circuit").inner_text() == "open"
    assert page.locator("tr[data-source=nyra-sandbox] td.state").inner_text() == "circuit open"
    assert page.locator("tr[data-source=leyr-sandbox] td.circuit").inner_text() == "closed"
    world.faults.error_rate = 0.0

    # The charts are drawn: a line per source, and the answers' times.
    calls = page.locator("#calls-chart svg")
    assert calls.is_visible()
    box = calls.bounding_box()
    assert box is not None and (box["width"], box["height"]) == (640, 200)
    lines = page.locator("#calls-chart svg polyline")
    assert lines.count() == 2
    assert sorted(lines.nth(i).get_attribute("data-series") or "" for i in range(2)) == [
        "leyr-sandbox",
        "nyra-sandbox",
    ]
    assert page.locator("#latency-chart svg polyline").count() == 2
    _snap(page, "sources")
    _no_patient_name(world, page)

    # An export job, then cancelled from the console.
    kicked = world.fhir("GET", "/fhir/$export?_type=Patient", headers={"Prefer": "respond-async"})
    assert kicked.status_code == 202
    job_id = kicked.headers["content-location"].rsplit("/", 1)[-1]
    page.goto(base + "/console/exports")
    assert page.locator("table.exports tbody tr").count() == 1
    assert page.locator(f"tr[data-job='{job_id}'] td").nth(1).inner_text() == "demo"
    _snap(page, "exports")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f"tr[data-job='{job_id}'] button")
    page.wait_for_url(base + "/console/exports")
    assert page.locator("p.empty").inner_text() == "No export job is kept."
    assert world.fhir("GET", kicked.headers["content-location"][len(base) :]).status_code == 404

    # The Subscription in error, set back to requested.
    page.goto(base + "/console/subscriptions")
    row = page.locator(f"tr[data-subscription='{SUB_ID}']")
    assert row.locator("td.status").inner_text() == "error"
    assert row.locator("td code").nth(1).inner_text() == "https://hooks.example.org/…"
    _snap(page, "subscriptions")
    row.locator("button").click()
    page.wait_for_url(base + "/console/subscriptions")
    assert row.locator("td.status").inner_text() == "requested"
    assert row.locator("button").count() == 0
    read = world.fhir("GET", f"/fhir/Subscription/{SUB_ID}")
    assert read.status_code == 200 and read.json()["status"] == "requested"

    # Every page: no patient's name, no secret.
    for name in PAGES:
        page.goto(base + f"/console/{name}")
        assert page.url == base + f"/console/{name}"
        _no_patient_name(world, page)
        html = page.content()
        assert SECRET not in html and PASSWORD not in html and "token-123" not in html
        if name in ("clients", "errors", "config"):
            _snap(page, name)
    page.goto(base + "/console/errors")
    assert page.locator("table.errors tbody tr").first.locator("td").nth(4).inner_text() == (
        "nyra-sandbox"
    )

    # A form posted without its CSRF token is refused, and changes nothing.
    refused = page.request.post(base + "/console/logout", form={"other": "x"})
    assert refused.status == 403
    assert refused.json() == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "forbidden",
                "diagnostics": "the form's CSRF token is missing or wrong",
            }
        ],
    }
    page.goto(base + "/console/sources")
    assert page.url == base + "/console/sources"

    # Log out: the session is gone.
    page.click("form.logout button")
    page.wait_for_url(base + "/console/login")
    page.goto(base + "/console/sources")
    assert page.url == base + "/console/login"
    assert errors == []
    context.close()


def test_make_test_installs_chromium_when_missing() -> None:
    """`make test` on a fresh machine brings Debian's chromium first."""
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert re.search(r"command -v chromium .*apt-get install -y chromium", makefile)
    assert shutil.which("chromium") is not None or os.environ.get("CI") != "true"
