"""``create_app(settings)``: the service as an ASGI app.

The request guard is outermost; ``/fhir`` requests go from it to the FHIR routes, served
from their table (:mod:`adapter.api.routes`), anything else to FastAPI's router. Every
exception, wherever it is caught, becomes its answer through one function
(:func:`adapter.facade.outcome_of`, rendered by :func:`adapter.api.fhir.error_response`).
The operator's routes (``/healthz``, ``/readyz``, ``/metrics``) come from
:mod:`adapter.ops.probes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from adapter.api.auth import LoginThrottle
from adapter.api.auth import router as auth_router
from adapter.api.docs import router as docs_router
from adapter.api.everything import router as everything_router
from adapter.api.export import router as export_router
from adapter.api.fhir import error_response
from adapter.api.fhir import router as fhir_router
from adapter.api.groups import router as groups_router
from adapter.api.guard import Guard, MemoryLimiter, RedisLimiter
from adapter.api.routes import FhirRoutes
from adapter.api.subscriptions import router as subscriptions_router
from adapter.api.terminology import router as terminology_router
from adapter.api.topics import router as topics_router
from adapter.api.tracing import Traced
from adapter.api.writes import router as writes_router
from adapter.assembly import build_facade, journal_of
from adapter.auth.tokens import AssertionReplay, TokenService
from adapter.console import ConsoleState
from adapter.console import router as console_router
from adapter.export.jobs import ExportRunner
from adapter.export.outputs import output_for
from adapter.export.store import FileJobStore, JobStore, RedisJobStore
from adapter.facade import Facade
from adapter.fhir.outcome import FhirError
from adapter.idempotency import IdempotencyStore, MemoryStore, RedisStore
from adapter.ops import caches, metrics, redis_watch, telemetry
from adapter.ops import logs as ops_logs
from adapter.ops.observer import observer as ops_observer
from adapter.ops.probes import probes_router
from adapter.settings import WORKERS_ENV, Settings, load_settings
from adapter.subscriptions import (
    FileSubscriptionStore,
    RedisSubscriptionStore,
    Store,
    SubscriptionPoller,
)
from adapter.transport import budget, hooks

__all__ = ["app_from_env", "create_app"]

log = logging.getLogger("fhir_adapter")
_SAMPLE_SECONDS = 15.0


def create_app(
    settings: Settings,
    *,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    workers: int | None = None,
) -> FastAPI:
    """The service for ``settings``. ``transports`` (source -> transport) lets a caller put
    its own vendor behind a source, as tests and benchmarks do; ``workers``: how many
    processes serve it (default: as ``serve`` says in the environment)."""
    transports = transports or {}
    # Vendor URLs carry search values (a name, a phone): the HTTP libraries' request logs
    # stay off, like uvicorn's access log (`serve` turns it off).
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # What the transport reports (calls, 429s, failures, cache hits) becomes metrics and
    # console lines; one observer per process, whatever the number of apps.
    hooks.install(ops_observer)
    # Traces over OTLP when [telemetry] asks for them: one provider per process.
    if settings.otlp_endpoint and not telemetry.enabled():
        telemetry.configure(telemetry.otlp_provider(settings.otlp_endpoint))
    # Vendor budgets: shared by every process through Redis, else this worker's share.
    # A burst of requests waits for one of its connections rather than fail for want of
    # one (a plain pool refuses the 101st caller at once).
    budget_redis = (
        aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                settings.redis_url, socket_connect_timeout=2, max_connections=100, timeout=20
            )
        )
        if settings.redis_url
        else None
    )
    if workers is None:
        workers = int(os.environ.get(WORKERS_ENV, "1"))
    budgets = budget.Budgets(
        budget_redis,
        workers=workers,
        namespace=settings.redis_prefix,
        shares=settings.lanes,
        ceilings={"bulk": settings.export.budget_share},
    )
    budget.configure(budgets)
    # When each record last changed, where its vendor does not say: $everything's and
    # $export's _since. Shared through Redis, else a sqlite file beside the export files.
    journal = journal_of(settings)
    # The one gate between every consumer here (routes, exports, Subscriptions) and the
    # vendors.
    facade = build_facade(settings, transports=transports, journal=journal)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # What start-up made lives as long as the process: keep it out of the garbage
        # collector's full passes (fewer pauses while serving).
        gc.freeze()
        await app.state.astart()
        yield
        await app.state.aclose()
        metrics.worker_exiting()

    async def astart() -> None:
        """Start what runs in the background: export jobs, new ones and unfinished ones
        found in the store (at start-up, or when a reloaded configuration takes over),
        and the Subscriptions' poller."""
        await app.state.exports.start()
        await app.state.subscriptions.start()
        app.state.console.start()
        app.state.sampler = asyncio.create_task(_sample_worker(), name="worker-memory")

    async def aclose() -> None:
        """Release what this app holds: vendor connections, Redis clients, the audit file
        (at shutdown, or when a reloaded configuration replaces it). Export jobs stop
        where they stand; the next start resumes them."""
        sampler = getattr(app.state, "sampler", None)
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        await app.state.exports.stop()
        await app.state.subscriptions.aclose()
        await app.state.console.aclose()
        await asyncio.to_thread(telemetry.flush)  # the last spans, before the process goes
        await facade.aclose()
        await journal.aclose()
        if budget_redis is not None:
            await budget_redis.aclose()
        if isinstance(app.state.idempotency, RedisStore):
            await app.state.idempotency.aclose()
        if app.state.audit_file is not None:
            app.state.audit_file.close()
        await app.state.exports.store.aclose()
        await app.state.exports.output.aclose()

    app = FastAPI(
        title="fhir-adapter",
        summary="One FHIR R4 REST facade in front of vendor healthcare APIs.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served by adapter.api.docs, completed
        # FastAPI's own spans and metrics off: the service makes its spans by hand
        # (adapter/ops/telemetry.py), which name a route's template and never its path
        # (a patient's id), and would otherwise be made twice under a global provider.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.facade = facade
    app.state.aclose = aclose
    app.state.astart = astart
    store: IdempotencyStore = (
        RedisStore(settings.redis_url, prefix=f"{settings.redis_prefix}idem:")
        if settings.redis_url
        else MemoryStore()
    )
    app.state.idempotency = store
    export_root = Path(settings.export.dir)
    jobs: JobStore = (
        RedisJobStore(
            aioredis.Redis.from_url(settings.redis_url),
            export_root,
            settings.redis_prefix,
            keep_seconds=settings.export.keep_hours * 3600,
        )
        if settings.redis_url
        else FileJobStore(export_root)
    )
    output = output_for(settings.export, jobs)  # [export] dir, or object storage
    app.state.exports = ExportRunner(facade, settings.export, jobs, journal=journal, output=output)
    app.state.subscriptions = _subscriptions(settings, facade, transports.get("subscriptions"))
    audience = settings.public_base_url or "urn:fhir-adapter"
    open_access = settings.open_access and not settings.clients
    app.state.tokens = (
        None if open_access else TokenService(settings.token_key, audience, settings.token_minutes)
    )
    app.state.replay = AssertionReplay()
    app.state.login_throttle = LoginThrottle()  # failed logins, per client and address
    app.include_router(auth_router)  # before /fhir/{type}/{id}: the well-known route
    app.include_router(export_router)  # before /fhir/{type}/{id}: $export paths
    app.include_router(fhir_router)
    app.include_router(writes_router)
    app.include_router(terminology_router)  # ConceptMap: the code tables, no source
    app.include_router(groups_router)  # Group: one per source
    app.include_router(subscriptions_router)  # Subscription: kept by the service itself
    app.include_router(topics_router)  # the topics' canonical URLs, as Basic
    app.include_router(everything_router)  # Patient/$everything
    app.include_router(
        probes_router(
            facade.readiness,
            None if budget_redis is None else functools.partial(redis_watch.ping, budget_redis),
            refresh=budgets.sync_circuits,
            lanes=budgets.lane_states,
        )
    )
    app.include_router(docs_router)  # /openapi.json and Swagger UI at /docs
    app.state.console = ConsoleState.of(settings)
    app.include_router(console_router)  # the operator's console at /console

    async def _error(request: Request, exc: Exception) -> Response:
        return error_response(request, exc)

    async def _invalid(request: Request, exc: Exception) -> Response:
        return error_response(request, HTTPException(400, "the request is not valid"))

    for kind in (FhirError, HTTPException):
        app.add_exception_handler(kind, _error)
    app.add_exception_handler(RequestValidationError, _invalid)

    limiter = (
        RedisLimiter(app.state.idempotency.redis, namespace=settings.redis_prefix)
        if settings.redis_url
        else MemoryLimiter()
    )
    # Held open for the app's life; closed when it shuts down.
    app.state.audit_file = ops_logs.open_audit_ndjson(settings)
    app.state.subscriptions.audit_file = app.state.audit_file  # a record per notification
    app.add_middleware(
        Guard,
        settings=settings,
        tokens=app.state.tokens,
        limiter=limiter,
        audit_file=app.state.audit_file,
        types=[*facade.declared.types, "ConceptMap", "Group", "Subscription"],
        fhir=FhirRoutes(
            [
                *auth_router.routes,
                *export_router.routes,
                *fhir_router.routes,
                *writes_router.routes,
                *terminology_router.routes,
                *groups_router.routes,
                *subscriptions_router.routes,
                *topics_router.routes,
                *everything_router.routes,
            ]
        ),
    )
    if telemetry.enabled():  # outermost: the request's span holds the guard's work too
        app.add_middleware(Traced)
    return app


def _subscriptions(
    settings: Settings, facade: Facade, transport: httpx.AsyncBaseTransport | None
) -> SubscriptionPoller:
    """The Subscriptions' store and poller; the facade's own writes are handed to the
    poller as they are answered, so that what changes through this service is told
    without waiting for the next poll."""
    config = settings.subscriptions
    keep = config.keep_hours * 3600
    store: Store = (
        RedisSubscriptionStore(
            aioredis.Redis.from_url(settings.redis_url), settings.redis_prefix, keep_seconds=keep
        )
        if settings.redis_url
        else FileSubscriptionStore(config.directory(settings.export.dir), keep_seconds=keep)
    )
    poller = SubscriptionPoller(
        facade,
        store,
        clients=settings.clients,
        journal=facade.journal,
        poll_seconds=config.poll_seconds,
        max_failures=config.max_failures,
        budget_share=config.budget_share,
        allowed_endpoints=config.allowed_endpoints,
        base_url=settings.public_base_url,
        transport=transport,
    )
    for name in ("create", "update"):
        write = getattr(facade, name)

        async def telling(*args: Any, _write: Any = write, **kwargs: Any) -> Any:
            written = await _write(*args, **kwargs)
            try:
                await poller.written(written.resource)
            except Exception as exc:  # the next sweep finds the change
                log.warning("a write could not be told at once: %s", type(exc).__name__)
            return written

        setattr(facade, name, telling)
    return poller


async def _sample_worker() -> None:
    """This worker's resident memory and its caches into /metrics, every few seconds:
    every live worker's figures are fresh whichever worker answers the scrape."""
    while True:
        metrics.sample_worker()
        caches.publish()
        await asyncio.sleep(_SAMPLE_SECONDS)


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory`` (each worker): settings from ``FHIR_ADAPTER_CONFIG`` (or
    the default), the console log and the audit trail set up for this worker."""
    settings = load_settings()
    ops_logs.configure(settings)
    return create_app(settings)
