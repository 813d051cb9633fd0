"""What a hostile client sends, refused where it is read: each a 4xx OperationOutcome
naming the element or parameter, never a 500, never a vendor call.

Subscriptions (an ``end`` that is no instant, header lines that are not visible ASCII,
criteria naming no source, endpoints that are not public), export ids and ``_since``,
Slot ids and instants at the ends of the calendar, client assertions, bodies with a
repeated JSON name, ``If-None-Exist`` and ``If-Match`` that say no search or version,
``Prefer`` lists, strings too long or holding control characters; the one OpenAPI
document; and a log line that never repeats what a client wrote.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hostile import JSON, LEYR, NYRA, checked, open_app, outcome, refused

from adapter.app import create_app
from adapter.settings import SettingsError, load_settings
from mappings import encode_id

pytestmark = pytest.mark.anyio

ASYNC = {"prefer": "respond-async"}


def subscription(**changes) -> dict:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": "Patient?gender=female",
        "channel": {"type": "rest-hook", "endpoint": "https://8.8.8.8/hook"},
    }
    channel = changes.pop("channel", None)
    if channel is not None:
        body["channel"] = {**body["channel"], **channel}
    body.update(changes)
    return body


# -- Subscriptions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes,expression,said",
    [
        ({"end": "2030-01-01T00:00:60Z"}, "Subscription.end", "a leap second"),
        ({"end": 1893456000}, "Subscription.end", "written as a string"),
        ({"end": "2030-W01-1T00:00:00Z"}, "Subscription.end", "must be an instant"),
        ({"end": "9999-12-31T23:59:59-14:00"}, "Subscription.end", "years 1-9999"),
        ({"channel": {"header": ["X-Note: café"]}}, "Subscription.channel.header[0]", "ASCII"),
        ({"channel": {"header": ["X-Note:"]}}, "Subscription.channel.header[0]", "ASCII"),
        ({"channel": {"header": ["X-A\tB: 1"]}}, "Subscription.channel.header[0]", "ASCII"),
        (
            {"channel": {"header": ["Host: elsewhere.org"]}},
            "Subscription.channel.header[0]",
            "host",
        ),
        (
            {"channel": {"header": ["X-Long: " + "a" * 1100]}},
            "Subscription.channel.header[0]",
            "1024",
        ),
        (
            {"channel": {"header": [f"X-{i}: v" for i in range(11)]}},
            "Subscription.channel.header",
            "at most 10",
        ),
        ({"criteria": "Patient?_source=nope"}, "Subscription.criteria", "names no source"),
        ({"criteria": "Patient?name=%ff"}, "Subscription.criteria", "not UTF-8"),
        (
            {"channel": {"endpoint": "https://100.64.0.1/"}},
            "Subscription.channel.endpoint",
            "not public",
        ),
        (
            {"channel": {"endpoint": "https://100.100.100.200/"}},
            "Subscription.channel.endpoint",
            "not public",
        ),
        (
            {"channel": {"endpoint": "https://[2002:7f00:1::1]/"}},
            "Subscription.channel.endpoint",
            "not public",
        ),
        (
            {"channel": {"endpoint": "https://[fec0::1]/"}},
            "Subscription.channel.endpoint",
            "not public",
        ),
        (
            {"channel": {"endpoint": "https://[64:ff9b::a9fe:a9fe]/"}},
            "Subscription.channel.endpoint",
            "not public",
        ),
        (
            {"channel": {"endpoint": "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/"}},
            "Subscription.channel.endpoint",
            "not public",
        ),
        ({"channel": {"endpoint": "https://8.8.8.8:0/"}}, "Subscription.channel.endpoint", "port"),
    ],
)
async def test_subscriptions_that_could_not_be_served_are_refused(http, changes, expression, said):
    r = await http.post("/fhir/Subscription", json=subscription(**changes), headers=JSON)
    issue = refused(r, 422, expression)
    assert said in issue["diagnostics"]


async def test_a_public_endpoint_with_good_headers_and_end_is_taken(http):
    body = subscription(
        end="2030-01-01T00:00:00.5+05:30",
        channel={"header": ["Authorization: Bearer abc.def", "X-Tenant: 7"]},
        criteria=f"Patient?_source={NYRA}",
    )
    r = await http.post("/fhir/Subscription", json=body, headers=JSON)
    assert r.status_code == 201, r.text
    assert r.json()["channel"]["header"] == ["Authorization: ***", "X-Tenant: ***"]


# -- exports -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/$export-poll/" + "a" * 300,
        "/fhir/$export-poll/abc%00",
        "/fhir/$export-file/" + "a" * 300 + "/Patient.x.001.ndjson",
        "/fhir/$export-file/abc%00/Patient.x.001.ndjson",
    ],
)
async def test_an_export_id_that_is_no_jobs_is_404(http, path):
    r = await http.get(path)
    issue = refused(r, 404)
    assert issue["diagnostics"] == "no such export job (finished ones expire)"


async def test_an_export_id_of_another_shape_is_404_on_delete_too(http):
    refused(await http.delete("/fhir/$export-poll/" + "b" * 300), 404)
    refused(await http.get("/fhir/$export-poll/..%2F..%2Fetc"), 404)  # no such path


@pytest.mark.parametrize(
    "since", ["2026-W01-1T00:00:00Z", "2026-01-01", "2026-01-01T00:00:00", "2026-01-01T00:00:60Z"]
)
async def test_since_is_an_instant_strictly(http, since):
    r = await http.get("/fhir/$export", params={"_since": since}, headers=ASYNC)
    issue = refused(r, 400, "_since")
    assert issue["diagnostics"].startswith("_since ")


async def test_prefer_respond_async_with_a_semicolon_list_is_read(http):
    r = await http.get(
        "/fhir/$export",
        params={"_bogus": "x"},
        headers={"prefer": "respond-async; handling=lenient"},
    )
    assert r.status_code == 202, r.text


# -- Slot ids and instants at the ends of the calendar ---------------------------------------


@pytest.mark.parametrize(
    "slot",
    [
        encode_id(LEYR, "doc-1-99991231T2359-0a1b2c3d", "L0_1"),
        encode_id(LEYR, "doc-1-00010101T0000-0a1b2c3d", "L0_1"),
        encode_id(NYRA, "doc-1-99991231T2359"),
        encode_id(NYRA, "doc-1-00010101T0000"),
    ],
)
async def test_a_slot_id_at_either_end_of_the_calendar_is_not_found(http, slot):
    r = await http.get(f"/fhir/Slot/{slot}")
    refused(r, 404)
    booking = {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot}"}],
        "participant": [
            {"status": "accepted", "actor": {"reference": f"Patient/{slot.split('.')[0]}.x"}}
        ],
    }
    r = await http.post("/fhir/Appointment", json=booking, headers=JSON)
    assert 400 <= r.status_code < 500, r.text
    outcome(r)


@pytest.mark.parametrize("start", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
async def test_an_instant_outside_the_calendar_in_utc_is_422_naming_it(http, boxes, start):
    patients = (await http.get("/fhir/Patient", params={"_source": NYRA, "_count": "1"})).json()
    patient = patients["entry"][0]["resource"]["id"]
    booking = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start,
        "end": start,
        "participant": [{"status": "accepted", "actor": {"reference": f"Patient/{patient}"}}],
    }
    r = await http.post("/fhir/Appointment", json=booking, headers=JSON)
    assert r.status_code == 422, r.text
    assert [i["expression"] for i in outcome(r)["issue"]] == [
        ["Appointment.start"],
        ["Appointment.end"],
    ]


@pytest.mark.parametrize("value", [{}, 1, True])
async def test_a_url_element_that_is_not_a_string_is_422_naming_it(http, value):
    """``"valueUrl": {}`` (what the API fuzzer sent, typed by the OpenAPI document's
    Extension): the models' url check failed on it with a TypeError, a 500."""
    patient = {
        "resourceType": "Patient",
        "name": [{"family": "Ek", "given": ["Ann"]}],
        "extension": [{"url": "https://example.org/x", "valueUrl": value}],
    }
    r = await http.post("/fhir/Patient", json=patient, headers=JSON)
    issue = refused(r, 422, "Patient.extension[0].valueUrl")
    assert issue["diagnostics"] == "not valid FHIR R4: a url is a JSON string"


