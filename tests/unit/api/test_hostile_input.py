"""Input a client controls, at and past every edge, over HTTP: each answer is a 2xx or a
4xx OperationOutcome naming what is wrong, never a 500, and a refusal is made where the
input is read: no vendor is called, and a body past a limit is not read on.

- Dates at the ends of FHIR's calendar (years 0001 and 9999, any offset) are searches
  like any other; what is not a FHIR date is a 400 naming the parameter.
- ``_count`` takes a few ASCII digits only.
- A search's values are bounded (each, in number, in characters, text as matching folds
  it), so that the in-memory matching a connector does per candidate record stays
  small; ``POST _search`` reads its form only up to the URL's limit.
- A write nested deeper than ``MAX_DEPTH`` is a 400 before the model sees it.
- ``/auth/token`` reads a few KiB at most, and throttles failed logins per client and per
  remote address (429 with ``Retry-After``), logging each without the credential.
- Queries and forms that are not UTF-8 percent-encoding, odd ``_format`` values, large
  ``Prefer`` headers and parameters without a name.

The apps run in-process over the sandboxes (:mod:`hostile`); every answer is checked on
the way: not 2xx under ``/fhir`` or at the token endpoint's refusals of the HTTP layer
means an R4 OperationOutcome. How long these answers take, and how long the largest
search allowed holds the event loop, is measured by ``bench/bench_hostile.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from harness import FAST
from hostile import (
    JSON,
    LARGE_PREFER,
    LARGEST_SEARCH,
    LEYR,
    MEGABYTE_OF_NESTING,
    NYRA,
    client,
    open_app,
    outcome,
    refused,
)

from adapter.api.auth import MAX_FORM as MAX_TOKEN_FORM
from adapter.api.auth import LoginThrottle
from adapter.api.fhir import MAX_FORM
from adapter.api.guard import MAX_BODY
from adapter.api.writes import MAX_DEPTH
from adapter.app import create_app
from adapter.fhir.params import (
    MAX_NAME,
    MAX_PARAMETERS,
    MAX_TEXT_CHARACTERS,
    MAX_VALUE,
    MAX_VALUES,
)
from adapter.sandbox import NyraSandbox
from adapter.settings import load_settings

pytestmark = pytest.mark.anyio

FORM = {"content-type": "application/x-www-form-urlencoded"}


# -- dates at the ends of the calendar -------------------------------------------------------


@pytest.mark.parametrize(
    "path,params",
    [
        ("/fhir/Patient", {"birthdate": "9999-12-31"}),
        ("/fhir/Patient", {"birthdate": "0001-01-01"}),
        ("/fhir/Patient", {"birthdate": "9999"}),
        ("/fhir/Patient", {"birthdate": "9999-12"}),
        ("/fhir/Patient", {"birthdate": "ge9999-12-31"}),
        ("/fhir/Patient", {"birthdate": "le0001-01-01"}),
        ("/fhir/Appointment", {"date": "ge9999-12-31T23:59:59+14:00"}),
        ("/fhir/Appointment", {"date": "lt0001-01-01T00:00:00-12:00"}),
        ("/fhir/Appointment", {"date": "0001-01-01T00:00:00+14:00"}),
        ("/fhir/Appointment", {"date": "gt9999-12-31T23:59:59.999999-12:00"}),
        ("/fhir/Appointment", {"date": "sa9999"}),
        ("/fhir/Appointment", {"date": "eb0001"}),
    ],
)
async def test_dates_at_the_ends_of_the_calendar_are_searches(http, path, params):
    r = await http.get(path, params=params)
    assert r.status_code == 200, r.text[:300]
    bundle = r.json()
    Bundle.model_validate(bundle)
    assert [e for e in bundle.get("entry", []) if e["search"]["mode"] == "match"] == []


async def test_a_birth_date_at_either_end_of_the_calendar_is_found(boxes):
    first, last = list(boxes[NYRA].patients)[:2]
    first["date_of_birth"], last["date_of_birth"] = "0001-01-01", "9999-12-31"
    async with client(open_app(boxes)) as http:
        for asked, born in [
            ("9999-12-31", "9999-12-31"),
            ("9999", "9999-12-31"),
            ("ge9999-12", "9999-12-31"),
            ("0001-01-01", "0001-01-01"),
            ("lt0001-01-02", "0001-01-01"),
        ]:
            r = await http.get("/fhir/Patient", params={"birthdate": asked, "_source": NYRA})
            assert r.status_code == 200, r.text[:300]
            found = [e["resource"]["birthDate"] for e in r.json().get("entry", [])]
            assert found == [born], asked


@pytest.mark.parametrize(
    "path,name,value",
    [
        ("/fhir/Patient", "birthdate", "10000-01-01"),
        ("/fhir/Patient", "birthdate", "0000"),
        ("/fhir/Patient", "birthdate", "٢٠٢٤"),  # digits, but not FHIR's
        ("/fhir/Patient", "birthdate", "2024-02-30"),
        ("/fhir/Appointment", "date", "ge2024-01-01T00:00:00+14:30"),
        ("/fhir/Appointment", "date", "2024-01-01T00:00:00-12:60"),
        ("/fhir/Appointment", "date", "2024-01-01T24:00:00Z"),
    ],
)
async def test_what_is_not_a_fhir_date_is_400_naming_the_parameter(http, path, name, value):
    issue = refused(await http.get(path, params={name: value}), 400, name)
    assert "FHIR date" in issue["diagnostics"]


# -- _count ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["²", "①", "٣", "-1", "1e3", " 5", "1000000", "9" * 4300])
async def test_count_takes_a_few_ascii_digits_only(http, vendor_requests, value):
    r = await http.get("/fhir/Patient", params={"_count": value})
    refused(r, 400, "_count")
    assert vendor_requests == []


async def test_six_digits_of_count_are_taken_and_capped(http):
    r = await http.get("/fhir/Patient", params={"_count": "000100", "_source": LEYR})
    assert r.status_code == 200 and len(r.json()["entry"]) == 20


# -- what a search may hold ------------------------------------------------------------------


@pytest.mark.parametrize(
    "params,expression,code",
    [
        ({"name": "a" * (MAX_VALUE + 1)}, "name", "too-long"),
        ({"identifier": "x|" + "1" * MAX_VALUE}, "identifier", "too-long"),
        ({"_source": "s" * (MAX_VALUE + 1)}, "_source", "too-long"),
        ({"_id": ",".join(f"x{i}" for i in range(MAX_VALUES + 1))}, "_id", "too-costly"),
        (
            {"identifier": ",".join(["y" * 900] * 3)},  # each value within, together over
            "identifier",
            "too-costly",
        ),
        # one character that folds into 18: matching would work on all of them
        ({"name:contains": "\ufdfa" * 30}, "name:contains", "too-costly"),
        ({"family": "a" * (MAX_TEXT_CHARACTERS + 1)}, "family", "too-costly"),
    ],
)
async def test_values_over_a_bound_are_400_naming_the_parameter(
    http, vendor_requests, params, expression, code
):
    r = await http.get("/fhir/Patient", params=params)
    issue = refused(r, 400, expression)
    assert issue["code"] == code
    assert vendor_requests == []


async def test_too_many_parameters_is_400_naming_the_first_past_the_bound(http):
    items = [("gender", "female")] * MAX_PARAMETERS + [("extra", "1")]
    issue = refused(await http.get("/fhir/Patient", params=items), 400, "extra")
    assert str(MAX_PARAMETERS) in issue["diagnostics"]


async def test_a_parameter_name_over_the_bound_is_400_quoted_shortened(http):
    r = await http.get("/fhir/Patient", params={"q" * (MAX_NAME + 1): "1"})
    issue = refused(r, 400)
    assert "expression" not in issue and len(issue["diagnostics"]) < 200


async def test_the_largest_search_allowed_is_matched_without_holding_the_loop(
    http, vendor_requests
):
    """Every bound at once, text that folds long: the sandboxes' records are matched in
    memory, each against all of it. (How long it holds the event loop is measured by
    ``bench/bench_hostile.py``.)"""
    r = await http.get("/fhir/Patient", params=LARGEST_SEARCH)
    assert r.status_code == 200, r.text[:300]
    Bundle.model_validate(r.json())
    assert vendor_requests  # not refused: it reached the sources


# -- POST _search: the form's size and encoding ----------------------------------------------


async def test_a_5_mb_form_is_413_at_once(http, vendor_requests):
    body = b"name=" + b"a" * (5 << 20)
    r = await http.post("/fhir/Patient/_search", content=body, headers=FORM)
    # Refused on its Content-Length, by the guard, before any route reads it.
    issue = refused(r, 413)
    assert issue["diagnostics"] == f"the body is over {MAX_BODY} bytes"
    assert r.headers["connection"] == "close" and vendor_requests == []


async def test_a_form_over_the_url_limit_is_413_naming_it(http):
    body = b"name=" + b"a" * MAX_FORM
    issue = refused(await http.post("/fhir/Patient/_search", content=body, headers=FORM), 413)
    assert str(MAX_FORM) in issue["diagnostics"] and "form" in issue["diagnostics"]


async def test_a_streamed_form_is_read_only_up_to_the_limit(http, vendor_requests):
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):  # 5 MiB in all, without a Content-Length
            sent.append(1)
            yield b"a" * (64 << 10)

    r = await http.post("/fhir/Patient/_search", content=chunks(), headers=FORM)
    issue = refused(r, 413)
    assert str(MAX_FORM) in issue["diagnostics"]
    assert len(sent) < 80 and vendor_requests == []


@pytest.mark.parametrize(
    "body", [b"name=%FF", b"name=a%zz", b"name=%E2%82", "name=é".encode("latin-1"), b"a=%"]
)
async def test_a_form_that_is_not_utf8_percent_encoding_is_400(http, body):
    r = await http.post("/fhir/Patient/_search", content=body, headers=FORM)
    assert "percent-encoding" in refused(r, 400)["diagnostics"]


async def test_a_form_within_the_limit_is_a_search(http):
    r = await http.post("/fhir/Patient/_search", content=b"gender=female&_count=3", headers=FORM)
    assert r.status_code == 200 and len(r.json()["entry"]) == 3


# -- writes nested too deep ------------------------------------------------------------------


def _extension(levels: int) -> dict:
    inner: dict = {"url": "http://example.org/x", "valueString": "x"}
    for _ in range(levels):
        inner = {"url": "http://example.org/x", "extension": [inner]}
    return {"resourceType": "Patient", "meta": {"source": NYRA}, "extension": [inner]}


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(_extension(120)).encode(),
        b"[" * 2000 + b"]" * 2000,  # past the parser's own limit too
        b'{"resourceType": "Patient", "x": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}",
    ],
    ids=["extension-120", "arrays-2000", "one-past"],
)
async def test_a_body_nested_too_deep_is_400_naming_the_limit(http, boxes, vendor_requests, body):
    held = len(boxes[NYRA].patients)
    r = await http.post("/fhir/Patient", content=body, headers=JSON)
    issue = refused(r, 400)
    assert issue["code"] == "structure" and str(MAX_DEPTH) in issue["diagnostics"]
    assert vendor_requests == [] and len(boxes[NYRA].patients) == held


async def test_nesting_up_to_the_limit_goes_on_to_validation(http):
    depth = MAX_DEPTH - 1  # and the resource's own object
    body = b'{"resourceType": "Patient", "x": ' + b"[" * depth + b"]" * depth + b"}"
    r = await http.post("/fhir/Patient", content=body, headers=JSON)
    assert refused(r, 422)["expression"] == ["Patient.x"]


async def test_brackets_inside_strings_are_not_nesting(http):
    patient = _extension(0)
    patient["extension"][0]["valueString"] = '\\"' + "[{" * 500
    patient["name"] = [{"family": "Rao", "given": ["Priya"]}]
    patient["telecom"] = [{"system": "phone", "value": "+919800000042"}]
    r = await http.post("/fhir/Patient", json=patient, headers=JSON)
    # Read whole and made: the string was a string (Nyra cannot hold an extension).
    assert r.status_code == 201, r.text[:300]
    assert r.headers["warning"] == (
        '299 fhir-adapter "Patient.extension[0].valueString: not kept: '
        'source nyra-b cannot hold it"'
    )


async def test_a_megabyte_of_nesting_is_refused_quickly(http, vendor_requests):
    """Refused as too deep, before any vendor is called. (How quickly is measured by
    ``bench/bench_hostile.py``.)"""
    assert len(MEGABYTE_OF_NESTING) < 1 << 20
    r = await http.post("/fhir/Patient", content=MEGABYTE_OF_NESTING, headers=JSON)
    issue = refused(r, 400)
    assert issue["code"] == "structure" and str(MAX_DEPTH) in issue["diagnostics"]
    assert vendor_requests == []


# -- the token endpoint ----------------------------------------------------------------------

SECRET = "acme-secret-0123456789abcdef"
TOKEN_CONFIG = """
[sources.nyra-b]
connector = "nyra"
base_url = "http://nyra.test"
timezone = "Asia/Kolkata"
keys = [{ key = "${NYRA_KEY}", secret = "${NYRA_SECRET}", token = "${NYRA_TOKEN}" }]

