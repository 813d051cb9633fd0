"""Who may do what: tokens, scopes, per-client sources, rate limits, audit, and secrets
and patient data kept out of every log line and error body."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from datetime import UTC, datetime

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fhir_check import validate
from harness import FAST

from adapter.app import create_app
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import load_settings
from mappings import encode_id

SECRETS = {
    "ALL_SECRET": "all-secret-0123456789abcdef",
    "NYRA_ONLY_SECRET": "nyra-only-secret-0123456789",
    "LIMITED_SECRET": "limited-secret-0123456789ab",
}
CONFIG = """
[server]
token_minutes = 5

[sources.leyr-a]
connector = "leyr"
base_url = "http://leyr.test"
emr = "webdoc"
care_units = ["L0_1", "L0_2"]
timezone = "Europe/Stockholm"
client_id = "${LEYR_ID}"
client_secret = "${LEYR_SECRET}"

[sources.nyra-b]
connector = "nyra"
base_url = "http://nyra.test"
timezone = "Asia/Kolkata"
rate_limit = { per_second = 12, per_minute = 60, second_window = 0.000417, minute_window = 0.025 }
keys = [{ key = "${NYRA_KEY}", secret = "${NYRA_SECRET}", token = "${NYRA_TOKEN}" }]

[clients.all]
secret = "${ALL_SECRET}"
scopes = ["system/*.cruds"]

[clients.nyra-only]
secret = "${NYRA_ONLY_SECRET}"
scopes = ["system/*.cruds"]
sources = ["nyra-b"]

[clients.limited]
secret = "${LIMITED_SECRET}"
scopes = ["system/Patient.rs"]
rate_limit = { per_minute = 3 }

