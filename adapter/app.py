"""``create_app(settings)``: the service as an ASGI app.

The request guard is outermost; ``/fhir`` requests go from it to the FHIR routes, served
from their table (:mod:`adapter.api.routes`), anything else to FastAPI's router. Every
exception, wherever it is caught, becomes its answer through one function
(:func:`adapter.facade.outcome_of`, rendered by :func:`adapter.api.fhir.error_response`).
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from adapter.api.auth import router as auth_router
from adapter.api.fhir import error_response
from adapter.api.fhir import router as fhir_router
from adapter.api.guard import Guard, MemoryLimiter, RedisLimiter
from adapter.api.routes import FhirRoutes
from adapter.api.writes import router as writes_router
from adapter.auth.tokens import AssertionReplay, TokenService
from adapter.connectors.registry import create_connector
from adapter.facade import Facade, SearchLimits
from adapter.fhir.cursor import CursorCodec
from adapter.fhir.outcome import FhirError
from adapter.idempotency import IdempotencyStore, MemoryStore, RedisStore
from adapter.settings import Settings, load_settings

__all__ = ["app_from_env", "configure_audit_log", "create_app"]

log = logging.getLogger("fhir_adapter")


def create_app(
    settings: Settings,
    *,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> FastAPI:
    """The service for ``settings``. ``transports`` (source -> transport) lets a caller put
    its own vendor behind a source, as tests and benchmarks do."""
    transports = transports or {}
    # Vendor URLs carry search values (a name, a phone): the HTTP libraries' request logs
    # stay off, like uvicorn's access log (`serve` turns it off).
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    connectors = {
        name: create_connector(name, config, transport=transports.get(name))
        for name, config in settings.sources.items()
    }
    read_only = frozenset(n for n, c in settings.sources.items() if c.get("read_only") is True)
    facade = Facade(
        connectors,
        CursorCodec(settings.cursor_key),
        read_only=read_only,
        limits=SearchLimits(settings.default_count, settings.max_count),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # What start-up made lives as long as the process: keep it out of the garbage
        # collector's full passes (fewer pauses while serving).
        gc.freeze()
        yield
        await facade.aclose()
        if isinstance(app.state.idempotency, RedisStore):
            await app.state.idempotency.aclose()
        if app.state.audit_file is not None:
            app.state.audit_file.close()

    app = FastAPI(
        title="fhir-adapter",
        summary="One FHIR R4 REST facade in front of vendor healthcare APIs.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.facade = facade
    store: IdempotencyStore = (
        RedisStore(settings.redis_url) if settings.redis_url else MemoryStore()
    )
    app.state.idempotency = store
    audience = settings.public_base_url or "urn:fhir-adapter"
    open_access = settings.open_access and not settings.clients
    app.state.tokens = (
        None if open_access else TokenService(settings.token_key, audience, settings.token_minutes)
    )
    app.state.replay = AssertionReplay()
    app.include_router(auth_router)  # before /fhir/{type}/{id}: the well-known route
    app.include_router(fhir_router)
    app.include_router(writes_router)

    async def _error(request: Request, exc: Exception) -> Response:
        return error_response(request, exc)

    async def _invalid(request: Request, exc: Exception) -> Response:
        return error_response(request, HTTPException(400, "the request is not valid"))

    for kind in (FhirError, HTTPException):
        app.add_exception_handler(kind, _error)
    app.add_exception_handler(RequestValidationError, _invalid)

    limiter = RedisLimiter(app.state.idempotency.redis) if settings.redis_url else MemoryLimiter()
    # Held open for the app's life; closed when it shuts down.
    app.state.audit_file = open(settings.audit_ndjson, "ab") if settings.audit_ndjson else None  # noqa: SIM115
    app.add_middleware(
        Guard,
        settings=settings,
        tokens=app.state.tokens,
        limiter=limiter,
        audit_file=app.state.audit_file,
        fhir=FhirRoutes([*auth_router.routes, *fhir_router.routes, *writes_router.routes]),
    )
    return app


def configure_audit_log() -> None:
    """The audit trail to standard output, one JSON record a line (once per process)."""
    audit = logging.getLogger("fhir_adapter.audit")
    if not audit.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        audit.addHandler(handler)
        audit.setLevel(logging.INFO)
        audit.propagate = False


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory`` (each worker): settings from ``FHIR_ADAPTER_CONFIG`` (or
    the default), the audit trail to standard output."""
    configure_audit_log()
    return create_app(load_settings())
