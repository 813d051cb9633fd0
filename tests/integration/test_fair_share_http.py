"""A vendor budget shared between clients, over HTTP: a client over its fair share while
another asks is told 429 (its own limit), a budget spent for everyone is 503, both with
whole-second Retry-After; every answer that used the budget says where the client stands
(RateLimit-Policy, RateLimit); and each client's quotas of exports and Subscriptions."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from adapter.app import create_app
from adapter.sandbox import NyraSandbox
from adapter.settings import load_settings

SECRETS = {"A_SECRET": "a-secret-0123456789abcdef", "B_SECRET": "b-secret-0123456789abcdef"}
CONFIG = """
[sources.nyra-f]
connector = "nyra"
base_url = "http://nyra.test"
timezone = "Asia/Kolkata"
rate_limit = { per_second = 100, per_minute = 2, minute_window = 100.0 }
keys = [{ key = "${NYRA_KEY}", secret = "${NYRA_SECRET}", token = "${NYRA_TOKEN}" }]

[export]
dir = "EXPORT_DIR"

[subscriptions]
dir = "SUBSCRIPTIONS_DIR"
poll_seconds = 3600.0
allowed_endpoints = ["http://127.0.0.1:*"]

[clients.a]
secret = "${A_SECRET}"
scopes = ["system/*.cruds"]

[clients.b]
secret = "${B_SECRET}"
scopes = ["system/*.cruds"]
max_exports = 1
max_subscriptions = 2
"""
SEARCH = "/fhir/Patient?_source=nyra-f&_count=1&_total=none"


class World:
    def __init__(self, tmp_path) -> None:
        self.nyra = NyraSandbox(seed=3, patients=4)
        grant = self.nyra.api_keys()[0]
        env = {
            **SECRETS,
            "NYRA_KEY": grant.key,
            "NYRA_SECRET": grant.secret,
            "NYRA_TOKEN": grant.token,
        }
        path = tmp_path / "adapter.toml"
        path.write_text(
            CONFIG.replace("EXPORT_DIR", str(tmp_path / "export")).replace(
                "SUBSCRIPTIONS_DIR", str(tmp_path / "subscriptions")
            )
        )
        self.settings = load_settings(path, env)
        self.app = create_app(self.settings, transports={"nyra-f": self.nyra.transport()})
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://fhir.test"
        )
        self.tokens = {c: self._token(c) for c in ("a", "b")}

    def call(self, client: str, method: str, url: str, **kw) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.tokens[client]}", **kw.pop("headers", {})}
        return self.loop.run_until_complete(self.http.request(method, url, headers=headers, **kw))

    def _token(self, client: str) -> str:
        secret = SECRETS[f"{client.upper()}_SECRET"]
        r = self.loop.run_until_complete(
            self.http.post(
                "/auth/token", data={"grant_type": "client_credentials"}, auth=(client, secret)
            )
        )
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()


def outcome(response: httpx.Response) -> tuple[int, str | None, list[tuple[str, str]]]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    issues = [(i["code"], i["diagnostics"]) for i in body["issue"]]
    return response.status_code, response.headers.get("retry-after"), issues


SPENT = [("throttled", "source nyra-f: its vendor budget is spent for now; try later")]
OVER = [
    (
        "throttled",
        "source nyra-f: this client has had its fair share of the vendor's budget "
        "(1 call per 100 s) while other clients ask for it too; try later",
    )
]


def test_over_its_share_is_429_spent_for_everyone_is_503(world):
    # The budget is 2 calls per 100 s; a search of one page is one call. Alone, a has
    # the whole budget, and each answer says what is left of it.
    first = world.call("a", "GET", SEARCH)
    assert first.status_code == 200
    assert first.headers["ratelimit-policy"] == '"nyra-f";q=2;w=100'
    assert first.headers["ratelimit"] == '"nyra-f";r=1;t=100'
    second = world.call("a", "GET", SEARCH)
    assert second.status_code == 200
    assert second.headers["ratelimit"] == '"nyra-f";r=0;t=100'
    # Nobody else asks: the budget is spent for everyone, a 503 until a slot is free
    # (its window, and the pool's 1% of slack).
    assert outcome(world.call("a", "GET", SEARCH)) == (503, "101", SPENT)
    # b has had nothing: the budget is spent for it too.
    refused = world.call("b", "GET", SEARCH)
    assert outcome(refused) == (503, "101", SPENT)
    assert refused.headers["ratelimit"] == '"nyra-f";r=0;t=101'
    # Now b asks too: a, with both calls of the window, is over its half of them: 429,
    # until both have left the window.
    over = world.call("a", "GET", SEARCH)
    assert outcome(over) == (429, "100", OVER)
    assert over.headers["ratelimit-policy"] == '"nyra-f";q=2;w=100'
    assert over.headers["ratelimit"] == '"nyra-f";r=0;t=100'
    metrics = world.loop.run_until_complete(world.http.get("/metrics")).text
    for client, outcome_, n in (("a", "granted", 2), ("a", "refused", 2), ("b", "refused", 1)):
        line = (
            f'vendor_lane_calls_total{{client="{client}",lane="interactive",'
            f'outcome="{outcome_}",source="nyra-f"}} {n:.1f}'
        )
        assert line in metrics, line


def test_each_client_runs_at_most_its_exports_at_once(world):
    kick_off = {"accept": "application/fhir+json", "prefer": "respond-async"}
    url = "/fhir/Group/nyra-f/$export?_type=Patient"
    first = world.call("b", "GET", url, headers=kick_off)
    assert first.status_code == 202
    refused = world.call("b", "GET", url, headers=kick_off)
    assert outcome(refused) == (
        429,
        "30",
        [
            (
                "throttled",
                "this client already runs 1 export job, as many as it may at once "
                "([clients.NAME] max_exports): wait for one to finish, or cancel one",
            )
        ],
    )
    # Another client's quota is its own (a: the default of 2).
    assert world.call("a", "GET", url, headers=kick_off).status_code == 202
    assert world.call("a", "GET", url, headers=kick_off).status_code == 202
    assert world.call("a", "GET", url, headers=kick_off).status_code == 429
    # Cancelled, the job no longer counts.
    poll = first.headers["content-location"].removeprefix("http://fhir.test")
    assert world.call("b", "DELETE", poll).status_code == 202
    assert world.call("b", "GET", url, headers=kick_off).status_code == 202


def test_each_client_holds_at_most_its_subscriptions(world):
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "quota",
        "criteria": "Patient?_source=nyra-f",
        "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"},
    }
    headers = {"content-type": "application/fhir+json"}
    made = [world.call("b", "POST", "/fhir/Subscription", json=body, headers=headers)]
    made.append(world.call("b", "POST", "/fhir/Subscription", json=body, headers=headers))
    assert [r.status_code for r in made] == [201, 201]
    third = world.call("b", "POST", "/fhir/Subscription", json=body, headers=headers)
    assert outcome(third) == (
        422,
        None,
        [
            (
                "business-rule",
                "this client holds 2 Subscriptions, as many as it may "
                "([clients.NAME] max_subscriptions = 2): delete one first",
            )
        ],
    )
    # a's are its own: the default of 20.
    assert (
        world.call("a", "POST", "/fhir/Subscription", json=body, headers=headers).status_code == 201
    )
    gone = made[0].json()["id"]
    assert world.call("b", "DELETE", f"/fhir/Subscription/{gone}").status_code == 204
    assert (
        world.call("b", "POST", "/fhir/Subscription", json=body, headers=headers).status_code == 201
    )
