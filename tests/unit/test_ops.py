"""What an operator sees, in-process: the probes, the metrics and the console log, and the
audit trail kept to its own sink."""

from __future__ import annotations

import io
import json
import logging
from types import SimpleNamespace

import httpx
import pytest
from harness import FAST
from prometheus_client.parser import text_string_to_metric_families

from adapter.api.guard import route_of
from adapter.app import create_app
from adapter.ops import caches, logs, metrics
from adapter.ops.observer import observer
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings

pytestmark = pytest.mark.anyio

SOURCES = {
    "leyr-a": {"connector": "leyr", "timezone": "Europe/Stockholm", "emr": "webdoc"},
    "nyra-b": {"connector": "nyra", "timezone": "Asia/Kolkata"},
}


def _app():
    sandboxes = {
        "leyr-a": LeyrSandbox(seed=1, patients=30),
        "nyra-b": NyraSandbox(seed=1, patients=26, limits=FAST),
    }
    sources = {
        name: {**config, **sandboxes[name].defaults(), "retry": {"attempts": 1}}
        for name, config in SOURCES.items()
    }
    settings = Settings(open_access=True, sources=sources, cursor_key=b"c" * 32)
    return create_app(settings, transports={n: sb.transport() for n, sb in sandboxes.items()})


@pytest.fixture
def app():
    return _app()


@pytest.fixture
async def http(app):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fhir.test"
    ) as c:
        yield c


