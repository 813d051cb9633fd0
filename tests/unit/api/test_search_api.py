"""The facade's HTTP behaviour, in-process: parameters, paging links, formats, failures."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from harness import FAST

from adapter.app import create_app
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings

pytestmark = pytest.mark.anyio


def settings(**extra) -> Settings:
    sources = {
        "leyr-a": {"connector": "leyr", "timezone": "Europe/Stockholm", "emr": "webdoc"},
        "nyra-b": {"connector": "nyra", "timezone": "Asia/Kolkata", "retry": {"attempts": 1}},
    }
    return Settings(open_access=True, sources=sources, cursor_key=b"c" * 32, **extra)


@pytest.fixture
def sandboxes():
    return {
        "leyr-a": LeyrSandbox(seed=1, patients=30),
        "nyra-b": NyraSandbox(seed=1, patients=26, limits=FAST),
    }


def _app(sandboxes, key: bytes = b"c" * 32, **extra):
    sources = {
        name: {**config, **sandboxes[name].defaults(), "retry": {"attempts": 1}}
        for name, config in settings().sources.items()
    }
    s = Settings(open_access=True, sources=sources, cursor_key=key, **extra)
    return create_app(s, transports={n: sb.transport() for n, sb in sandboxes.items()})


@pytest.fixture
async def http(sandboxes):
    app = _app(sandboxes)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fhir.test"
    ) as c:
        yield c


def link(bundle: dict, relation: str) -> str | None:
    return next((x["url"] for x in bundle["link"] if x["relation"] == relation), None)


def outcome(response: httpx.Response) -> dict:
    body = response.json()
    OperationOutcome.model_validate(body)
    return body


async def test_pages_split_the_count_over_the_sources_and_link_both_ways(http):
    first = (await http.get("/fhir/Patient", params={"_count": "10"})).json()
    Bundle.model_validate(first)
    assert first["total"] == 56
    sources = [e["resource"]["meta"]["source"] for e in first["entry"]]
    assert sources.count("leyr-a") == 5 and sources.count("nyra-b") == 5
    assert link(first, "previous") is None
    second = (await http.get(link(first, "next"))).json()
    back = (await http.get(link(second, "previous"))).json()
    assert [e["resource"]["id"] for e in back["entry"]] == [
        e["resource"]["id"] for e in first["entry"]
    ]
    assert second["total"] == 56
    assert not {e["resource"]["id"] for e in second["entry"]} & {
        e["resource"]["id"] for e in first["entry"]
    }


async def test_a_count_below_the_number_of_sources_serves_them_in_turn(http):
    seen, url = [], "/fhir/Patient?_count=1"
    while url:
        bundle = (await http.get(url)).json()
        assert len(bundle.get("entry", [])) <= 1
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        url = link(bundle, "next")
    assert len(seen) == 56 == len(set(seen))


async def test_count_is_capped_and_the_self_link_says_so(http):
    bundle = (
        await http.get("/fhir/Patient", params={"_count": "5000", "_source": "leyr-a"})
    ).json()
    assert len(bundle["entry"]) == 30
    assert dict(parse_qsl(urlsplit(link(bundle, "self")).query))["_count"] == "100"


async def test_unknown_parameters_are_ignored_and_left_out_of_self(http):
    r = await http.get("/fhir/Patient", params={"foo": "bar", "gender": "female"})
    assert r.status_code == 200
    query = dict(parse_qsl(urlsplit(link(r.json(), "self")).query))
    assert query == {"gender": "female", "_count": "20"}


async def test_strict_handling_names_the_unknown_parameter(http):
    r = await http.get(
        "/fhir/Patient", params={"foo": "bar"}, headers={"prefer": "handling=strict"}
    )
    assert r.status_code == 400
    issue = outcome(r)["issue"][0]
    assert issue["code"] == "not-supported" and issue["expression"] == ["foo"]


@pytest.mark.parametrize(
    "params,expression",
    [
        ({"birthdate": "1990-13-45"}, "birthdate"),
        ({"_count": "-1"}, "_count"),
        ({"_count": "ten"}, "_count"),
        ({"_total": "lots"}, "_total"),
        ({"name:sounds-like": "x"}, "name:sounds-like"),
        ({"date": "ge2020,le2021-02-30"}, "date"),
    ],
)
async def test_bad_values_are_400_naming_the_parameter(http, params, expression):
    resource = "Appointment" if "date" in params else "Patient"
    r = await http.get(f"/fhir/{resource}", params=params)
    assert r.status_code == 400
    assert outcome(r)["issue"][0]["expression"] == [expression]


async def test_a_parameter_only_one_source_takes_leaves_the_other_out_with_an_outcome(http):
    bundle = (await http.get("/fhir/Patient", params={"active": "false"})).json()
    Bundle.model_validate(bundle)
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes[-1] == "outcome" and "match" in modes
    issue = bundle["entry"][-1]["resource"]["issue"][0]
    assert "leyr-a" in issue["diagnostics"] and issue["severity"] == "warning"
    assert "total" not in bundle
    assert all(
        e["resource"]["meta"]["source"] == "nyra-b" and e["resource"]["active"] is False
        for e in bundle["entry"][:-1]
    )


async def test_post_search_takes_a_form(http):
    r = await http.post("/fhir/Patient/_search", data={"_source": "nyra-b", "_count": "3"})
    assert r.status_code == 200 and len(r.json()["entry"]) == 3
    r = await http.post("/fhir/Patient/_search", json={"_count": "3"})
    assert r.status_code == 415 and outcome(r)["issue"][0]["code"] == "not-supported"


@pytest.mark.parametrize("path", ["/fhir/Patient", "/fhir/Group", "/fhir/Subscription"])
async def test_a_form_asks_what_its_query_would(http, path):
    """POST _search is the same search as GET, for every type that is searched: the same
    matches, and the form's _format and _pretty count as the query's would."""
    got = await http.get(path, params={"_count": "2"})
    posted = await http.post(f"{path}/_search", data={"_count": "2"})
    assert (got.status_code, posted.status_code) == (200, 200)
    assert [e["resource"]["id"] for e in posted.json().get("entry", [])] == [
        e["resource"]["id"] for e in got.json().get("entry", [])
    ]
    refused = await http.post(f"{path}/_search", data={"_format": "xml"})
    assert refused.status_code == 406
    assert outcome(refused)["issue"][0]["diagnostics"] == "_format XML is not served; use json"
    empty = await http.post(f"{path}/_search", data={"_format": ""})
    assert empty.status_code == 406
    pretty = await http.post(f"{path}/_search", data={"_pretty": "true", "_count": "1"})
    assert pretty.status_code == 200 and pretty.text.startswith('{\n  "resourceType"')
    form = {"content-type": "application/x-www-form-urlencoded"}
    last = await http.post(f"{path}/_search", content=b"_format=xml&_format=json", headers=form)
    assert last.status_code == 200  # the last of a repeated _format, as in a query


@pytest.mark.parametrize(
    "headers,params,status,media",
    [
        ({}, {}, 200, "application/fhir+json"),
        ({"accept": "application/json"}, {}, 200, "application/json"),
        ({"accept": "application/fhir+json;fhirVersion=4.0"}, {}, 200, "application/fhir+json"),
        ({"accept": "*/*"}, {}, 200, "application/fhir+json"),
        ({}, {"_format": "json"}, 200, "application/fhir+json"),
        ({"accept": "application/fhir+xml"}, {}, 406, "application/fhir+json"),
        ({}, {"_format": "application/fhir+xml"}, 406, "application/fhir+json"),
    ],
)
async def test_formats(http, headers, params, status, media):
    r = await http.get("/fhir/metadata", headers=headers, params=params)
    assert r.status_code == status
    assert r.headers["content-type"] == f"{media}; charset=utf-8"
    if status != 200:
        outcome(r)


async def test_tampered_and_foreign_cursors_are_400(http):
    first = (await http.get("/fhir/Patient", params={"_count": "4"})).json()
    token = dict(parse_qsl(urlsplit(link(first, "next")).query))["_cursor"]
    body, tag = token.split(".")
    flipped = body[:-3] + ("A" if body[-3] != "A" else "B") + body[-2:]
    for bad in (f"{flipped}.{tag}", f"{body}.{tag[::-1]}", "x", token + "x"):
        r = await http.get("/fhir/Patient", params={"_cursor": bad})
        assert r.status_code == 400 and outcome(r)["issue"][0]["expression"] == ["_cursor"]
    r = await http.get("/fhir/Appointment", params={"_cursor": token})
    assert r.status_code == 400


async def test_a_cursor_from_another_deployment_is_refused(sandboxes, http):
    first = (await http.get("/fhir/Patient", params={"_count": "4"})).json()
    token = dict(parse_qsl(urlsplit(link(first, "next")).query))["_cursor"]
    other = _app(sandboxes, key=b"z" * 32)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=other), base_url="http://x"
    ) as c:
        r = await c.get("/fhir/Patient", params={"_cursor": token})
    assert r.status_code == 400


async def test_summary_count_and_total_modes(http):
    count = (await http.get("/fhir/Patient", params={"_summary": "count"})).json()
    Bundle.model_validate(count)
    assert count["total"] == 56 and "entry" not in count
    # a search whose total no source knows exactly, over pages: counted on request
    inexact = {"name": "a", "_source": "nyra-b", "_count": "2"}
    plain = (await http.get("/fhir/Patient", params=inexact)).json()
    assert "total" not in plain
    # ... and on one page that holds every match: counted there
    whole = (await http.get("/fhir/Patient", params={**inexact, "_count": "100"})).json()
    matches = [e for e in whole["entry"] if e["search"]["mode"] == "match"]
    assert whole["total"] == len(matches) > 2
    accurate = (await http.get("/fhir/Patient", params={**inexact, "_total": "accurate"})).json()
    everyone = []
    url = "/fhir/Patient?" + "&".join(f"{k}={v}" for k, v in inexact.items())
    while url:
        page = (await http.get(url)).json()
        everyone += page.get("entry", [])
        url = link(page, "next")
    assert accurate["total"] == len(everyone) > 0
    none = (await http.get("/fhir/Patient", params={"_total": "none"})).json()
    assert "total" not in none


async def test_reads_route_by_id_and_unknown_ids_are_404(http):
    bundle = (await http.get("/fhir/Appointment", params={"_count": "4"})).json()
    for entry in bundle["entry"]:
        resource = entry["resource"]
        r = await http.get(f"/fhir/Appointment/{resource['id']}")
        read = r.json()
        # The same meta as a search gives: its version, and its time from the journal
        assert read["meta"]["lastUpdated"] and read == resource
        assert r.headers["etag"] == f'W/"{resource["meta"]["versionId"]}"'
        wrong_type = await http.get(f"/fhir/Patient/{resource['id']}")
        assert wrong_type.status_code == 404
    for fhir_id in ("nobody-here.x1", "leyr-a.L0_1.none", "!!"):
        r = await http.get(f"/fhir/Patient/{fhir_id}")
        assert r.status_code == 404 and outcome(r)["issue"][0]["code"] == "not-found"


async def test_unknown_paths_and_methods_are_operation_outcomes(http):
    assert outcome(await http.get("/nowhere"))["issue"][0]["code"] == "not-found"
    r = await http.delete("/fhir/metadata")
    assert r.status_code == 405 and outcome(r)


async def test_one_source_failing_is_an_outcome_entry_naming_it(sandboxes, http):
    sandboxes["nyra-b"].faults.error_rate = 1.0
    r = await http.get("/fhir/Patient", params={"_count": "10"})
    assert r.status_code == 200
    bundle = r.json()
    Bundle.model_validate(bundle)
    assert "total" not in bundle
    matches = [e for e in bundle["entry"] if e["search"]["mode"] == "match"]
    assert len(matches) == 5 and {e["resource"]["meta"]["source"] for e in matches} == {"leyr-a"}
    issue = bundle["entry"][-1]["resource"]["issue"][0]
    assert bundle["entry"][-1]["search"]["mode"] == "outcome"
    assert "nyra-b" in issue["diagnostics"] and issue["code"] == "transient"
    # its share is asked for again on the next page, once it is back
    sandboxes["nyra-b"].faults.reset()
    second = (await http.get(link(bundle, "next"))).json()
    assert "nyra-b" in {e["resource"]["meta"]["source"] for e in second["entry"]}


async def test_every_source_failing_is_an_error_with_its_status(sandboxes, http):
    for sandbox in sandboxes.values():
        sandbox.faults.error_rate = 1.0
    r = await http.get("/fhir/Patient")
    assert r.status_code == 503
    issues = outcome(r)["issue"]
    assert {i["code"] for i in issues} == {"transient"}
    assert any("leyr-a" in i["diagnostics"] for i in issues)
    assert any("nyra-b" in i["diagnostics"] for i in issues)


async def test_a_read_from_a_failing_source_is_502_to_504(sandboxes, http):
    bundle = (await http.get("/fhir/Patient", params={"_source": "leyr-a", "_count": "1"})).json()
    fhir_id = bundle["entry"][0]["resource"]["id"]
    sandboxes["leyr-a"].faults.malformed_rate = 1.0
    r = await http.get(f"/fhir/Patient/{fhir_id}")
    assert r.status_code == 502 and "leyr-a" in outcome(r)["issue"][0]["diagnostics"]
    sandboxes["leyr-a"].faults.reset()
    sandboxes["leyr-a"].faults.error_rate = 1.0
    r = await http.get(f"/fhir/Patient/{fhir_id}")
    assert r.status_code == 503


async def test_public_base_url_makes_absolute_links(sandboxes):
    app = _app(sandboxes, public_base_url="https://fhir.example.org/fhir")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        bundle = (await c.get("/fhir/Patient", params={"_count": "2"})).json()
    assert link(bundle, "next").startswith("https://fhir.example.org/fhir/Patient?_cursor=")
    assert bundle["entry"][0]["fullUrl"].startswith("https://fhir.example.org/fhir/Patient/")


async def test_a_vendor_asking_to_wait_gives_503_with_retry_after():
    def busy(request: httpx.Request) -> httpx.Response:
        body = {"success": False, "error": "Too Many Requests", "message": "Rate limit exceeded"}
        return httpx.Response(429, json=body, headers={"retry-after": "120"})

    source = {
        "connector": "nyra",
        "base_url": "http://nyra.test",
        "timezone": "Asia/Kolkata",
        "keys": [{"key": "nyra_k", "secret": "s", "token": "t"}],
    }
    app = create_app(
        Settings(open_access=True, sources={"nyra-busy": source}, cursor_key=b"c" * 32),
        transports={"nyra-busy": httpx.MockTransport(busy)},
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        search = await c.get("/fhir/Patient")
        read = await c.get("/fhir/Patient/nyra-busy.p1")
    for r in (search, read):
        assert r.status_code == 503
        assert r.headers["retry-after"] == "120"
        issue = outcome(r)["issue"][0]
        assert issue["code"] == "throttled" and "nyra-busy" in issue["diagnostics"]


async def test_an_unexpected_failure_is_a_500_outcome_that_quotes_nothing(sandboxes, caplog):
    app = _app(sandboxes)

    async def broken(*args, **kwargs):
        raise KeyError("Ravi Kumar +919876543210")

    app.state.facade.read = broken
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        r = await c.get("/fhir/Patient/nyra-b.p1")
    assert r.status_code == 500
    assert outcome(r)["issue"][0]["code"] == "exception"
    for text in [r.text, *(rec.getMessage() for rec in caplog.records)]:
        assert "Ravi" not in text and "9876543210" not in text
    assert any("unhandled KeyError" in rec.getMessage() for rec in caplog.records)
