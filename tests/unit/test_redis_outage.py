"""An unreachable Redis is named, not hidden: ``/readyz`` answers 503 saying so,
``check-config --probe`` says so (instead of blaming a source), and the console says it
once per outage (not once per background sweep)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
import redis.exceptions

from adapter.app import create_app
from adapter.cli import main
from adapter.ops import redis_watch
from adapter.sandbox import NyraSandbox
from adapter.settings import Settings

pytestmark = pytest.mark.anyio

# Port 1 on loopback: nothing listens there, so every connection is refused at once.
NOWHERE = "redis://127.0.0.1:1/0"
PLACE = "127.0.0.1:1/0"
SAID = (
    f"redis at {PLACE} unreachable (ConnectionError): export jobs, shared budgets, "
    "idempotent writes and Subscriptions wait for it; said again when it answers"
)

# The default lanes of a budgeted source, and their shares ([server] lanes).
LANES = (("interactive", 0.5), ("writes", 0.25), ("bulk", 0.15), ("background", 0.1))


@pytest.fixture(autouse=True)
def _no_outage_known(monkeypatch):
    monkeypatch.setattr(redis_watch, "_down", set())


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "redis" in r.getMessage()]


def app_with_redis(url: str):
    sandbox = NyraSandbox(seed=2, patients=3)
    source = {"connector": "nyra", "timezone": "Asia/Kolkata", **sandbox.defaults()}
    settings = Settings(
        open_access=True, sources={"nyra-r": source}, cursor_key=b"r" * 32, redis_url=url
    )
    return create_app(settings, transports={"nyra-r": sandbox.transport()})


async def test_readyz_answers_503_naming_redis_and_the_console_says_it_once(caplog):
    caplog.set_level(logging.INFO, logger="fhir_adapter")
    app = app_with_redis(NOWHERE)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fhir.test"
    ) as http:
        for _ in range(3):
            r = await http.get("/readyz")
            assert r.status_code == 503
            assert r.headers["retry-after"] == "30"
            assert r.json() == {
                "status": "unavailable",
                "sources": {"nyra-r": "up"},
                "lanes": {
                    "nyra-r": {
                        lane: {"share": share, "waiting": 0, "state": "idle"}
                        for lane, share in LANES
                    }
                },
                "redis": "unreachable",
            }
    assert said(caplog) == [SAID]
    await app.state.aclose()


async def test_the_export_sweep_says_an_outage_once_however_often_it_sweeps(caplog):
    caplog.set_level(logging.INFO, logger="fhir_adapter")
    app = app_with_redis(NOWHERE)
    exports = app.state.exports
    exports.poll_seconds = 0
    sweep = exports.sweep
    swept = 0
    enough = asyncio.Event()

    async def counted() -> None:
        nonlocal swept
        swept += 1
        if swept == 5:
            enough.set()
        await sweep()

    exports.sweep = counted
    await exports.start()
    await enough.wait()
    await exports.stop()
    assert swept >= 5
    assert said(caplog) == [SAID]
    assert not [r for r in caplog.records if "export sweep failed" in r.getMessage()]
    await app.state.aclose()


class Flaky:
    """A Redis client whose PING fails while ``down``."""

    def __init__(self) -> None:
        self.down = True
        self.connection_pool = type("Pool", (), {"connection_kwargs": {"host": "cache"}})()

    async def ping(self) -> bool:
        if self.down:
            raise redis.exceptions.ConnectionError("connection refused")
        return True


async def test_each_outage_is_one_line_and_its_end_another(caplog):
    caplog.set_level(logging.INFO, logger="fhir_adapter")
    client = Flaky()
    answers = []
    for down in (True, True, False, False, True, False):
        client.down = down
        answers.append(await redis_watch.ping(client))
    assert answers == [False, False, True, True, False, True]
    outage = SAID.replace(PLACE, "cache:6379/0")
    back = "redis at cache:6379/0 answers again"
    assert said(caplog) == [outage, back, outage, back]


def test_check_config_probe_names_redis(tmp_path, capsys):
    config = tmp_path / "adapter.toml"
    config.write_text(
        f'[server]\nopen_access = true\nredis_url = "{NOWHERE}"\n\n'
        '[sources.nyra-demo]\nconnector = "nyra"\ntimezone = "Asia/Kolkata"\n'
        "sandbox = { seed = 3, patients = 20 }\n"
    )
    assert main(["check-config", str(config), "--probe"]) == 1
    out = capsys.readouterr().out
    assert out.split("probe (one call per source):\n")[1] == (
        f"  redis {PLACE}: unreachable (ConnectionError)\n"
        "  source nyra-demo: not reached: redis unreachable (ConnectionError), "
        "its budget is kept there\n"
    )


async def test_a_search_whose_budget_lives_in_an_unreachable_redis_is_a_503_to_retry():
    app = app_with_redis(NOWHERE)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            r = await c.get("/fhir/Patient?_count=2")
    assert (r.status_code, r.headers["retry-after"]) == (503, "5")
    assert r.json() == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "transient",
                "diagnostics": "the service's shared state (Redis) is unreachable; try again later",
            }
        ],
    }
