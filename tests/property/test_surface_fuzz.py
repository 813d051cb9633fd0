"""The roads beside search, fuzzed: Subscription bodies, ``$export`` kick-offs,
``$export-poll`` and ``$export-file`` ids, Slot ids, and the token endpoint's forms and
client assertions. Whatever is sent, the answer is a 2xx or a 4xx (an OperationOutcome,
or OAuth's own error at the token endpoint): never a 5xx.

The app is the embedded default's shape (a Leyr and a Nyra source over in-process
sandboxes), with a client that may do anything; fresh examples on every run.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fhir.resources.R4B.operationoutcome import OperationOutcome
from harness import FAST
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.app import create_app
from adapter.auth.clients import load_clients
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import ExportSettings, Settings, SubscriptionSettings
from mappings import encode_id

LEYR, NYRA = "leyr-f", "nyra-f"
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TEXT = st.text(max_size=40)
# Text that names no host: no generated endpoint sends a request beyond this machine.
NO_HOST = st.text(max_size=30).filter(lambda t: "//" not in t)


class Fuzzed:
    def __init__(self, root) -> None:
        leyr = LeyrSandbox(seed=8, patients=6)
        nyra = NyraSandbox(seed=8, patients=6, limits=FAST)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        sources = {
            LEYR: {"connector": "leyr", **leyr.defaults()},
            NYRA: {"connector": "nyra", **nyra.defaults()},
        }
        raw = {
            "all": {
                "secret": "fuzz-secret-0123456789",
                "scopes": ["system/*.cruds"],
                "rate_limit": {"per_minute": 1_000_000},
            },
            "signed": {"jwks": {"keys": [{**public, "kid": "k1"}]}, "scopes": ["system/*.rs"]},
        }
        self.clients = load_clients(raw, list(sources))
        self.app = create_app(
            Settings(
                sources=sources,
                clients=self.clients,
                cursor_key=b"f" * 32,
                token_key=b"t" * 32,
                token_minutes=60,
                export=ExportSettings(dir=str(root / "export")),
                subscriptions=SubscriptionSettings(
                    dir=str(root / "subscriptions"),
                    poll_seconds=60.0,
                    allowed_endpoints=("http://hooks.test:*",),
                ),
            ),
            transports={
                LEYR: leyr.transport(),
                NYRA: nyra.transport(),
                "subscriptions": httpx.MockTransport(lambda r: httpx.Response(200)),
            },
        )
        client = self.clients["all"]
        token, _ = self.app.state.tokens.issue(client, dict(client.scopes))
        self.auth = {"Authorization": f"Bearer {token}"}
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://fhir.test"
        )

    def send(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self.loop.run_until_complete(self.http.request(method, path, **kwargs))
        assert response.status_code < 500, f"{method} {path}: {response.text[:300]}"
        if not response.is_success and path.startswith("/fhir"):
            OperationOutcome.model_validate(response.json())
        return response

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.run_until_complete(self.app.state.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    made = Fuzzed(tmp_path_factory.mktemp("fuzz"))
    yield made
    made.close()


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
SUBSCRIPTIONS = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(["Subscription", "Patient", ""])},
    optional={
        "status": st.sampled_from(["requested", "active", "off"]) | TEXT,
        "reason": TEXT,
        "criteria": st.sampled_from(["Patient?", "Appointment?status=booked", "Patient?name=%ff"])
        | TEXT,
        "end": TEXT
        | st.integers()
        | st.sampled_from(["2030-01-01T00:00:60Z", "2099-01-01T00:00:00Z"]),
        "channel": st.fixed_dictionaries(
            {},
            optional={
                "type": st.sampled_from(["rest-hook", "websocket"]) | TEXT,
                "endpoint": st.sampled_from(
                    [
                        "http://hooks.test/a",
                        "https://[::1]/",
                        "https://8.8.8.8:0/",
                        "https://10.1.1.1/",
                    ]
                )
                | NO_HOST,
                "payload": st.sampled_from(["application/fhir+json", "text/plain"]) | TEXT,
                "header": st.lists(TEXT, max_size=12) | JSONISH,
            },
        )
        | JSONISH,
        "extra": JSONISH,
    },
)


@SETTINGS
@given(body=SUBSCRIPTIONS, raw=st.booleans())
def test_subscription_bodies(fuzzed, body, raw):
    text = json.dumps(body).encode()  # any integer: orjson's reader refuses the largest
    content = text if not raw else text[:-1]  # cut: not JSON
    r = fuzzed.send(
        "POST",
        "/fhir/Subscription",
        content=content,
        headers={**fuzzed.auth, "content-type": "application/fhir+json"},
    )
    if r.status_code == 201:
        fuzzed.send("DELETE", f"/fhir/Subscription/{r.json()['id']}", headers=fuzzed.auth)


INSTANTS = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.isoformat())


@SETTINGS
@given(
    path=st.sampled_from(["/fhir/$export", "/fhir/Patient/$export", f"/fhir/Group/{NYRA}/$export"]),
    params=st.dictionaries(
        st.sampled_from(["_type", "_since", "_outputFormat", "_elements", "patient", "x"]),
        TEXT | INSTANTS,
        max_size=3,
    ),
    prefer=st.sampled_from(
        ["respond-async", "respond-async; handling=lenient", "", "handling=strict"]
    ),
)
def test_export_kick_offs(fuzzed, path, params, prefer):
    r = fuzzed.send("GET", path, params=params, headers={**fuzzed.auth, "prefer": prefer})
    if r.status_code == 202:
        fuzzed.send(
            "DELETE", r.headers["content-location"].split("fhir.test")[-1], headers=fuzzed.auth
        )


@SETTINGS
@given(job=st.text(min_size=1, max_size=300), name=st.text(min_size=1, max_size=80))
def test_export_status_and_file_ids(fuzzed, job, name):
    from urllib.parse import quote

    fuzzed.send("GET", f"/fhir/$export-poll/{quote(job, safe='')}", headers=fuzzed.auth)
    fuzzed.send(
        "GET",
        f"/fhir/$export-file/{quote(job, safe='')}/{quote(name, safe='')}",
        headers=fuzzed.auth,
    )


STAMPS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)).map(
    lambda d: d.strftime("%Y%m%dT%H%M")
)


@SETTINGS
@given(
    source=st.sampled_from([LEYR, NYRA]),
    stamp=STAMPS | st.text(max_size=14),
    resource=st.sampled_from(["doc-1", "x", ""]) | st.text(max_size=8),
    service=st.sampled_from(["0a1b2c3d", "zzzz", ""]),
    book=st.booleans(),
)
def test_slot_ids(fuzzed, source, stamp, resource, service, book):
    tail = f"-{service}" if source == LEYR and service else ""
    try:
        slot = encode_id(source, f"{resource}-{stamp}{tail}", "L0_1" if source == LEYR else None)
    except Exception:
        return  # no id of this shape can be written: nothing to send
    fuzzed.send("GET", f"/fhir/Slot/{slot}", headers=fuzzed.auth)
    if book:
        booking = {
            "resourceType": "Appointment",
            "status": "booked",
            "slot": [{"reference": f"Slot/{slot}"}],
            "participant": [{"status": "accepted", "actor": {"reference": f"Patient/{source}.x"}}],
        }
        fuzzed.send(
            "POST",
            "/fhir/Appointment",
            json=booking,
            headers={**fuzzed.auth, "content-type": "application/fhir+json"},
        )


CLAIMS = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from(["signed", "all", ""]) | JSONISH,
        "sub": st.sampled_from(["signed", "all"]) | JSONISH,
        "aud": st.sampled_from(["http://fhir.test/auth/token", "x"]) | JSONISH,
        "exp": st.integers(-(2**40), 2**40) | TEXT | JSONISH,
        "nbf": st.integers(-(2**40), 2**40) | TEXT,
        "iat": st.integers(-(2**40), 2**40) | TEXT,
        "jti": TEXT | JSONISH,
    },
)


@SETTINGS
@given(
    claims=CLAIMS,
    fresh=st.booleans(),
    form=st.dictionaries(
        st.sampled_from(["client_id", "scope", "client_secret", "grant_type", "x"]),
        TEXT,
        max_size=3,
    ),
    kid=st.sampled_from(["k1", "k2", None]),
)
def test_token_requests(fuzzed, claims, fresh, form, kid):
    if fresh:  # a well-formed assertion, then changed by the drawn claims
        now = int(time.time())
        claims = {
            "iss": "signed",
            "sub": "signed",
            "aud": "http://fhir.test/auth/token",
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
            **claims,
        }
    headers = {"kid": kid} if kid else {}
    try:
        assertion = jwt.encode(claims, fuzzed.key, algorithm="RS384", headers=headers)
    except (TypeError, ValueError):
        return  # PyJWT will not write these claims: no request to send
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
        **form,
    }
    r = fuzzed.send("POST", "/auth/token", data=data)
    if not r.is_success:
        assert set(r.json()) in ({"error", "error_description"}, {"resourceType", "issue"})
    else:
        assert r.json()["token_type"] == "bearer"


def test_the_fuzzed_roads_were_reached(fuzzed):
    """A well-formed request of each road is served, so the fuzz above is not all 4xx."""
    r = fuzzed.send(
        "POST",
        "/fhir/Subscription",
        json={
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "r",
            "criteria": "Patient?",
            "end": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "channel": {"type": "rest-hook", "endpoint": "http://hooks.test/a"},
        },
        headers={**fuzzed.auth, "content-type": "application/fhir+json"},
    )
    assert r.status_code == 201
    r = fuzzed.send("GET", "/fhir/$export", headers={**fuzzed.auth, "prefer": "respond-async"})
    assert r.status_code == 202
