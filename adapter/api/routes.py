"""The ``/fhir`` routes served straight from their table.

The routes are declared to FastAPI (``adapter/api/fhir.py``, ``writes.py``, ``auth.py``)
for the OpenAPI document; at run time :class:`FhirRoutes` matches a ``/fhir`` request
against the same paths and calls the endpoint with a plain ``Request``, without
FastAPI's per-request routing and dependency machinery (a third of a search's time).
Every endpoint takes only the request; what goes wrong becomes its OperationOutcome
through :func:`adapter.api.fhir.error_response`, the same as anywhere else.

A path belongs to the most specific of the declared paths it matches, a literal segment
before a parameter (as OpenAPI reads paths): ``/fhir/metadata`` is not a resource type
``metadata``, nor ``/fhir/Patient/_search`` a Patient with the id ``_search``. A method
that path does not take is a 405 whose ``Allow`` lists the methods it does (HEAD
wherever GET is); a path no route declares is a 404. The method is judged before
anything about the body, so an unsupported method is a 405, never a 415.
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
from adapter.fhir.outcome import FhirError
from adapter.ops.caches import Table, weigh

__all__ = ["FhirRoutes"]

Endpoint = Callable[[Request], Awaitable[Response]]
_READS = frozenset({"GET", "HEAD"})
# What the table of paths already routed may hold (about 2,000 paths of resource ids).
ROUTES_BYTES = 1 << 20


def _route_weight(
    key: tuple[str, str], found: tuple[object, dict[str, str], frozenset[str]]
) -> int:
    # The route itself is shared by every entry: only what the entry adds is counted.
    return weigh(key) + weigh(found[1]) + weigh(found[2])


class _ClientGone(Exception):
    pass


# A read that ends sooner is not watched: starting the watch costs more than such a read
# could waste, and most reads end well within it.
_WATCH_AFTER = 0.05


async def _unless_client_goes(work: Awaitable[Response], receive: Receive) -> Response:
    """``work``'s answer, or :class:`_ClientGone` (with ``work`` cancelled, its vendor calls
    too) when the client disconnects first: its request costs nobody's budget any more.
    The watch starts once the read has taken :data:`_WATCH_AFTER`."""
    task = asyncio.current_task()
    gone = False

    async def watch() -> None:
        nonlocal gone
        try:
            while (await receive())["type"] != "http.disconnect":
                pass  # a read's body is empty: only the disconnect is of interest
        except FhirError:
            return  # a body sent anyway that did not arrive in time: the read goes on
        gone = True
        if task is not None:
            task.cancel()

    loop = asyncio.get_running_loop()
    watcher: asyncio.Task[None] | None = None

    def start() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch())

    timer = loop.call_later(_WATCH_AFTER, start)
    try:
        return await work
    except asyncio.CancelledError:
        if gone and task is not None:
            task.uncancel()
            raise _ClientGone() from None
        raise
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


@dataclass(frozen=True)
class _Route:
    """A path as its segments: a literal, or ``None`` for a ``{parameter}`` (named in
    ``names`` by position). Parameters take one whole segment, as FastAPI's do."""

    methods: frozenset[str]
    segments: tuple[str | None, ...]
    names: tuple[str | None, ...]
    endpoint: Endpoint

    @property
    def rank(self) -> tuple[bool, ...]:
        """Of two paths that match the same request, the greater rank owns it."""
        return tuple(s is not None for s in self.segments)

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
    """An ASGI app for the ``/fhir`` paths of ``routes``: the most specific path first, in
    their declared order among equals."""

    def __init__(self, routes: Iterable[object]) -> None:
        declared = [
            _Route.of(r) for r in routes if isinstance(r, APIRoute) and r.path.startswith("/fhir/")
        ]
        self._routes = sorted(declared, key=lambda r: r.rank, reverse=True)  # stable
        # Answers by (path, method): a client asks the same few paths again and again.
        self._seen: Table[tuple[str, str], tuple[_Route | None, dict[str, str], frozenset[str]]]
        self._seen = Table("routes", ROUTES_BYTES, weight=_route_weight)

    def _lookup(
        self, path: str, method: str
    ) -> tuple[_Route | None, dict[str, str], frozenset[str]]:
        key = (path, method)
        found = self._seen.get(key)
        if found is None:
            found = self._seen.put(key, self._match(path.strip("/").split("/"), method))
        return found

    def _match(
        self, parts: list[str], method: str
    ) -> tuple[_Route | None, dict[str, str], frozenset[str]]:
        """The route for ``method`` on the path and its parameters (None: not taken), and
        every method the path takes (empty: no such path)."""
        owner: tuple[bool, ...] | None = None
        chosen: tuple[_Route | None, dict[str, str]] = (None, {})
        allowed: set[str] = set()
        for route in self._routes:
            params = route.params(parts)
            if params is None:
                continue
            if owner is not None and route.rank != owner:
                break  # a less specific path: the request is not its
            owner = route.rank
            allowed |= route.methods
            if chosen[0] is None and method in route.methods:
                chosen = (route, params)
        return chosen[0], chosen[1], frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        route, params, allowed = self._lookup(scope["path"], method)
        if route is None:
            request = Request(scope, receive, send)
            if allowed:
                refusal = HTTPException(405, headers={"Allow": _allow(allowed)})
            else:
                refusal = HTTPException(404)
            await error_response(request, refusal)(scope, receive, send)
            return
        scope["path_params"] = dict(params)  # the cached answer's own stays as it is
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
        if response.status_code == 405 and "allow" not in response.headers:
            # The path takes the method, but not for this type (no source creates it):
            # what it does take is the rest.
            response.headers["Allow"] = _allow(allowed - {method})
        await response(scope, receive, send)


def _allow(methods: Iterable[str]) -> str:
    return ", ".join(sorted(methods))