async def test_a_url_element_that_is_an_empty_array_is_422(http):
    patient = {
        "resourceType": "Patient",
        "extension": [{"url": "https://example.org/x", "valueUrl": []}],
    }
    r = await http.post("/fhir/Patient", json=patient, headers=JSON)
    issue = refused(r, 422, "Patient")
    assert issue["diagnostics"] == (
        "not valid FHIR R4: an element holds a value of the wrong JSON type"
    )


async def test_a_subscription_endpoint_that_is_an_object_is_422_naming_it(http):
    """``"endpoint": {}``, as the API fuzzer sent it: a 500 before."""
    r = await http.post(
        "/fhir/Subscription", json=subscription(channel={"endpoint": {}}), headers=JSON
    )
    issue = refused(r, 422, "Subscription.channel.endpoint")
    assert issue["diagnostics"] == (
        "not a valid Subscription: an element holds a value of the wrong JSON type"
    )


# -- bodies, conditions and versions ---------------------------------------------------------


async def test_a_repeated_json_name_is_400_in_every_body(http):
    patient = b'{"resourceType": "Patient", "gender": "male", "gender": "female"}'
    r = await http.post("/fhir/Patient", content=patient, headers=JSON)
    assert refused(r, 400)["diagnostics"] == "the body's JSON gives 'gender' twice in one object"
    sub = json.dumps(subscription()).replace('"reason": "test"', '"reason": "a", "reason": "b"')
    r = await http.post("/fhir/Subscription", content=sub.encode(), headers=JSON)
    assert refused(r, 400)["diagnostics"] == "the body's JSON gives 'reason' twice in one object"
    translate = b'{"resourceType": "Parameters", "parameter": [], "parameter": []}'
    r = await http.post("/fhir/ConceptMap/$translate", content=translate, headers=JSON)
    assert refused(r, 400)["diagnostics"] == "the body's JSON gives 'parameter' twice in one object"
    r = await http.post("/fhir/$export", content=translate, headers={**JSON, **ASYNC})
    assert refused(r, 400)["diagnostics"] == "the body's JSON gives 'parameter' twice in one object"