[clients.signed]
jwks = "${SIGNED_JWKS}"
scopes = ["system/*.rs"]
"""


class World:
    def __init__(self, tmp_path) -> None:
        self.leyr = LeyrSandbox(seed=6, patients=8)
        self.nyra = NyraSandbox(seed=6, patients=8, limits=FAST)
        grant = self.nyra.api_keys()[0]
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP384R1())
        jwks = {
            "keys": [
                {
                    **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key())),
                    "kid": "rsa-1",
                    "alg": "RS384",
                },
                {
                    **json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key())),
                    "kid": "ec-1",
                    "alg": "ES384",
                },
            ]
        }
        self.env = {
            **SECRETS,
            "LEYR_ID": self.leyr.client_id,
            "LEYR_SECRET": self.leyr.client_secret,
            "NYRA_KEY": grant.key,
            "NYRA_SECRET": grant.secret,
            "NYRA_TOKEN": grant.token,
            "SIGNED_JWKS": json.dumps(jwks),
        }
        path = tmp_path / "adapter.toml"
        path.write_text(CONFIG)
        self.settings = load_settings(path, self.env)
        transports = {"leyr-a": self.leyr.transport(), "nyra-b": self.nyra.transport()}
        self.app = create_app(self.settings, transports=transports)
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://fhir.test"
        )

    def call(self, method: str, url: str, **kw) -> httpx.Response:
        return self.loop.run_until_complete(self.http.request(method, url, **kw))

    def token(self, client: str, scope: str | None = None) -> str:
        form = {"grant_type": "client_credentials"}
        if scope:
            form["scope"] = scope
        secret = SECRETS[
            {"all": "ALL_SECRET", "nyra-only": "NYRA_ONLY_SECRET", "limited": "LIMITED_SECRET"}[
                client
            ]
        ]
        r = self.call("POST", "/auth/token", data=form, auth=(client, secret))
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


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def ids_of(world: World) -> dict[str, dict[str, str]]:
    """A Patient and a booked Appointment ahead (one an update may change) in each
    source."""
    leyr_p = next(iter(world.leyr.patients["L0_1"]))
    nyra_p = next(iter(world.nyra.patients))
    now = datetime.now(UTC).isoformat()
    ahead = {}
    for source in ("leyr-a", "nyra-b"):
        page = world.call(
            "GET",
            "/fhir/Appointment",
            params={"_source": source, "status": "booked", "date": f"gt{now}", "_count": "1"},
            headers=bearer(world.token("all")),
        ).json()
        ahead[source] = page["entry"][0]["resource"]["id"]
    return {
        "leyr-a": {
            "Patient": encode_id("leyr-a", leyr_p["id"], "L0_1"),
            "Appointment": ahead["leyr-a"],
        },
        "nyra-b": {"Patient": encode_id("nyra-b", nyra_p["id"]), "Appointment": ahead["nyra-b"]},
    }


# -- the token endpoint -----------------------------------------------------------------------


def test_client_secret_basic_and_post(world):
    basic = world.call(
        "POST",
        "/auth/token",
        data={"grant_type": "client_credentials"},
        auth=("all", SECRETS["ALL_SECRET"]),
    )
    post = world.call(
        "POST",
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "all",
            "client_secret": SECRETS["ALL_SECRET"],
        },
    )
    for r in (basic, post):
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        body = r.json()
        assert body["token_type"] == "bearer" and body["expires_in"] == 300
        assert body["scope"] == "system/*.cruds"


@pytest.mark.parametrize(
    "form,auth,status,error",
    [
        (
            {"grant_type": "client_credentials"},
            ("all", "wrong-secret-0000000000"),
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials"},
            ("nobody", "whatever-000000000000"),
            401,
            "invalid_client",
        ),
        ({"grant_type": "password"}, ("all", SECRETS["ALL_SECRET"]), 400, "unsupported_grant_type"),
        (
            {"grant_type": "client_credentials", "scope": "user/Patient.rs"},
            ("all", SECRETS["ALL_SECRET"]),
            400,
            "invalid_scope",
        ),
        (
            {"grant_type": "client_credentials", "scope": "system/Slot.s"},
            ("limited", SECRETS["LIMITED_SECRET"]),
            400,
            "invalid_scope",
        ),
        ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
    ],
)
def test_token_endpoint_refusals(world, form, auth, status, error):
    r = world.call("POST", "/auth/token", data=form, auth=auth)
    assert r.status_code == status and r.json()["error"] == error
    assert SECRETS["ALL_SECRET"] not in r.text


def test_scope_is_narrowed_to_what_is_held(world):
    r = world.call(
        "POST",
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/*.cruds system/Patient.read"},
        auth=("limited", SECRETS["LIMITED_SECRET"]),
    )
    assert r.json()["scope"] == "system/Patient.rs"


def _assertion(world: World, key="rsa", **changes) -> str:
    now = int(time.time())
    claims = {
        "iss": "signed",
        "sub": "signed",
        "aud": "http://fhir.test/auth/token",
        "exp": now + 240,
        "jti": str(uuid.uuid4()),
    }
    claims.update(changes.pop("claims", {}))
    private, alg, kid = (
        (world.rsa, "RS384", "rsa-1") if key == "rsa" else (world.ec, "ES384", "ec-1")
    )
    alg = changes.pop("alg", alg)
    kid = changes.pop("kid", kid)
    if alg == "none":
        return jwt.encode(claims, None, algorithm="none", headers={"kid": kid})
    if alg == "HS384":
        return jwt.encode(claims, b"x" * 48, algorithm="HS384", headers={"kid": kid})
    return jwt.encode(claims, private, algorithm=alg, headers={"kid": kid})


def _with_assertion(world: World, assertion: str) -> httpx.Response:
    return world.call(
        "POST",
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )


@pytest.mark.parametrize("key", ["rsa", "ec"])
def test_private_key_jwt(world, key):
    assertion = _assertion(world, key)
    first = _with_assertion(world, assertion)
    assert first.status_code == 200 and first.json()["scope"] == "system/*.rs"
    token = first.json()["access_token"]
    assert world.call("GET", "/fhir/Patient", headers=bearer(token)).status_code == 200
    replayed = _with_assertion(world, assertion)
    assert replayed.status_code == 401 and "already used" in replayed.json()["error_description"]


@pytest.mark.parametrize(
    "changes,reason",
    [
        ({"claims": {"exp": int(time.time()) - 10}}, "expired"),
        ({"claims": {"exp": int(time.time()) + 3600}}, "5 minutes"),
        ({"claims": {"aud": "https://elsewhere/token"}}, "audience"),
        ({"kid": "no-such-key"}, "unknown key"),
        ({"alg": "none"}, "RS384 or ES384"),
        ({"alg": "HS384"}, "RS384 or ES384"),
        ({"claims": {"iss": "all", "sub": "all"}}, "unknown key"),
    ],
)
def test_bad_client_assertions(world, changes, reason):
    r = _with_assertion(world, _assertion(world, **changes))
    assert r.status_code == 401 and reason in r.json()["error_description"]


# -- access tokens ---------------------------------------------------------------------------


def _forged(world: World, **claims) -> str:
    now = int(time.time())
    base = {
        "iss": "fhir-adapter",
        "sub": "all",
        "aud": "urn:fhir-adapter",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "scope": "system/*.cruds",
    }
    return jwt.encode({**base, **claims}, world.settings.token_key, algorithm="HS256")


def _tampered(token: str) -> str:
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "nyra-only" if claims["sub"] == "all" else "all"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


def test_token_checks(world):
    now = int(time.time())
    good = world.token("all")
    cases = {
        "expired": _forged(world, exp=now - 1),
        "not yet valid": _forged(world, nbf=now + 600),
        "wrong audience": _forged(world, aud="https://other.example/fhir"),
        "tampered payload": _tampered(good),
        "alg none": jwt.encode({"sub": "all", "scope": "system/*.cruds"}, None, algorithm="none"),
        "wrong key": jwt.encode(
            jwt.decode(good, options={"verify_signature": False}), b"k" * 32, algorithm="HS256"
        ),
        "unknown client": _forged(world, sub="removed-client"),
        "not a JWT": "abc",
    }
    assert world.call("GET", "/fhir/Patient", headers=bearer(good)).status_code == 200
    for name, token in cases.items():
        r = world.call("GET", "/fhir/Patient", headers=bearer(token))
        assert r.status_code == 401, name
        assert r.headers["www-authenticate"].startswith('Bearer realm="fhir-adapter"'), name
        validate(r.json())
    missing = world.call("GET", "/fhir/Patient")
    assert (
        missing.status_code == 401
        and missing.headers["www-authenticate"] == 'Bearer realm="fhir-adapter"'
    )
    assert world.call("GET", "/fhir/metadata").status_code == 200  # open


# -- the matrix: route x scope x granted source -----------------------------------------------


ROUTES = [
    # (interaction, resource type, how to call it for a source)
    ("read", "Patient", lambda ids, s: ("GET", f"/fhir/Patient/{ids[s]['Patient']}", {})),
    (
        "read",
        "Appointment",
        lambda ids, s: ("GET", f"/fhir/Appointment/{ids[s]['Appointment']}", {}),
    ),
    ("search", "Patient", lambda ids, s: ("GET", f"/fhir/Patient?_source={s}", {})),
    (
        "search",
        "Appointment",
        lambda ids, s: ("POST", "/fhir/Appointment/_search", {"data": {"_source": s}}),
    ),
    (
        "create",
        "Patient",
        lambda ids, s: (
            "POST",
            "/fhir/Patient",
            {
                "json": {
                    "resourceType": "Patient",
                    "meta": {"source": s},
                    "name": [{"given": ["Mira"], "family": "Lind"}],
                    "telecom": [{"system": "phone", "value": "+919800000001"}],
                },
                "headers": {"content-type": "application/fhir+json"},
            },
        ),
    ),
    (
        "update",
        "Appointment",
        lambda ids, s: ("PUT", f"/fhir/Appointment/{ids[s]['Appointment']}", {"update": True}),
    ),
]
LETTER = {"read": "r", "search": "s", "create": "c", "update": "u"}
# The change each source takes to a booked appointment ahead (Nyra changes only the
# status: a cancel).
CHANGE = {"leyr-a": {"comment": "changed"}, "nyra-b": {"status": "cancelled"}}


@pytest.mark.parametrize("client", ["all", "nyra-only"])
@pytest.mark.parametrize("has_scope", [True, False])
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r[0]}-{r[1]}")
def test_matrix(world, client, has_scope, route):
    interaction, resource_type, make = route
    letters = "cruds" if has_scope else "cruds".replace(LETTER[interaction], "")
    token = world.token(client, f"system/{resource_type}.{letters}")
    ids = ids_of(world)
    for source in ("leyr-a", "nyra-b"):
        method, url, kw = make(ids, source)
        if kw.pop("update", False):
            current = world.call("GET", url, headers=bearer(world.token("all"))).json()
            kw = {
                "json": {**current, **CHANGE[source]},
                "headers": {"content-type": "application/fhir+json"},
            }
        headers = {**kw.pop("headers", {}), **bearer(token)}
        r = world.call(method, url, headers=headers, **kw)
        granted = client == "all" or source == "nyra-b"
        if not has_scope:
            assert r.status_code == 403, (source, r.text)
            assert r.headers["www-authenticate"].endswith('error="insufficient_scope"')
        elif not granted:
            if interaction == "search":
                assert r.status_code == 200 and "entry" not in r.json() and r.json()["total"] == 0
            else:  # unknown to this client; a create names a source it may not write
                assert r.status_code == {"create": 422}.get(interaction, 404), (source, r.text)
        else:
            expected = {"read": 200, "search": 200, "create": 201, "update": 200}
            assert r.status_code == expected[interaction], (source, r.text)
            if interaction == "update":  # made, and read back as made
                again = world.call("GET", url, headers=bearer(world.token("all"))).json()
                assert {k: again.get(k) for k in CHANGE[source]} == CHANGE[source]
        if r.status_code >= 400 and source == "leyr-a" and client == "nyra-only":
            # what a client may not see is as unknown as what does not exist
            body = r.text.replace(ids["leyr-a"].get(resource_type, ""), "")
            assert "leyr-a" not in body and "L0_1" not in body, body
        validate(r.json()) if r.content else None


# -- rate limits, sizes, audit, leaks --------------------------------------------------------


def test_per_client_rate_limit(world):
    token = world.token("limited")
    answers = [world.call("GET", "/fhir/Patient", headers=bearer(token)) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert answers[0].headers["x-ratelimit-limit"] == "3"
    assert 1 <= int(answers[3].headers["retry-after"]) <= 60
    validate(answers[3].json())


def test_uri_and_header_limits(world):
    token = world.token("all")
    long_url = world.call("GET", "/fhir/Patient?name=" + "a" * 9000, headers=bearer(token))
    assert long_url.status_code == 414
    big = world.call("GET", "/fhir/Patient", headers={**bearer(token), "x-big": "b" * 17000})
    assert big.status_code == 431


def test_smart_configuration_and_capability_security(world):
    conf = world.call("GET", "/.well-known/smart-configuration").json()
    assert conf["token_endpoint"] == "http://fhir.test/auth/token"
    assert "private_key_jwt" in conf["token_endpoint_auth_methods_supported"]
    again = world.call("GET", "/fhir/.well-known/smart-configuration").json()
    assert again == conf
    statement = world.call("GET", "/fhir/metadata").json()
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert security["extension"][0]["extension"][0]["valueUri"] == conf["token_endpoint"]


def test_no_secret_or_patient_data_in_logs_or_error_bodies(world, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    names = ["Maja Ek", "Oskar Ljung", "Kiran Bose"]
    phones = ["+46701112233", "+919811122233"]
    national = "194005070040"  # a personnummer (Luhn valid)
    token = world.token("all")
    errors: list[str] = []

    def call(method, url, **kw):
        r = world.call(method, url, **kw)
        if r.status_code >= 400:
            errors.append(r.text + json.dumps(dict(r.headers)))
        return r

    json_headers = {**bearer(token), "content-type": "application/fhir+json"}
    leyr_body = {
        "resourceType": "Patient",
        "meta": {"source": "leyr-a"},
        "identifier": [{"system": "urn:oid:1.2.752.129.2.1.3.1", "value": national}],
        "name": [{"given": ["Maja"], "family": "Ek"}],
        "telecom": [{"system": "phone", "value": phones[0]}],
    }
    nyra_body = {
        "resourceType": "Patient",
        "meta": {"source": "nyra-b"},
        "name": [{"given": ["Kiran"], "family": "Bose"}],
        "telecom": [{"system": "phone", "value": phones[1]}],
    }
    made = call("POST", "/fhir/Patient", json=leyr_body, headers=json_headers).json()
    call("POST", "/fhir/Patient", json=nyra_body, headers=json_headers)
    call("GET", f"/fhir/Patient/{made['id']}", headers=bearer(token))
    call(
        "GET",
        "/fhir/Patient",
        params={"name": "Oskar Ljung", "phone": phones[1]},
        headers=bearer(token),
    )
    call("GET", "/fhir/Patient", params={"birthdate": "Maja Ek"}, headers=bearer(token))
    call(
        "GET",
        "/fhir/Patient",
        params={"identifier": f"urn:oid:1.2.752.129.2.1.3.1|{national}"},
        headers=bearer(token),
    )
    # failures: bad bodies with patient data, bad credentials, bad tokens, a failing vendor
    call(
        "POST",
        "/fhir/Patient",
        json={**leyr_body, "birthDate": "Oskar Ljung"},
        headers=json_headers,
    )
    call("POST", "/fhir/Patient", json={**nyra_body, "gender": phones[0]}, headers=json_headers)
    call(
        "POST",
        "/fhir/Patient",
        json={**nyra_body, "meta": {"source": "nowhere"}},
        headers=json_headers,
    )
    call(
        "POST",
        "/auth/token",
        data={"grant_type": "client_credentials"},
        auth=("all", SECRETS["NYRA_ONLY_SECRET"]),
    )
    call("GET", "/fhir/Patient", headers=bearer(token + "x"))
    world.nyra.expire_token(world.nyra.api_keys()[0])
    call("GET", "/fhir/Patient", params={"_source": "nyra-b"}, headers=bearer(token))
    world.leyr.faults.error_rate = 1.0
    call("POST", "/fhir/Patient", json={**leyr_body, "identifier": []}, headers=json_headers)
    assert len(errors) >= 7

    forbidden = [
        *SECRETS.values(),
        world.env["LEYR_SECRET"],
        world.env["NYRA_KEY"],
        world.env["NYRA_SECRET"],
        world.env["NYRA_TOKEN"],
        token,
        *names,
        "Maja",
        "Ljung",
        *phones,
        phones[0][3:],
        national,
    ]
    logs = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert any('"event":"fhir.request"' in line for line in logs)  # the audit trail ran
    for text in logs + errors:
        for value in forbidden:
            assert value not in text, f"{value!r} leaked into: {text[:200]}"


def test_audit_records_name_client_interaction_and_ids(world, caplog):
    caplog.set_level(logging.INFO, logger="fhir_adapter.audit")
    token = world.token("nyra-only")
    ids = ids_of(world)
    world.call("GET", f"/fhir/Patient/{ids['nyra-b']['Patient']}", headers=bearer(token))
    world.call("GET", f"/fhir/Patient/{ids['leyr-a']['Patient']}", headers=bearer(token))
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "fhir_adapter.audit"]
    assert records[-2]["client"] == "nyra-only" and records[-2]["interaction"] == "read"
    assert records[-2]["ids"] == [ids["nyra-b"]["Patient"]] and records[-2]["sources"] == ["nyra-b"]
    assert records[-2]["status"] == 200 and records[-2]["outcome"] == "success"
    assert records[-1]["status"] == 404 and records[-1]["ids"] == []


def test_audit_events_as_ndjson(tmp_path):
    path = tmp_path / "adapter.toml"
    path.write_text(
        '[server]\naudit_ndjson = "'
        + str(tmp_path / "audit.ndjson")
        + '"\n'
        + CONFIG.split("[server]\ntoken_minutes = 5\n")[1].split("[clients.signed]")[0]
    )
    leyr, nyra = LeyrSandbox(seed=6, patients=3), NyraSandbox(seed=6, patients=3, limits=FAST)
    grant = nyra.api_keys()[0]
    env = {
        **SECRETS,
        "LEYR_ID": leyr.client_id,
        "LEYR_SECRET": leyr.client_secret,
        "NYRA_KEY": grant.key,
        "NYRA_SECRET": grant.secret,
        "NYRA_TOKEN": grant.token,
    }
    settings = load_settings(path, env)
    app = create_app(settings, transports={"leyr-a": leyr.transport(), "nyra-b": nyra.transport()})

    async def scenario():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://a"
        ) as c:
            token = (
                await c.post(
                    "/auth/token",
                    data={"grant_type": "client_credentials"},
                    auth=("all", SECRETS["ALL_SECRET"]),
                )
            ).json()["access_token"]
            await c.get("/fhir/Patient?_count=2", headers=bearer(token))
            await c.get("/fhir/Patient/nyra-b.nobody", headers=bearer(token))

    asyncio.run(scenario())
    events = [json.loads(line) for line in (tmp_path / "audit.ndjson").read_bytes().splitlines()]
    assert len(events) == 2
    for event in events:
        validate(event)
        assert event["agent"][0]["who"]["display"] == "all"
    assert events[0]["outcome"] == "0" and len(events[0]["entity"]) == 2
    assert events[1]["outcome"] == "4" and "entity" not in events[1]
