"""The API's own description: ``/openapi.json`` (the document :mod:`adapter.api.openapi`
makes, the same as ``openapi/openapi.json`` for the embedded default) and Swagger UI at
``/docs``, its script and styles served from this service (the ``swagger-ui-bundle-v2``
package), no CDN, under a Content-Security-Policy that allows only this origin and no
inline script.

The landing pages, for whoever opens the address ``serve`` prints: ``GET /`` a small HTML
page (what this is, and links to the metadata, the docs and health), with no script and no
style; ``GET /fhir`` the same page for a browser (``Accept: text/html``), and for a FHIR
client a 404 OperationOutcome that points to ``/fhir/metadata``, the CapabilityStatement
that says what the base serves."""

from __future__ import annotations

from functools import cache

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from adapter.api.fhir import base_url
from adapter.api.openapi import document
from adapter.fhir.outcome import FhirError

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

# The files of Swagger UI this page uses: nothing else of the package is served.
_ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fhir-adapter API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/swagger-ui-standalone-preset.js"></script>
<script src="/docs/start.js"></script>
</body>
</html>
"""
_START = b"""window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout"
});
"""


_LANDING = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fhir-adapter</title>
</head>
<body>
<h1>fhir-adapter</h1>
<p>A FHIR R4 REST facade in front of vendor healthcare APIs (Leyr, NyraAI). It keeps no
store of its own: each answer is read from the vendors as it is asked. Its FHIR base is
<code>/fhir</code>; it speaks FHIR JSON only, and every route but the
metadata needs a token from <code>POST /auth/token</code>.</p>
<ul>
<li><a href="/fhir/metadata">/fhir/metadata</a>: the CapabilityStatement, what is served</li>
<li><a href="/docs">/docs</a>: the API, to read and try (<a href="/openapi.json">OpenAPI</a>)</li>
<li><a href="/fhir/.well-known/smart-configuration">SMART configuration</a>: how to get a
token</li>
<li><a href="/healthz">/healthz</a> and <a href="/readyz">/readyz</a>: health, and each
source's state</li>
</ul>
</body>
</html>
"""


def _wants_html(request: Request) -> bool:
    """A browser's request: it asks for HTML, and not for (FHIR) JSON."""
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept and "json" not in accept


def _landing() -> Response:
    return Response(
        _LANDING,
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": "default-src 'none'"},  # no script, no style
    )


@router.api_route("/", methods=["GET", "HEAD"])
async def landing() -> Response:
    return _landing()


@router.api_route("/fhir", methods=["GET", "HEAD"])
async def fhir_base(request: Request) -> Response:
    if _wants_html(request):
        return _landing()
    raise FhirError.one(
        404,
        "not-found",
        f"no interaction at the FHIR base itself; {base_url(request)}/metadata says what "
        "this server serves",
    )


@router.get("/openapi.json")
async def openapi(request: Request) -> Response:
    state = request.app.state
    body: bytes | None = getattr(state, "openapi_bytes", None)
    if body is None:
        body = state.openapi_bytes = orjson.dumps(document(request.app))
    return Response(body, media_type="application/json")


@router.get("/docs")
async def docs() -> Response:
    return Response(_PAGE, media_type="text/html; charset=utf-8", headers=_headers())


@router.get("/docs/start.js")
async def start() -> Response:
    return Response(_START, media_type="text/javascript; charset=utf-8", headers=_headers())


@router.get("/docs/{name}")
async def asset(name: str) -> Response:
    media = _ASSETS.get(name)
    if media is None:
        raise FhirError.one(404, "not-found", "no such file of the API's pages")
    return Response(_read(name), media_type=media, headers=_headers())


@cache
def _read(name: str) -> bytes:
    content: bytes = (swagger_ui_path / name).read_bytes()
    return content


def _headers() -> dict[str, str]:
    return {"Content-Security-Policy": _CSP, "Cache-Control": "public, max-age=3600"}
