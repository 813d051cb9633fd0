"""The OpenAPI document of the embedded default, as committed in ``openapi/openapi.json``
(``make openapi``); the running service serves its own at ``/openapi.json``, made the
same way (:mod:`adapter.api.openapi`)."""

from __future__ import annotations

import orjson

from adapter.api.openapi import document
from adapter.app import create_app
from adapter.settings import load_settings

__all__ = ["openapi_json"]


def openapi_json() -> str:
    """Deterministic text: sorted keys, two-space indent, a final newline."""
    app = create_app(load_settings(env={}))
    return (
        orjson.dumps(document(app), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        + "\n"
    )