@pytest.mark.parametrize(
    "condition,said",
    [
        ("_cursor=abc", "not _cursor"),
        ("name=rao&_count=5", "not _count"),
        ("name=%ff", "not UTF-8"),
    ],
)
async def test_if_none_exist_holds_conditions_that_decode(http, condition, said):
    patient = {"resourceType": "Patient", "meta": {"source": NYRA}, "name": [{"text": "A B"}]}
    r = await http.post("/fhir/Patient", json=patient, headers={**JSON, "if-none-exist": condition})
    assert said in refused(r, 400, "If-None-Exist")["diagnostics"]


@pytest.mark.parametrize("header", [b'W/"ab\x01cd"', b'W/"a b"', b'"a","b"', b"*", b'W/""'])
async def test_if_match_that_names_no_version_is_400(http, header):
    page = (await http.get("/fhir/Patient", params={"_source": NYRA, "_count": "1"})).json()
    patient = page["entry"][0]["resource"]
    r = await http.put(
        f"/fhir/Patient/{patient['id']}",
        json=patient,
        headers={**JSON, "if-match": header.decode("latin-1")},
    )
    refused(r, 400, "If-Match")


@pytest.mark.parametrize(
    "family,said",
    [
        ("a" * 900_000, "at most 4096 characters"),
        ("Ra\x00o", "no control characters"),
        ("Ra\x1bo", "no control characters"),
    ],
)
async def test_strings_too_long_or_with_control_characters_are_422(http, boxes, family, said):
    nyra = boxes[NYRA]
    before = len(nyra.patients)
    patient = {"resourceType": "Patient", "meta": {"source": NYRA}, "name": [{"family": family}]}
    r = await http.post("/fhir/Patient", json=patient, headers=JSON)
    assert said in refused(r, 422, "Patient.name[0].family")["diagnostics"]
    assert len(nyra.patients) == before  # nothing reached the vendor


# -- client assertions ---------------------------------------------------------------------


