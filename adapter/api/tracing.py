"""A span for each request (:mod:`adapter.ops.telemetry`), outermost, when tracing is on.

The span is named by the request's method and route template (``GET /fhir/{type}``),
never by the path or query a client wrote; it says the status answered and, for a
``/fhir`` request, the interaction and the client the guard found. A client's W3C
``traceparent`` makes it a child of the client's own span.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapter.api.guard import interaction_of, where_of
from adapter.ops import telemetry

__all__ = ["Traced"]

_CONTEXT_HEADERS = (b"traceparent", b"tracestate")


class Traced:
    """ASGI middleware: the request's span around everything else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not telemetry.enabled():
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        path = scope.get("path", "")
        carrier = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope.get("headers") or ()
            if key in _CONTEXT_HEADERS
        }
        name = where_of(method, path)
        attributes: dict[str, str] = {"http.request.method": method, "http.route": name}
        if path.startswith("/fhir/"):
            interaction, _ = interaction_of(method, path)
            if interaction is not None:
                attributes["fhir.interaction"] = interaction
        with telemetry.request_span(name, carrier, attributes) as span:

            async def watch(message: Message) -> None:
                if message["type"] == "http.response.start" and span is not None:
                    span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            try:
                await self.app(scope, receive, watch)
            finally:
                audit = scope.get("fhir.audit")
                client = audit.get("client") if isinstance(audit, dict) else None
                if span is not None and client:
                    span.set_attribute("fhir.client", client)
