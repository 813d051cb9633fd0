"""No Subscription, however malformed, delays another's notification past one poll
interval.

A well-formed Subscription listens to every Patient; then, for each example, hypothesis
makes Subscriptions of any shape: through the API (each answer a 201 or a 4xx
OperationOutcome, never a 5xx) and straight into the store, as a record an older release
or a hand edit may have left there (an ``end`` of any kind, header lines of any text,
criteria that no longer parse, endpoints that fail, refuse or vanish). A vendor then
changes a patient, and the poller takes one round: the well-formed Subscription is told
of the change in that round. Rounds are taken by the test, not by a clock.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import defaultdict
from typing import Any

import httpx
import orjson
import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from harness import FAST
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.app import create_app
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import ExportSettings, Settings, SubscriptionSettings

LEYR, NYRA = "leyr-i", "nyra-i"
HOOKS = "http://hooks.test"
JSON = {"content-type": "application/fhir+json"}


class Hooks:
    """The endpoints: ``/good`` takes every notification; ``/fail`` answers 500;
    ``/raise`` cannot be reached; any other path answers 404."""

    def __init__(self) -> None:
        self.got: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._take)

    def _take(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.strip("/")
        if path == "raise":
            raise httpx.ConnectError("refused", request=request)
        if path == "fail":
            return httpx.Response(500)
        if path != "good":
            return httpx.Response(404)
        self.got[path].append(orjson.loads(request.content))
        return httpx.Response(200)

    def told(self) -> set[str]:
        return {
            e["resource"]["name"][0].get("text", "")
            for body in self.got["good"]
            for e in body.get("entry") or []
        }


class World:
    def __init__(self, root: Any) -> None:
        self.leyr = LeyrSandbox(seed=5, patients=6)
        self.nyra = NyraSandbox(seed=5, patients=6, limits=FAST)
        sources = {
            LEYR: {"connector": "leyr", **self.leyr.defaults()},
            NYRA: {"connector": "nyra", **self.nyra.defaults()},
        }
        self.hooks = Hooks()
        settings_ = Settings(
            open_access=True,
            sources=sources,
            cursor_key=b"i" * 32,
            export=ExportSettings(dir=str(root / "export")),
            subscriptions=SubscriptionSettings(
                dir=str(root / "subscriptions"),
                poll_seconds=60.0,  # never waited for: the test takes the rounds
                max_failures=3,
                allowed_endpoints=(f"{HOOKS}:*",),
            ),
        )
        transports = {
            LEYR: self.leyr.transport(),
            NYRA: self.nyra.transport(),
            "subscriptions": self.hooks.transport(),
        }
        self.app = create_app(settings_, transports=transports)
        self.poller = self.app.state.subscriptions
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://fhir.test"
        )
        self.good = self.post(_body("Patient?", f"{HOOKS}/good")).json()["id"]
        for _ in range(3):  # its feeds swept once: active
            self.run(self.poller.round())

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    def post(self, body: Any) -> httpx.Response:
        content = json.dumps(body).encode()
        return self.run(self.http.post("/fhir/Subscription", content=content, headers=JSON))

    def close(self) -> None:
        self.run(self.http.aclose())
        self.run(self.app.state.aclose())
        self.loop.close()


def _body(criteria: Any, endpoint: Any, **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "isolation",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"},
        **more,
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    made = World(tmp_path_factory.mktemp("isolation"))
    yield made
    made.close()


ENDS = st.one_of(
    st.sampled_from(
        [
            "2030-01-01T00:00:60Z",
            "2030-W01-1T00:00:00Z",
            "2030-02-30T00:00:00Z",
            "9999-12-31T23:59:59-14:00",
            "2001-01-01T00:00:00Z",  # past: off
            "2099-01-01T00:00:00Z",
            "",
            "soon",
        ]
    ),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
HEADERS = st.one_of(
    st.lists(st.text(max_size=40), max_size=4),
    st.lists(
        st.sampled_from(["X-Note: café", "X-A: b", "Host: x", "X-Bad:\r\nInjected: 1"]), max_size=3
    ),
    st.integers(),
    st.none(),
)
CRITERIA = st.one_of(
    st.sampled_from(
        [
            "Patient?",
            "Patient?gender=female",
            "Appointment?status=booked",
            f"Patient?_source={NYRA}",
            "Patient?_source=nope",
            "Patient?name=%ff",
            "Patient?birthdate=ge9999-12-31",
            "Observation?",
            "Patient?_cursor=x",
            "",
        ]
    ),
    st.text(max_size=30),
    st.integers(),
)
ENDPOINTS = st.one_of(
    st.sampled_from([f"{HOOKS}/fail", f"{HOOKS}/raise", f"{HOOKS}/gone", "https://10.0.0.1/"]),
    st.text(max_size=20).filter(lambda t: "//" not in t),  # no name to look up: no network
    st.none(),
)
BODIES = st.builds(
    lambda criteria, endpoint, end, header, drop: {
        k: v
        for k, v in {
            **_body(criteria, endpoint, end=end),
            "channel": {
                "type": "rest-hook",
                "endpoint": endpoint,
                "payload": "application/fhir+json",
                "header": header,
            },
        }.items()
        if k not in drop
    },
    CRITERIA,
    ENDPOINTS,
    ENDS,
    HEADERS,
    st.sets(st.sampled_from(["end", "channel", "criteria", "reason", "resourceType"]), max_size=2),
)


# Records that listen and hear the change, each broken in one more way: they reach
# delivery, where most trouble would start.
LISTENING = st.builds(
    lambda endpoint, header, end: {
        **_body("Patient?", endpoint),
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "header": header,
        },
        **({"end": end} if end is not None else {}),
    },
    st.sampled_from([f"{HOOKS}/fail", f"{HOOKS}/raise", f"{HOOKS}/gone", f"{HOOKS}/good"]),
    HEADERS,
    st.one_of(st.none(), ENDS),
)


def _storable(body: object) -> bool:
    try:
        orjson.dumps(body)
    except TypeError:
        return False
    return True


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    through_api=st.lists(st.one_of(BODIES, st.text(max_size=10), st.integers()), max_size=3),
    # Only what a store can hold: JSON that orjson writes (integers within 64 bits).
    stored=st.lists(st.one_of(LISTENING, BODIES).filter(_storable), max_size=3),
)
def test_no_subscription_delays_anothers_notification(world, through_api, stored):
    made: list[str] = []
    for body in through_api:
        r = world.post(body)
        if r.status_code == 201:
            made.append(r.json()["id"])
        else:  # refused: the client's mistake, said as one, never a 5xx
            assert 400 <= r.status_code < 500, r.text
            OperationOutcome.model_validate(r.json())
    for body in stored:  # what validation would refuse, as if left by an older release
        resource = {**body, "id": secrets.token_hex(8), "status": "active"}
        world.run(world.poller.store.create({"owner": None, "resource": resource, "base": None}))
        made.append(resource["id"])
    name = f"Changed {secrets.token_hex(4)}"
    next(iter(world.nyra.patients))["name"] = name

    world.run(world.poller.round())  # one poll interval

    assert name in world.hooks.told()
    good = world.run(world.poller.store.get(world.good))
    assert good["resource"]["status"] == "active" and not good.get("failures")
    for sub_id in made:
        world.run(world.poller.store.delete(sub_id))
