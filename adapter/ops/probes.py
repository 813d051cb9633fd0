"""``/healthz``, ``/readyz`` and ``/metrics``: what an orchestrator and a metrics scraper ask.

None of them needs a token: they name sources and states and carry counts, never patient
data. ``/metrics`` says how the service is used, though (clients' request rates, vendor
keys' labels), so serve it where only operators reach: an internal port, or a proxy that
keeps it in.

- ``GET /healthz``: 200 ``{"status": "ok"}`` while the process answers; it asks no vendor,
  so a vendor outage never gets a healthy worker restarted.
- ``GET /readyz``: each source's state (``up``, ``degraded``, ``circuit open``,
  ``credentials refused``, ``budget exhausted``); 200 while at least one source can serve
  (a search then still answers, with the others' failures as its issues), else 503 with
  ``Retry-After``, so a load balancer sends requests to another instance meanwhile. With
  ``[server] redis_url``, also ``"redis": "up"`` or ``"unreachable"`` (a PING): 503 while
  it is unreachable, since what the workers share (export jobs, budgets, idempotent
  writes) waits for it.
- ``GET /metrics``: Prometheus text (:mod:`adapter.ops.metrics`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

from adapter.ops import caches
from adapter.ops.metrics import exposition

__all__ = ["READY_RETRY_AFTER", "SERVING", "STATES", "probes_router"]

STATES = frozenset({"up", "degraded", "circuit open", "credentials refused", "budget exhausted"})
# The states in which a source still answers.
SERVING = frozenset({"up", "degraded"})
# Seconds to wait before asking again when no source can serve: about how long a circuit
# stays open or a vendor's rate window lasts.
READY_RETRY_AFTER = 30


def probes_router(
    readiness: Callable[[], Mapping[str, str]],
    redis_answers: Callable[[], Awaitable[bool]] | None = None,
    *,
    refresh: Callable[[], Awaitable[None]] | None = None,
    lanes: Callable[[], Mapping[str, Any]] | None = None,
) -> APIRouter:
    """The three routes; ``readiness`` gives each source's state (``Facade.readiness``),
    after ``refresh`` (what every process shares: the circuits); ``redis_answers`` whether
    the deployment's Redis answers (None: there is none); ``lanes`` each limited source's
    lanes. They stay out of the OpenAPI document: it describes the FHIR API, not
    operations."""
    router = APIRouter(include_in_schema=False)

    @router.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @router.api_route("/readyz", methods=["GET", "HEAD"])
    async def readyz() -> Response:
        if refresh is not None:
            await refresh()
        sources = dict(readiness())
        body: dict[str, Any] = {"sources": sources}
        if lanes is not None:
            body["lanes"] = dict(lanes())
        ready = any(state in SERVING for state in sources.values())
        if redis_answers is not None:
            up = await redis_answers()
            body["redis"] = "up" if up else "unreachable"
            ready = ready and up
        if ready:
            return JSONResponse({"status": "ready", **body})
        return JSONResponse(
            {"status": "unavailable", **body},
            status_code=503,
            headers={"Retry-After": str(READY_RETRY_AFTER)},
        )

    @router.get("/metrics")
    async def metrics() -> Response:
        caches.publish()
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    return router
