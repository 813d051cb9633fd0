"""The ``/fhir`` routes served straight from their table.

The routes are declared to FastAPI (``adapter/api/fhir.py``, ``writes.py``, ``auth.py``)
for the OpenAPI document; at run time :class:`FhirRoutes` matches a ``/fhir`` request
against the same paths and calls the endpoint with a plain ``Request``, without
FastAPI's per-request routing and dependency machinery (a third of a search's time).
Every endpoint takes only the request; what goes wrong becomes its OperationOutcome
through :func:`adapter.api.fhir.error_response`, the same as anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from adapter.api.fhir import error_response

__all__ = ["FhirRoutes"]


class FhirRoutes:
    """An ASGI app for the ``/fhir`` paths of ``routes``, in their declared order."""

    def __init__(self, routes: Iterable[object]) -> None:
        self._routes = [
            Route(r.path, r.endpoint, methods=list(r.methods or ()))
            for r in routes
            if isinstance(r, APIRoute) and r.path.startswith("/fhir/")
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        allowed: set[str] = set()
        for route in self._routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                scope.update(child)
                request = Request(scope, receive, send)
                try:
                    response = await route.endpoint(request)
                except Exception as exc:
                    response = error_response(request, exc)
                await response(scope, receive, send)
                return
            if match is Match.PARTIAL:
                allowed |= route.methods or set()
        request = Request(scope, receive, send)
        if allowed:
            refusal = HTTPException(405, headers={"Allow": ", ".join(sorted(allowed))})
        else:
            refusal = HTTPException(404)
        await error_response(request, refusal)(scope, receive, send)