@pytest.fixture
def signed_app(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    config = tmp_path / "adapter.toml"
    config.write_text(
        '[sources.leyr-a]\nconnector = "leyr"\ntimezone = "Europe/Stockholm"\nemr = "webdoc"\n'
        "sandbox = { patients = 4 }\n\n"
        f"[clients.signed]\njwks = '{json.dumps({'keys': [{**public, 'kid': 'k1'}]})}'\n"
        'scopes = ["system/*.rs"]\n'
    )
    app = create_app(load_settings(config, {}))
    app.state.test_key = key
    return app


def _assertion(app, **claims) -> str:
    now = int(time.time())
    body = {
        "iss": "signed",
        "sub": "signed",
        "aud": "http://fhir.test/auth/token",
        "exp": now + 120,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode(body, app.state.test_key, algorithm="RS384", headers={"kid": "k1"})


async def _token(app, assertion: str, **form) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fhir.test"
    ) as c:
        return await c.post(
            "/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
                **form,
            },
        )


@pytest.mark.parametrize("exp", ["1893456000", str(int(time.time()) + 60), [1], True])
async def test_an_assertion_whose_exp_is_no_number_is_refused(signed_app, exp):
    r = await _token(signed_app, _assertion(signed_app, exp=exp))
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")


async def test_client_id_must_be_the_assertions_issuer(signed_app):
    r = await _token(signed_app, _assertion(signed_app), client_id="someone-else")
    assert (r.status_code, r.json()) == (
        401,
        {"error": "invalid_client", "error_description": "client_id must be the assertion's iss"},
    )
    r = await _token(signed_app, _assertion(signed_app), client_id="signed")
    assert r.status_code == 200, r.text


# -- forwarded headers ---------------------------------------------------------------------


_SOURCE = """
[sources.leyr-a]
connector = "leyr"
timezone = "Europe/Stockholm"
emr = "webdoc"
sandbox = {}
"""


def test_forwarded_headers_are_believed_only_from_named_proxies(tmp_path):
    from adapter.cli import _forwarding

    config = tmp_path / "adapter.toml"
    config.write_text("[server]\nopen_access = true\n" + _SOURCE)
    assert _forwarding(load_settings(config, {})) == {
        "proxy_headers": False,
        "forwarded_allow_ips": "",
    }
    ips = 'forwarded_allow_ips = ["10.0.0.5", "10.1.0.0/16"]'
    config.write_text(f"[server]\nopen_access = true\n{ips}\n" + _SOURCE)
    assert _forwarding(load_settings(config, {})) == {
        "proxy_headers": True,
        "forwarded_allow_ips": ["10.0.0.5", "10.1.0.0/16"],
    }
    named = 'forwarded_allow_ips = ["proxy.internal"]'
    config.write_text(f"[server]\nopen_access = true\n{named}\n" + _SOURCE)
    with pytest.raises(SettingsError) as info:
        load_settings(config, {})
    assert info.value.problems == [
        '[server] forwarded_allow_ips[0]: not an IP address or network (e.g. "10.0.0.5", '
        '"10.0.0.0/24")'
    ]


# -- one OpenAPI document, and logs that repeat nothing a client wrote ------------------------


async def test_openapi_json_is_the_committed_document_and_docs_are_served_here(http):
    from pathlib import Path

    committed = Path(__file__).parents[3] / "openapi" / "openapi.json"
    served = await http.get("/openapi.json")
    assert served.status_code == 200
    # The embedded default's document; the test app's sources declare the same types.
    assert served.json()["paths"].keys() == json.loads(committed.read_text())["paths"].keys()
    page = await http.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "http" not in csp
    assert '<script src="/docs/swagger-ui-bundle.js"></script>' in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "start.js"):
        r = await http.get(f"/docs/{asset}")
        assert r.status_code == 200 and r.content
    refused(await http.get("/docs/..%2Fpyproject.toml"), 404)


async def test_an_unexpected_failure_logs_no_path_a_client_wrote(boxes, caplog):
    caplog.set_level(logging.INFO)
    app = open_app(boxes)

    async def broken(*args, **kwargs):
        raise RuntimeError("boom")

    app.state.facade.read = broken
    marker = "leyr-a.SECRET-MARKER-7"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://fhir.test",
        event_hooks={"response": [checked]},
    ) as c:
        r = await c.get(f"/fhir/Patient/{marker}?q=SECRET-MARKER-8")
    assert r.status_code == 500
    assert outcome(r)["issue"][0]["diagnostics"] == "internal error; the incident was logged"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "SECRET-MARKER" not in logged
    assert "unhandled RuntimeError" in logged and "GET /fhir/{type}/{id}" in logged
