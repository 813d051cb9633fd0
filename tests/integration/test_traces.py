"""OpenTelemetry traces, through the SDK's in-memory exporter: a search over both sandbox
sources is one request span with one vendor span per source, carrying the attributes an
operator reads (source, connector, key index, budget wait, circuit state, retries, the
vendor's status); the client's ``traceparent`` is the request's parent and each vendor
call carries its own span's; log lines within a trace carry its id; and no span says a
search value. With tracing off, nothing of it is made.
"""

from __future__ import annotations

import dataclasses
import http.server
import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from adapter.api.tracing import Traced
from adapter.app import create_app
from adapter.ops import logs, telemetry
from adapter.sandbox import sandbox_for
from adapter.settings import DEMO_SECRET_ENV, Settings, SettingsError, load_settings

pytestmark = pytest.mark.anyio

SECRET = "demo-secret-for-the-trace-test"
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


class Recording(httpx.AsyncBaseTransport):
    """A sandbox's transport that keeps the headers of every request reaching it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.headers: list[httpx.Headers] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.headers.append(request.headers)
        return await self.inner.handle_async_request(request)


def one_call_each() -> Settings:
    """The embedded demo with its Leyr source on one care unit: a Patient search is one
    vendor call at each source."""
    settings = load_settings(env={DEMO_SECRET_ENV: SECRET})
    leyr = {**settings.sources["leyr-sandbox"], "care_units": ["L0_1"]}
    return dataclasses.replace(settings, sources={**settings.sources, "leyr-sandbox": leyr})


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    telemetry.configure(provider)
    yield spans
    telemetry.configure(None)


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """The console log, into a buffer; the process's loggers put back after."""
    saved = {
        name: (list(lg.handlers), lg.level, lg.propagate)
        for name in (logs.LOGGER, logs.AUDIT_LOGGER)
        for lg in [logging.getLogger(name)]
    }
    text = io.StringIO()
    logs.configure(dataclasses.replace(one_call_each()), console=text)
    yield text
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


async def search(
    headers: dict[str, str],
    query: str = "_count=5",
    exporter: InMemorySpanExporter | None = None,
) -> tuple[httpx.Response, dict[str, Recording]]:
    """The answer to a Patient search, and what reached each vendor for it. A search
    before it fills the Leyr source's directory (which a first search reads), so that
    what is traced and recorded is the search's own calls alone."""
    settings = one_call_each()
    calls = {
        name: Recording(sandbox_for(source["connector"], source["sandbox"], source).transport())
        for name, source in settings.sources.items()
    }
    app = create_app(settings, transports=calls)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
    ) as http:
        granted = await http.post(
            "/auth/token", auth=("demo", SECRET), data={"grant_type": "client_credentials"}
        )
        token = granted.json()["access_token"]
        await http.get("/fhir/Patient?_count=1", headers={"Authorization": f"Bearer {token}"})
        for recording in calls.values():
            recording.headers.clear()
        if exporter is not None:
            exporter.clear()
        answer = await http.get(
            f"/fhir/Patient?{query}",
            headers={"Authorization": f"Bearer {token}", **headers},
        )
    await app.state.aclose()
    return answer, calls


