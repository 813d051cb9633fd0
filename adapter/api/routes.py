"""The ``/fhir`` routes served straight from their table.

The routes are declared to FastAPI (``adapter/api/fhir.py``, ``writes.py``, ``auth.py``)
for the OpenAPI document; at run time :class:`FhirRoutes` matches a ``/fhir`` request
against the same paths and calls the endpoint with a plain ``Request``, without
FastAPI's per-request routing and dependency machinery (a third of a search's time).
Every endpoint takes only the request; what goes wrong becomes its OperationOutcome
through :func:`adapter.api.fhir.error_response`, the same as anywhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from adapter.api.fhir import error_response

__all__ = ["FhirRoutes"]

Endpoint = Callable[[Request], Awaitable[Response]]
_READS = frozenset({"GET", "HEAD"})


class _ClientGone(Exception):
    pass


async def _unless_client_goes(work: Awaitable[Response], receive: Receive) -> Response:
    """``work``'s answer, or :class:`_ClientGone` (with ``work`` cancelled, its vendor calls
    too) when the client disconnects first: its request costs nobody's budget any more."""
    task = asyncio.current_task()
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass  # a read's body is empty: only the disconnect is of interest
        gone = True
        if task is not None:
            task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone and task is not None:
            task.uncancel()
            raise _ClientGone() from None
        raise
    finally:
        watcher.cancel()


@dataclass(frozen=True)
class _Route:
    """A path as its segments: a literal, or ``None`` for a ``{parameter}`` (named in
    ``names`` by position). Parameters take one whole segment, as FastAPI's do."""

    methods: frozenset[str]
    segments: tuple[str | None, ...]
    names: tuple[str | None, ...]
    endpoint: Endpoint

    @classmethod
    def of(cls, route: APIRoute) -> _Route:
        parts = route.path.strip("/").split("/")
        names = tuple(p[1:-1] if p.startswith("{") else None for p in parts)
        segments = tuple(None if n is not None else p for p, n in zip(parts, names, strict=True))
        methods = set(route.methods or ())
        if "GET" in methods:
            methods.add("HEAD")
        return cls(frozenset(methods), segments, names, route.endpoint)

    def params(self, parts: list[str]) -> dict[str, str] | None:
        """The path parameters if ``parts`` is this path, else None."""
        if len(parts) != len(self.segments):
            return None
        found = {}
        for part, literal, name in zip(parts, self.segments, self.names, strict=True):
            if literal is not None:
                if part != literal:
                    return None
            elif not part:
                return None
            else:
                found[name or ""] = part
        return found


class FhirRoutes:
    """An ASGI app for the ``/fhir`` paths of ``routes``, in their declared order."""

    def __init__(self, routes: Iterable[object]) -> None:
        self._routes = [
            _Route.of(r) for r in routes if isinstance(r, APIRoute) and r.path.startswith("/fhir/")
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = scope["path"].strip("/").split("/")
        method = scope["method"]
        allowed: set[str] = set()
        for route in self._routes:
            params = route.params(parts)
            if params is None:
                continue
            if method not in route.methods:
                allowed |= route.methods
                continue
            scope["path_params"] = params
            request = Request(scope, receive, send)
            try:
                if method in _READS:
                    response = await _unless_client_goes(route.endpoint(request), receive)
                else:  # a write runs to its end: half a write is worse than a late answer
                    response = await route.endpoint(request)
            except _ClientGone:
                return  # nobody to answer; the vendor calls were cancelled with it
            except Exception as exc:
                response = error_response(request, exc)
            await response(scope, receive, send)
            return
        request = Request(scope, receive, send)
        if allowed:
            refusal = HTTPException(405, headers={"Allow": ", ".join(sorted(allowed))})
        else:
            refusal = HTTPException(404)
        await error_response(request, refusal)(scope, receive, send)