[clients.acme]
secret = "${ACME_SECRET}"
scopes = ["system/*.rs"]
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def token_app(tmp_path):
    nyra = NyraSandbox(seed=3, patients=4, limits=FAST)
    grant = nyra.api_keys()[0]
    env = {
        "ACME_SECRET": SECRET,
        "NYRA_KEY": grant.key,
        "NYRA_SECRET": grant.secret,
        "NYRA_TOKEN": grant.token,
    }
    path = tmp_path / "adapter.toml"
    path.write_text(TOKEN_CONFIG)
    app = create_app(load_settings(path, env), transports={NYRA: nyra.transport()})
    clock = Clock()
    app.state.login_throttle = LoginThrottle(limit=10, window=60.0, clock=clock)
    app.state.test_clock = clock
    return app


def _login(secret: str = SECRET, client_id: str = "acme") -> dict:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}


async def test_a_token_request_over_a_few_kib_is_413(token_app):
    async with client(token_app) as http:
        big = {**_login(), "scope": "x" * MAX_TOKEN_FORM}
        r = await http.post("/auth/token", data=big)
        assert r.status_code == 413
        assert str(MAX_TOKEN_FORM) in outcome(r)["issue"][0]["diagnostics"]

        sent: list[int] = []

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(80):
                sent.append(1)
                yield b"a" * (64 << 10)

        r = await http.post("/auth/token", content=chunks(), headers=FORM)
        assert r.status_code == 413 and len(sent) < 80
        outcome(r)


