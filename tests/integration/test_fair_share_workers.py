"""Three workers sharing one vendor budget through Redis, over HTTP: a client over its
share is told 429 by a worker it never used before, a budget spent for everyone is 503
from any worker, the RateLimit fields agree between workers, and with the vendor down
every worker's /readyz names the source as failing.

Each worker is an app of its own (its own budgets, circuits and Redis clients) in this
process, in front of one Nyra sandbox; the source and client names are unique to the
test, and the Redis keys named after them are deleted at its end (no database flushed)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
import redis
from services import needs_redis

from adapter.app import create_app
from adapter.sandbox import NyraSandbox
from adapter.settings import load_settings

pytestmark = needs_redis

REDIS = "redis://127.0.0.1:6379/15"
CONFIG = """
[server]
redis_url = "REDIS"

[sources.SOURCE]
connector = "nyra"
base_url = "http://nyra.test"
timezone = "Asia/Kolkata"
rate_limit = { per_second = 100, per_minute = 2, minute_window = 100.0 }
circuit = { failures = 2, open_seconds = 30 }
keys = [{ key = "${NYRA_KEY}", secret = "${NYRA_SECRET}", token = "${NYRA_TOKEN}" }]

[export]
dir = "EXPORT_DIR"

[clients.A]
secret = "${A_SECRET}"
scopes = ["system/*.cruds"]

[clients.B]
secret = "${B_SECRET}"
scopes = ["system/*.cruds"]
"""


class Workers:
    def __init__(self, tmp_path) -> None:
        tag = uuid.uuid4().hex[:8]
        self.source, self.a, self.b = f"nyra-{tag}", f"a-{tag}", f"b-{tag}"
        self.nyra = NyraSandbox(seed=3, patients=4)
        grant = self.nyra.api_keys()[0]
        self.secrets = {self.a: "a-secret-0123456789abcdef", self.b: "b-secret-0123456789abcdef"}
        env = {
            "A_SECRET": self.secrets[self.a],
            "B_SECRET": self.secrets[self.b],
            "NYRA_KEY": grant.key,
            "NYRA_SECRET": grant.secret,
            "NYRA_TOKEN": grant.token,
        }
        text = (
            CONFIG.replace("REDIS", REDIS)
            .replace("SOURCE", self.source)
            .replace("[clients.A]", f"[clients.{self.a}]")
            .replace("[clients.B]", f"[clients.{self.b}]")
            .replace("EXPORT_DIR", str(tmp_path / "export"))
        )
        path = tmp_path / "adapter.toml"
        path.write_text(text)
        settings = load_settings(path, env)
        self.loop = asyncio.new_event_loop()
        self.apps = [
            create_app(settings, transports={self.source: self.nyra.transport()}, workers=3)
            for _ in range(3)
        ]
        self.http = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fhir.test")
            for app in self.apps
        ]
        self.tokens = {c: self._token(c) for c in (self.a, self.b)}
        self.search = f"/fhir/Patient?_source={self.source}&_count=1&_total=none"

    def run(self, work):
        return self.loop.run_until_complete(work)

    def _token(self, client: str) -> str:
        r = self.run(
            self.http[0].post(
                "/auth/token",
                data={"grant_type": "client_credentials"},
                auth=(client, self.secrets[client]),
            )
        )
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def get(self, worker: int, client: str, url: str) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.tokens[client]}"}
        return self.run(self.http[worker].get(url, headers=headers))

    def close(self) -> None:
        for http in self.http:
            self.run(http.aclose())
        self.loop.close()
        with redis.Redis.from_url(REDIS) as r:
            for name in (self.source, self.a, self.b):
                found = list(r.scan_iter(match=f"*{name}*", count=1000))
                if found:
                    r.delete(*found)


@pytest.fixture
def workers(tmp_path):
    w = Workers(tmp_path)
    yield w
    w.close()


def refusal(r: httpx.Response) -> tuple[int, str | None, str]:
    return r.status_code, r.headers.get("retry-after"), r.json()["issue"][0]["diagnostics"]


def test_429_and_503_are_the_same_whichever_worker_answers(workers):
    w = workers
    first = w.get(0, w.a, w.search)
    assert (first.status_code, first.headers["ratelimit"]) == (200, f'"{w.source}";r=1;t=100')
    second = w.get(1, w.a, w.search)  # another worker: the same budget, one call left
    assert (second.status_code, second.headers["ratelimit"]) == (200, f'"{w.source}";r=0;t=100')
    spent = f"source {w.source}: its vendor budget is spent for now; try later"
    # The budget is spent for everyone: b, at a third worker, is told 503.
    assert refusal(w.get(2, w.b, w.search)) == (503, "101", spent)
    # b asked: a is over its half of the window, and the third worker, which never served
    # a, says so.
    over = (
        f"source {w.source}: this client has had its fair share of the vendor's budget "
        "(1 call per 100 s) while other clients ask for it too; try later"
    )
    assert refusal(w.get(2, w.a, w.search)) == (429, "100", over)


def test_with_the_vendor_down_every_worker_says_so(workers):
    w = workers
    w.nyra.faults.error_rate = 1.0  # every call a 5xx
    for worker in (0, 1):  # failures in two workers open the shared circuit
        assert w.get(worker, w.a, w.search).status_code == 503
    answers = [w.run(http.get("/readyz")).json()["sources"][w.source] for http in w.http]
    assert answers == ["circuit open"] * 3


def test_a_burst_at_one_worker_is_answered_not_failed(workers):
    """150 requests at once at one worker, more than a Redis client's pool holds: each
    waits for a connection (to the client request rate's counter, to the budget) rather
    than fail with a 500. The search is answered from what the first one read."""
    w = workers
    assert w.get(0, w.a, w.search).status_code == 200
    headers = {"authorization": f"Bearer {w.tokens[w.a]}"}

    async def burst():
        return await asyncio.gather(*(w.http[0].get(w.search, headers=headers) for _ in range(150)))

    answers = w.run(burst())
    assert [r.status_code for r in answers] == [200] * 150
