"""``create_app(settings)``: the FastAPI app, with one exception handler -> OperationOutcome."""

from __future__ import annotations

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
from adapter.api.fhir import render
from adapter.api.fhir import router as fhir_router
from adapter.api.guard import Guard, MemoryLimiter, RedisLimiter
from adapter.api.writes import router as writes_router
from adapter.auth.tokens import AssertionReplay, TokenService
from adapter.connectors.registry import create_connector
from adapter.facade import Facade
from adapter.fhir.cursor import CursorCodec
from adapter.fhir.outcome import FhirError, from_exception
from adapter.idempotency import MemoryStore, RedisStore
from adapter.settings import Settings, load_settings
from adapter.transport import VendorError
from mappings import MappingError

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
    facade = Facade(connectors, read_only)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
    app.state.cursors = CursorCodec(settings.cursor_key)
    app.state.idempotency = RedisStore(settings.redis_url) if settings.redis_url else MemoryStore()
    audience = settings.public_base_url or "urn:fhir-adapter"
    open_access = settings.open_access and not settings.clients
    app.state.tokens = (
        None if open_access else TokenService(settings.token_key, audience, settings.token_minutes)
    )
    app.state.replay = AssertionReplay()
    app.include_router(auth_router)  # before /fhir/{type}/{id}: the well-known route
    app.include_router(fhir_router)
    app.include_router(writes_router)

    @app.exception_handler(FhirError)
    async def _fhir_error(request: Request, exc: FhirError) -> Response:
        return render(request, exc.body(), exc.status, exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            error = FhirError.one(404, "not-found", f"no such path: {request.url.path}")
        elif exc.status_code == 405:
            error = FhirError.one(405, "not-supported", f"{request.method} is not supported here")
        else:
            error = FhirError.one(exc.status_code, "processing", str(exc.detail))
        return render(request, error.body(), error.status, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        error = FhirError.one(400, "invalid", "the request is not valid")
        return render(request, error.body(), 400)

    @app.exception_handler(VendorError)
    @app.exception_handler(MappingError)
    async def _vendor(request: Request, exc: Exception) -> Response:
        error = from_exception(exc)
        return render(request, error.body(), error.status, error.headers)

    limiter = RedisLimiter(app.state.idempotency.redis) if settings.redis_url else MemoryLimiter()
    # Held open for the app's life; closed when it shuts down.
    app.state.audit_file = open(settings.audit_ndjson, "ab") if settings.audit_ndjson else None  # noqa: SIM115
    app.add_middleware(
        Guard,
        settings=settings,
        tokens=app.state.tokens,
        limiter=limiter,
        audit_file=app.state.audit_file,
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