async def test_failed_logins_are_throttled_per_client_at_an_address_and_logged_without_the_secret(
    token_app, caplog
):
    """Ten failures in a client's name from one address hold that client back there, and
    only there: its own valid login from elsewhere is served."""
    caplog.set_level(logging.WARNING, logger="fhir_adapter")
    clock = token_app.state.test_clock
    wrong = "wrong-secret-000000000000"
    async with client(token_app, "10.0.0.1") as http:
        for _ in range(10):
            r = await http.post("/auth/token", data=_login(wrong))
            assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
        r = await http.post("/auth/token", data=_login())  # the right secret, but here
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert outcome(r)["issue"][0]["code"] == "throttled"
    async with client(token_app, "10.0.1.1") as http:  # the client itself, elsewhere
        assert (await http.post("/auth/token", data=_login())).status_code == 200
    clock.now += 61
    async with client(token_app, "10.0.0.1") as http:
        assert (await http.post("/auth/token", data=_login())).status_code == 200

    lines = [r for r in caplog.records if r.getMessage() == "token request refused"]
    assert len(lines) == 10
    fields = lines[0].fields
    assert fields["client"] == "acme" and fields["kind"] == "wrong secret"
    assert fields["address"] == "10.0.0.1"
    for record in caplog.records:
        assert wrong not in record.getMessage() and wrong not in json.dumps(
            getattr(record, "fields", {})
        )