def spans_of(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The search's request span and its vendor spans."""
    spans = exporter.get_finished_spans()
    (request,) = [s for s in spans if s.name == "GET /fhir/{type}"]
    vendor = sorted(
        (s for s in spans if s.kind == SpanKind.CLIENT), key=lambda s: str(s.attributes)
    )
    return request, vendor


async def test_a_two_source_search_is_one_request_span_with_a_vendor_span_per_source(exporter):
    answer, _ = await search({}, exporter=exporter)
    assert answer.status_code == 200
    request, vendor = spans_of(exporter)
    assert request.kind == SpanKind.SERVER
    assert request.parent is None
    assert dict(request.attributes or {}) == {
        "http.request.method": "GET",
        "http.route": "GET /fhir/{type}",
        "fhir.interaction": "search",
        "http.response.status_code": 200,
        "fhir.client": "demo",
    }
    assert [s.name for s in vendor] == ["GET leyr-sandbox", "GET nyra-sandbox"]
    for span, source, connector in zip(
        vendor, ["leyr-sandbox", "nyra-sandbox"], ["leyr", "nyra"], strict=True
    ):
        assert span.parent is not None
        assert span.parent.span_id == request.context.span_id
        assert span.context.trace_id == request.context.trace_id
        attributes: dict[str, Any] = dict(span.attributes or {})
        wait = attributes.pop("vendor.budget_wait_ms")
        assert isinstance(wait, float) and wait >= 0
        assert attributes == {
            "vendor.source": source,
            "vendor.connector": connector,
            "vendor.key_index": 0,
            "vendor.circuit": "closed",
            "vendor.lane": "interactive",  # a search
            "vendor.retries": 0,
            "vendor.status": 200,
        }


async def test_the_clients_traceparent_is_the_parent_and_each_vendor_call_carries_its_own(
    exporter,
):
    answer, calls = await search(
        {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}, exporter=exporter
    )
    assert answer.status_code == 200
    request, vendor = spans_of(exporter)
    assert format(request.context.trace_id, "032x") == CLIENT_TRACE
    assert request.parent is not None and format(request.parent.span_id, "016x") == CLIENT_SPAN
    for span, source in zip(vendor, ["leyr-sandbox", "nyra-sandbox"], strict=True):
        (headers,) = calls[source].headers
        own = format(span.context.span_id, "016x")
        assert headers["traceparent"] == f"00-{CLIENT_TRACE}-{own}-01"


async def test_log_lines_within_a_trace_carry_its_id(exporter, console):
    answer, _ = await search({"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    assert answer.status_code == 200
    lines = [json.loads(line) for line in console.getvalue().splitlines()]
    # The search that fills the directory (its own trace), then the one the client traced.
    first, second = [
        line for line in lines if line.get("event") == "request" and line["route"] == "/fhir/{type}"
    ]
    assert len(first["trace_id"]) == 32 and first["trace_id"] != CLIENT_TRACE
    assert second["trace_id"] == CLIENT_TRACE


async def test_no_span_says_a_search_value(exporter):
    await search({}, "family=Zyxwvut&phone=5550101")
    assert exporter.get_finished_spans()
    for span in exporter.get_finished_spans():
        said = span.name + json.dumps(dict(span.attributes or {}))
        assert "Zyxwvut" not in said and "5550101" not in said


async def test_with_tracing_off_no_span_is_made_and_no_vendor_call_carries_a_traceparent(
    console,
):
    answer, calls = await search({"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    assert answer.status_code == 200
    for recording in calls.values():
        (headers,) = recording.headers
        assert "traceparent" not in headers
    assert "trace_id" not in console.getvalue()


def test_telemetry_configuration_is_strict(tmp_path):
    path = tmp_path / "adapter.toml"
    path.write_text(
        "[server]\nopen_access = true\n"
        '[sources.nyra-demo]\nconnector = "nyra"\ntimezone = "Asia/Kolkata"\n'
        "sandbox = { seed = 7, patients = 10 }\n"
        '[telemetry]\notlp_endpoit = "http://127.0.0.1:4318"\n'
    )
    with pytest.raises(SettingsError) as refused:
        load_settings(path, {})
    assert refused.value.problems == [
        "[telemetry]: unknown key 'otlp_endpoit' (did you mean 'otlp_endpoint'?)"
    ]
    text = path.read_text().replace("otlp_endpoit", "otlp_endpoint")
    path.write_text(text.replace('"http://', '"udp://'))
    with pytest.raises(SettingsError) as refused:
        load_settings(path, {})
    assert refused.value.problems == ["[telemetry] otlp_endpoint must be an http(s) URL"]
    path.write_text(text)
    assert load_settings(path, {}).otlp_endpoint == "http://127.0.0.1:4318"


class Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that keeps what it is sent."""

    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((self.path, self.headers["content-type"], body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


async def test_an_otlp_endpoint_is_sent_the_spans(tmp_path):
    collector = http.server.HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    settings = dataclasses.replace(one_call_each(), otlp_endpoint=endpoint)
    try:
        app = create_app(settings)
        assert telemetry.enabled()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
        ) as client:
            answer = await client.get(
                "/fhir/metadata",
                headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
            )
            assert answer.status_code == 200
        await app.state.aclose()  # flushes the batch
    finally:
        telemetry.configure(None)
        collector.shutdown()
    ((path, media, body),) = Collector.received
    assert (path, media) == ("/v1/traces", "application/x-protobuf")
    request = ExportTraceServiceRequest.FromString(body)
    (span,) = [s for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
    assert span.name == "GET /fhir/metadata"
    assert span.trace_id.hex() == CLIENT_TRACE and span.parent_span_id.hex() == CLIENT_SPAN
    (resource,) = request.resource_spans
    names = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert names["service.name"] == "fhir-adapter"


async def test_with_tracing_off_the_app_adds_no_tracing_middleware():
    assert not telemetry.enabled()
    app = create_app(one_call_each())
    await app.state.aclose()
    assert Traced not in [m.cls for m in app.user_middleware]
