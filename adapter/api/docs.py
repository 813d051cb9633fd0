"""The API's own description: ``/openapi.json`` (the document :mod:`adapter.api.openapi`
makes, the same as ``openapi/openapi.json`` for the embedded default) and Swagger UI at
``/docs``, its script and styles served from this service (the ``swagger-ui-bundle-v2``
package), no CDN, under a Content-Security-Policy that allows only this origin and no
inline script."""

from __future__ import annotations

from functools import cache

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

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