async def test_failures_in_a_clients_name_from_many_addresses_do_not_lock_it_out(token_app):
    wrong = "wrong-secret-000000000000"
    for i in range(30):  # each from its own address, all naming the client
        async with client(token_app, f"10.0.2.{i}") as http:
            assert (await http.post("/auth/token", data=_login(wrong))).status_code == 401
    async with client(token_app, "10.0.3.1") as http:
        assert (await http.post("/auth/token", data=_login())).status_code == 200


async def test_failed_logins_are_throttled_per_address(token_app, caplog):
    caplog.set_level(logging.WARNING, logger="fhir_adapter")
    async with client(token_app, "192.0.2.7") as http:
        for i in range(30):
            r = await http.post("/auth/token", data=_login(client_id=f"guess-{i}"))
            assert r.status_code == 401
        r = await http.post("/auth/token", data=_login())
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    async with client(token_app, "192.0.2.8") as http:  # another address is served
        assert (await http.post("/auth/token", data=_login())).status_code == 200
    unknown = [r.fields for r in caplog.records if r.getMessage() == "token request refused"]
    assert {f["client"] for f in unknown} == {"unknown"}  # never the name as sent
    assert {f["kind"] for f in unknown} == {"unknown client"}


async def test_successful_logins_are_not_counted(token_app):
    async with client(token_app) as http:
        for _ in range(15):
            assert (await http.post("/auth/token", data=_login())).status_code == 200


