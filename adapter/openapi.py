"""The facade's OpenAPI document, as committed in ``openapi/openapi.json``."""

from __future__ import annotations

import orjson

from adapter.app import create_app
from adapter.settings import load_settings

__all__ = ["openapi_json"]


def openapi_json() -> str:
    """Deterministic text: sorted keys, two-space indent, a final newline."""
    app = create_app(load_settings(env={}))
    document = app.openapi()
    # Every route answers errors as OperationOutcomes (declared per route), never
    # FastAPI's own 422 validation body.
    for path in document.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    if not schemas:
        document.pop("components", None)
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
