"""The operator's console at ``/console``: pages rendered here from Jinja2 templates, a
stylesheet and a little script served from this package (no CDN), under a
Content-Security-Policy of this origin only, with no inline script or style.

Who may enter: the operators of ``[operators.NAME]``, through the log-in form. Every
form carries a CSRF token (the session's; the log-in form's is a cookie of its own,
double-submitted) and a form without the right one is refused (403) before anything is
done. Failed log-ins are throttled per operator and address as the token endpoint's are
(429 with ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.responses import RedirectResponse, Response

from adapter.auth.operators import check_password
from adapter.console import views
from adapter.console.state import ConsoleState
from adapter.fhir.outcome import FhirError

__all__ = ["CSP", "router"]

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SESSION_COOKIE = "console_session"
LOGIN_COOKIE = "console_login"
MAX_FORM = 16 << 10
_STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
PAGES = (
    ("sources", "Sources"),
    ("clients", "Clients"),
    ("exports", "Export jobs"),
    ("subscriptions", "Subscriptions"),
    ("errors", "Recent errors"),
    ("config", "Configuration"),
)

router = APIRouter(prefix="/console", include_in_schema=False)


def _console(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


def _secure(request: Request) -> bool:
    base = request.app.state.settings.public_base_url or ""
    return request.url.scheme == "https" or base.startswith("https://")


def _headers() -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}


def _page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    return templates.TemplateResponse(
        request,
        f"{name}.html",
        {"pages": PAGES, "page": name, **context},
        status_code=status,
        headers=_headers(),
    )


def _to(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303, headers=_headers())


async def _session(request: Request) -> Any:
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    return await _console(request).sessions.get(session_id)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM:
        raise FhirError.one(413, "too-costly", f"the form is over {MAX_FORM} bytes")
    try:
        items = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise FhirError.one(400, "invalid", "the form is not UTF-8") from None
    return dict(items)


def _csrf_refused() -> FhirError:
    return FhirError.one(403, "forbidden", "the form's CSRF token is missing or wrong")


def _same(given: str | None, expected: str | None) -> bool:
    return bool(given and expected) and hmac.compare_digest(str(given), str(expected))


async def _posted(request: Request) -> tuple[Any, dict[str, str]]:
    """The session and form of a console POST; 403 without the session's CSRF token."""
    form = await _form(request)
    session = await _session(request)
    if session is None or not _same(form.get("csrf"), session.csrf):
        raise _csrf_refused()
    return session, form


@router.get("/static/{name}")
async def static(name: str) -> Response:
    media = _STATIC.get(name)
    if media is None:
        raise FhirError.one(404, "not-found", "no such file")
    return Response(
        (HERE / "static" / name).read_bytes(),
        media_type=media,
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    return _to("/console/sources")


@router.get("/login")
async def login_form(request: Request) -> Response:
    if await _session(request) is not None:
        return _to("/console/sources")
    return _login_page(request)


def _login_page(request: Request, problem: str | None = None) -> Response:
    token = secrets.token_urlsafe(32)
    operators = bool(request.app.state.settings.operators)
    response = _page(request, "login", csrf=token, problem=problem, operators=operators)
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    if not _same(form.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
        raise _csrf_refused()
    console = _console(request)
    operators = request.app.state.settings.operators
    name = form.get("name", "")
    named = name if name in operators else None
    address = request.client.host if request.client is not None else "unknown"
    wait = console.throttle.wait(named, address)
    if wait:
        raise FhirError.one(
            429,
            "throttled",
            "too many failed log-ins for this operator or from this address; try again later",
            **{"Retry-After": str(wait)},
        )
    # A password hash takes a good part of a second: off the event loop.
    if not await asyncio.to_thread(check_password, operators, name, form.get("password", "")):
        console.throttle.failed(named, address)
        return _login_page(request, "That name and password do not match an operator.")
    session_id, _ = await console.sessions.open(name)
    response = _to("/console/sources")
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/console", httponly=True, samesite="strict")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await _posted(request)
    await _console(request).sessions.close(request.cookies.get(SESSION_COOKIE, ""))
    response = _to("/console/login")
    response.delete_cookie(SESSION_COOKIE, path="/console", httponly=True, samesite="strict")
    return response


@router.get("/sources")
async def sources_page(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to("/console/login")
    facade = request.app.state.facade
    rows = views.sources(facade, request.app.state.settings)
    figures = await _console(request).figures()
    calls, latency = views.charts(figures, time.time(), [row["name"] for row in rows])
    return _page(
        request,
        "sources",
        session=session,
        sources=rows,
        calls_chart=Markup(calls),
        latency_chart=Markup(latency),
        refresh=True,
    )


@router.get("/clients")
async def clients_page(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to("/console/login")
    figures = await _console(request).figures()
    rows = views.clients(request.app.state.settings, figures)
    return _page(request, "clients", session=session, clients=rows)


@router.get("/exports")
async def exports_page(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to("/console/login")
    rows = await views.exports(request.app.state.exports)
    return _page(request, "exports", session=session, jobs=rows, refresh=True)


@router.post("/exports/{job_id}/cancel")
async def export_cancel(request: Request, job_id: str) -> Response:
    await _posted(request)
    runner = request.app.state.exports
    job = await runner.store.get(job_id) if views.is_job_id(job_id) else None
    if job is None or not await runner.cancel(job_id, job.get("client")):
        raise FhirError.one(404, "not-found", "no such export job")
    return _to("/console/exports")


@router.get("/subscriptions")
async def subscriptions_page(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to("/console/login")
    rows = await views.subscriptions(request.app.state.subscriptions)
    return _page(request, "subscriptions", session=session, subscriptions=rows)


@router.post("/subscriptions/{sub_id}/requeue")
async def subscription_requeue(request: Request, sub_id: str) -> Response:
    await _posted(request)
    await views.requeue(request.app.state.subscriptions, sub_id)
    return _to("/console/subscriptions")


@router.get("/errors")
async def errors_page(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to("/console/login")
    figures = await _console(request).figures()
    rows = [{**error, "when": views.when(error.get("at"))} for error in figures.errors]
    return _page(request, "errors", session=session, errors=rows)


@router.get("/config")
async def config_page(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to("/console/login")
    shown = views.configuration(request.app.state.settings, _console(request).loaded)
    return _page(request, "config", session=session, config=shown)