@pytest.fixture
def restore_loggers():
    """:func:`logs.configure` sets process-wide loggers: put them back for other tests."""
    saved = {
        name: (list(lg.handlers), lg.level, lg.propagate)
        for name in (logs.LOGGER, logs.AUDIT_LOGGER)
        for lg in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(text: str, family: str, name: str, **labels: str) -> float | None:
    found = families(text).get(family)
    for s in found.samples if found else ():
        if s.name == name and s.labels == labels:
            return s.value
    return None


# -- probes -----------------------------------------------------------------------------


async def test_healthz_is_ok_without_a_token_and_asks_no_vendor(app, http):
    def no_vendor(*args, **kwargs):
        raise AssertionError("a vendor was asked")

    for connector in app.state.facade.connectors.values():
        connector.health = no_vendor
    r = await http.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_readyz_is_200_while_every_source_is_up(http):
    r = await http.get("/readyz")
    assert r.status_code == 200
    idle = {
        "interactive": {"share": 0.5, "waiting": 0, "state": "idle"},
        "writes": {"share": 0.25, "waiting": 0, "state": "idle"},
        "bulk": {"share": 0.15, "waiting": 0, "state": "idle"},
        "background": {"share": 0.1, "waiting": 0, "state": "idle"},
    }
    # Each source with a vendor budget (Nyra; Leyr has none) shows its lanes.
    assert r.json() == {
        "status": "ready",
        "sources": {"leyr-a": "up", "nyra-b": "up"},
        "lanes": {"nyra-b": idle},
    }


@pytest.mark.parametrize("other", ["up", "degraded"])
async def test_readyz_shows_an_open_circuit_and_stays_ready_while_another_serves(app, http, other):
    app.state.facade.connectors["leyr-a"].health = lambda: "circuit open"
    app.state.facade.connectors["nyra-b"].health = lambda: other
    r = await http.get("/readyz")
    assert r.status_code == 200
    assert r.json()["sources"] == {"leyr-a": "circuit open", "nyra-b": other}


async def test_readyz_is_503_with_retry_after_when_no_source_can_serve(app, http):
    app.state.facade.connectors["leyr-a"].health = lambda: "credentials refused"
    app.state.facade.connectors["nyra-b"].health = lambda: "budget exhausted"
    r = await http.get("/readyz")
    assert r.status_code == 503
    assert int(r.headers["retry-after"]) > 0
    body = r.json()
    assert (body["status"], body["sources"]) == (
        "unavailable",
        {"leyr-a": "credentials refused", "nyra-b": "budget exhausted"},
    )


async def test_probes_stay_out_of_the_openapi_document(app):
    assert not {"/healthz", "/readyz", "/metrics"} & set(app.openapi()["paths"])


# -- metrics ----------------------------------------------------------------------------


async def test_metrics_parse_and_time_a_search_by_interaction_type_and_status(http):
    labels = {"interaction": "search", "type": "Patient", "status": "200"}
    before = (await http.get("/metrics")).text
    assert (await http.get("/fhir/Patient", params={"_count": "2"})).status_code == 200
    r = await http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    found = families(r.text)["fhir_requests_seconds"]
    assert found.type == "histogram"
    count = "fhir_requests_seconds_count"
    was = sample(before, "fhir_requests_seconds", count, **labels) or 0
    assert sample(r.text, "fhir_requests_seconds", count, **labels) == was + 1
    buckets = [
        s
        for s in found.samples
        if s.name.endswith("_bucket") and s.labels.items() >= labels.items()
    ]
    assert buckets and buckets[-1].labels["le"] == "+Inf"


async def test_a_type_not_served_is_other_in_the_labels(http):
    assert (await http.get("/fhir/Zebulon/x1")).status_code == 404
    text = (await http.get("/metrics")).text
    assert "Zebulon" not in text
    labels = {"interaction": "read", "type": "other", "status": "404"}
    assert sample(text, "fhir_requests_seconds", "fhir_requests_seconds_count", **labels)


async def test_the_apps_vendor_calls_are_timed_by_source_and_status(http):
    count = "vendor_calls_seconds_count"

    def calls(text: str) -> float:
        return sample(text, "vendor_calls_seconds", count, source="nyra-b", status="200") or 0

    before = calls((await http.get("/metrics")).text)
    r = await http.get("/fhir/Patient", params={"_count": "2", "_source": "nyra-b"})
    assert r.status_code == 200
    assert calls((await http.get("/metrics")).text) > before


async def test_what_the_transport_reports_is_in_the_metrics(http):
    metrics.observe_vendor_call("ops-test", 429, 0.02)
    metrics.observe_vendor_call("ops-test", "timeout", 5.0)
    metrics.count_rate_limited("ops-test")
    metrics.set_key_budget("ops-test", "key-1", 17)
    metrics.set_circuit("ops-test", True)
    metrics.count_cache_hit("ops-test")
    observer.cache_hit("ops-test")
    text = (await http.get("/metrics")).text
    calls = "vendor_calls_seconds_count"
    assert sample(text, "vendor_calls_seconds", calls, source="ops-test", status="429") == 1
    assert sample(text, "vendor_calls_seconds", calls, source="ops-test", status="timeout") == 1
    rate = "vendor_rate_limited"
    assert sample(text, rate, "vendor_rate_limited_total", source="ops-test") == 1
    budget = "vendor_key_budget_remaining"
    assert sample(text, budget, budget, source="ops-test", key="key-1") == 17
    assert sample(text, "source_circuit_open", "source_circuit_open", source="ops-test") == 1
    assert sample(text, "cache_hits", "cache_hits_total", source="ops-test") == 2


# -- operator logs ----------------------------------------------------------------------


def test_route_templates_name_no_value():
    assert route_of("/fhir/Patient") == "/fhir/{type}"
    assert route_of("/fhir/Patient/_search") == "/fhir/{type}/_search"
    assert route_of("/fhir/Patient/leyr-a.p1") == "/fhir/{type}/{id}"
    assert route_of("/fhir/Patient/p1/_history/2") == "/fhir/{type}/{id}/_history/{part}"
    assert route_of("/fhir/metadata") == "/fhir/metadata"


async def test_each_request_is_one_json_line_without_search_values_or_ids(
    http, restore_loggers, capsys
):
    console = io.StringIO()
    logs.configure(SimpleNamespace(), console=console)
    first = (await http.get("/fhir/Patient", params={"_count": "3"})).json()
    ids = [e["resource"]["id"] for e in first["entry"]]
    family = first["entry"][0]["resource"]["name"][0]["family"]
    await http.get("/fhir/Patient", params={"name": "Zebulon"})
    await http.get("/fhir/Patient", params={"family": family})
    await http.get(f"/fhir/Patient/{ids[0]}")
    await http.post("/fhir/Patient/_search", data={"name": "Zebulon"})

    text = console.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["event"] for line in lines] == ["request"] * 5
    search = lines[0]
    assert search.keys() >= {
        "at", "level", "method", "route", "interaction", "type", "status", "duration_ms",
        "client", "sources", "count",
    }  # fmt: skip
    assert search["method"] == "GET" and search["route"] == "/fhir/{type}"
    assert search["interaction"] == "search" and search["type"] == "Patient"
    assert search["status"] == 200 and search["count"] == 3
    assert search["sources"] and set(search["sources"]) <= {"leyr-a", "nyra-b"}
    assert isinstance(search["duration_ms"], float) and search["client"] is None
    assert lines[3]["route"] == "/fhir/{type}/{id}" and lines[3]["count"] == 1
    assert lines[4]["route"] == "/fhir/{type}/_search"
    for value in ["Zebulon", family, *ids, "name=", "_count"]:
        assert value not in text
    # The audit trail was not asked for standard output.
    assert capsys.readouterr().out == ""


async def test_vendor_failures_are_a_line_of_their_own(restore_loggers):
    console = io.StringIO()
    logs.configure(SimpleNamespace(), console=console)
    observer.vendor_failure("nyra-b", 503, "VendorUnavailable")
    logs.log_vendor_failure("leyr-a", "timeout", "VendorTimeout")
    lines = [json.loads(line) for line in console.getvalue().splitlines()]
    assert [(x["event"], x["level"], x["source"], x["status"], x["kind"]) for x in lines] == [
        ("vendor_failure", "warning", "nyra-b", 503, "VendorUnavailable"),
        ("vendor_failure", "warning", "leyr-a", "timeout", "VendorTimeout"),
    ]


def test_an_exception_is_logged_by_its_type_only(restore_loggers):
    console = io.StringIO()
    logs.configure(SimpleNamespace(), console=console)
    try:
        raise KeyError("Ravi Kumar")
    except KeyError:
        logging.getLogger("fhir_adapter").exception("lookup failed")
    line = json.loads(console.getvalue())
    assert line["event"] == "message" and line["message"] == "lookup failed"
    assert line["exception"] == "KeyError" and "Ravi" not in console.getvalue()