async def test_a_token_form_that_is_not_utf8_or_repeats_a_parameter_is_400(token_app):
    async with client(token_app) as http:
        r = await http.post("/auth/token", content=b"grant_type=%FF", headers=FORM)
        assert r.status_code == 400 and r.json()["error"] == "invalid_request"
        twice = b"grant_type=client_credentials&client_id=acme&client_id=other"
        r = await http.post("/auth/token", content=twice, headers=FORM)
        assert r.status_code == 400 and r.json()["error"] == "invalid_request"


# -- anything else a client may send ---------------------------------------------------------


async def raw_get(app, path: str, query: bytes) -> tuple[int, dict]:
    """A GET with the query's bytes as sent (an HTTP client would encode them): what a
    server behind a lenient proxy may receive."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"fhir.test")],
        "client": ("127.0.0.1", 40000),
        "server": ("fhir.test", 80),
    }
    sent: list[dict] = []

    async def receive() -> dict:
        await asyncio.sleep(3600)  # no body; nor a disconnect while answering
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


@pytest.mark.parametrize(
    "query",
    [
        b"name=%FF",
        b"name=%C3",
        b"name=a%zz",
        b"name=%",
        "name=é".encode("latin-1"),  # a raw byte that is no UTF-8
    ],
)
async def test_a_query_that_is_not_utf8_percent_encoding_is_400(boxes, query):
    status, body = await raw_get(open_app(boxes), "/fhir/Patient", query)
    assert status == 400
    OperationOutcome.model_validate(body)
    assert "percent-encoding" in body["issue"][0]["diagnostics"]


async def test_a_read_with_a_query_that_is_not_utf8_is_answered(boxes):
    query = "_format=json&x=é".encode("latin-1")
    status, body = await raw_get(open_app(boxes), "/fhir/Patient/nyra-b.nobody", query)
    assert status == 404
    OperationOutcome.model_validate(body)


async def test_raw_utf8_in_a_query_is_read_as_utf8(boxes):
    status, body = await raw_get(open_app(boxes), "/fhir/Patient", "name=é".encode())
    assert status == 200 and body["resourceType"] == "Bundle"


@pytest.mark.parametrize("value", ["", "x" * 300, "\x00", "q" * 100 + ";json", "xml"])
async def test_odd_formats_are_406_and_long_ones_are_not_quoted(http, value):
    r = await http.get("/fhir/Patient", params={"_format": value})
    issue = refused(r, 406, "_format")
    assert len(issue["diagnostics"]) < 100


async def test_a_large_prefer_header_is_read_quickly(http):
    """Read to its end, and taken. (How quickly is measured by
    ``bench/bench_hostile.py``.)"""
    prefer = {"prefer": LARGE_PREFER}
    r = await http.get("/fhir/Patient", params={"gender": "male"}, headers=prefer)
    assert r.status_code == 200
    # The handling=strict at its very end is taken: an unknown parameter is refused.
    r = await http.get("/fhir/Patient", params={"gender": "male", "eye": "blue"}, headers=prefer)
    refused(r, 400)


@pytest.mark.parametrize("query", [b"=x", b"=", b"&&=&"])
async def test_a_parameter_without_a_name_is_named_so_in_strict_mode(http, query):
    url = httpx.URL("/fhir/Patient", query=query)
    r = await http.get(url, headers={"prefer": "handling=strict"})
    issue = refused(r, 400)
    assert "(no name)" in issue["diagnostics"]
    assert (await http.get(url)).status_code == 200  # ignored otherwise
