"""OpenTelemetry traces: one span per request, a child span per vendor call.

Off by default: until :func:`configure` is handed a tracer provider (``serve`` does when
``[telemetry] otlp_endpoint`` is set), every function here is one test of a module global
and returns, so the request path pays nothing measurable.

The spans are made here by hand with the SDK's tracer, not by the FastAPI and httpx
instrumentations: the FHIR routes are served from their own table outside FastAPI's
router, and vendor calls go straight to the connection pool, past ``httpx.AsyncClient``
whose methods the httpx instrumentation wraps, so neither would see them; and what a
vendor span must say (key index, budget wait, circuit state, retries) is known only to the
transport.

What a span holds is what a log line may: the method and route template of a request,
never its path or query; a vendor call's source, connector, key index (never the key),
budget wait, circuit state, retries and the vendor's status, never its URL.

W3C trace context: a client's ``traceparent`` (and ``tracestate``) is the parent of the
request's span, and every vendor call carries its own span's ``traceparent``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "VendorSpan",
    "configure",
    "enabled",
    "flush",
    "otlp_provider",
    "request_span",
    "trace_id",
    "vendor_span",
]

_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None
_propagator = TraceContextTextMapPropagator()
_SCOPE = "fhir_adapter"


def configure(provider: TracerProvider | None) -> None:
    """Trace through ``provider`` from now on (``None``: tracing off)."""
    global _tracer, _provider
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer(_SCOPE)


def flush(timeout_ms: int = 5000) -> None:
    """Send the spans still batched (at shutdown; nothing with tracing off)."""
    if _provider is not None:
        _provider.force_flush(timeout_ms)


def enabled() -> bool:
    return _tracer is not None


def otlp_provider(endpoint: str, service_name: str = "fhir-adapter") -> TracerProvider:
    """A provider that sends its spans in batches over OTLP/HTTP to ``endpoint`` (the
    collector's base URL, e.g. ``http://127.0.0.1:4318``)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    return provider


@contextmanager
def request_span(
    name: str, headers: Mapping[str, str], attributes: Mapping[str, Any]
) -> Iterator[trace.Span | None]:
    """The span of one request, current while it runs, child of the client's
    ``traceparent`` when it sent one (``None`` with tracing off)."""
    tracer = _tracer
    if tracer is None:
        yield None
        return
    parent = _propagator.extract(dict(headers))
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes=dict(attributes),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            _failed(span, exc)
            raise


class VendorSpan:
    """What one vendor call (with its retries) reports into its span: a context manager
    that starts the span (the shared, inert one when tracing is off)."""

    __slots__ = ("_made", "attributes", "span")

    def __init__(self, made: Any = None) -> None:
        self._made = made  # the tracer's context manager, started on entry
        self.span: trace.Span | None = None
        self.attributes: dict[str, Any] = {}

    def __enter__(self) -> VendorSpan:
        if self._made is not None:
            self.span = self._made.__enter__()
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        span = self.span
        if span is None:
            return
        span.set_attributes(self.attributes)
        if exc is not None:
            _failed(span, exc)
        self._made.__exit__(kind, exc, tb)

    def set(self, name: str, value: Any) -> None:
        if self.span is not None:
            self.attributes[name] = value

    def add(self, name: str, value: float) -> None:
        if self.span is not None:
            self.attributes[name] = self.attributes.get(name, 0) + value

    def traceparent(self) -> dict[str, str] | None:
        """The W3C headers naming this span as the vendor call's parent."""
        if self.span is None:
            return None
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=trace.set_span_in_context(self.span))
        return carrier


_NO_SPAN = VendorSpan()


def vendor_span(method: str, source: str, connector: str) -> VendorSpan:
    """A child span of the current one for a vendor call (``with vendor_span(...) as
    span``); its attributes are set as the call learns them and written when it ends."""
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    return VendorSpan(
        tracer.start_as_current_span(
            f"{method} {source}",
            kind=trace.SpanKind.CLIENT,
            attributes={"vendor.source": source, "vendor.connector": connector},
            record_exception=False,
            set_status_on_exception=False,
        )
    )


def _failed(span: trace.Span, exc: BaseException) -> None:
    """An error status naming the exception's type only: its text may quote patient data
    (the SDK's own recording would keep the text and the traceback)."""
    span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))


def trace_id() -> str | None:
    """The current trace's id (32 hex digits), for log lines; ``None`` outside a trace
    or with tracing off."""
    if _tracer is None:
        return None
    context = trace.get_current_span(otel_context.get_current()).get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