def test_the_text_format_holds_the_same_fields_for_a_terminal(restore_loggers):
    console = io.StringIO()
    logs.configure(SimpleNamespace(log_format="text"), console=console)
    logs.log_vendor_failure("leyr-a", 503, "VendorUnavailable")
    (line,) = console.getvalue().splitlines()
    assert line.endswith("event=vendor_failure source=leyr-a status=503 kind=VendorUnavailable")
    assert " WARNING " in line and not line.startswith("{")


# -- the audit trail --------------------------------------------------------------------


@pytest.mark.parametrize("asked", [False, True])
async def test_the_audit_trail_goes_to_stdout_only_when_asked(http, restore_loggers, capsys, asked):
    logs.configure(SimpleNamespace(audit_stdout=asked))
    bundle = (await http.get("/fhir/Patient", params={"_count": "2"})).json()
    ids = [e["resource"]["id"] for e in bundle["entry"]]
    out, err = capsys.readouterr()
    if asked:
        records = [json.loads(line) for line in out.splitlines()]
        assert [r["event"] for r in records] == ["fhir.request"]
        assert records[0]["ids"] == ids
    else:
        assert out == ""
    # The console (standard error) has the request, never the audit record's ids.
    assert [json.loads(line)["event"] for line in err.splitlines()] == ["request"]
    assert not any(i in err for i in ids)


async def test_the_audit_ndjson_file_is_written_whatever_the_console(tmp_path, restore_loggers):
    path = tmp_path / "audit.ndjson"
    sandboxes = {"nyra-b": NyraSandbox(seed=1, patients=5, limits=FAST)}
    source = {**SOURCES["nyra-b"], **sandboxes["nyra-b"].defaults(), "retry": {"attempts": 1}}
    settings = Settings(
        open_access=True,
        sources={"nyra-b": source},
        cursor_key=b"c" * 32,
        audit_ndjson=str(path),
    )
    logs.configure(settings, console=io.StringIO())
    app = create_app(settings, transports={"nyra-b": sandboxes["nyra-b"].transport()})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        assert (await c.get("/fhir/Patient")).status_code == 200
    app.state.audit_file.close()
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["resourceType"] for e in events] == ["AuditEvent"]


async def test_the_memo_of_mapped_answers_is_in_the_metrics(app, http):
    """A search maps the vendor's answer once; the memo says what it holds, in bytes and
    entries, and counts the answer mapped again as a hit."""
    source = next(iter(app.state.facade.connectors))
    memo = app.state.facade.connectors[source].memo
    for _ in range(2):
        r = await http.get("/fhir/Patient", params={"_source": source, "_count": "2"})
        assert r.status_code == 200
    text = (await http.get("/metrics")).text
    # Summed over the memos of that source alive in this process (other tests' apps too).
    alive = [c for c in caches.registered() if (c.name, c.source) == ("memo", source)]
    assert memo in alive and memo.held_bytes > 0 and len(memo) > 0
    memo_of = {"cache": "memo", "source": source}
    held = sum(c.held_bytes for c in alive)
    assert sample(text, "cache_bytes", "cache_bytes", **memo_of) == held
    assert sample(text, "cache_entries", "cache_entries", **memo_of) == sum(map(len, alive))
    limit = sum(c.max_bytes for c in alive)
    assert sample(text, "cache_limit_bytes", "cache_limit_bytes", **memo_of) == limit
    lookups = "cache_lookups", "cache_lookups_total"
    assert sample(text, *lookups, **memo_of, result="hit") >= 1
    assert sample(text, *lookups, **memo_of, result="miss") >= 1


def test_cache_mb_is_shared_out_between_the_sources_unless_a_source_names_its_own(tmp_path):
    from adapter.settings import load_settings

    config = tmp_path / "adapter.toml"
    config.write_text(
        "[server]\nopen_access = true\ncache_mb = 128\n\n"
        '[sources.a]\nconnector = "leyr"\ntimezone = "Europe/Stockholm"\nemr = "webdoc"\n'
        "sandbox = {}\n\n"
        '[sources.b]\nconnector = "nyra"\ntimezone = "Asia/Kolkata"\nsandbox = {}\n'
        "memo_mb = 8\ncache_seconds = 5\n"
    )
    made = create_app(load_settings(config, {}))
    made_ = made.state.facade.connectors
    # Each source's part is 64 MB: an eighth to its directory, an eighth to a read cache
    # in memory (b's), the rest to its memo unless it names its own.
    assert made_["a"].memo.max_bytes == 56 << 20
    assert made_["a"].listing.max_bytes == 8 << 20
    assert made_["a"].client.cache.max_bytes == 0  # no cache_seconds: nothing kept
    assert made_["b"].memo.max_bytes == 8 << 20
    assert made_["b"].roster.max_bytes + made_["b"].schedules.max_bytes == 8 << 20
    assert made_["b"].client.cache.max_bytes == 8 << 20
