"""The committed OpenAPI document is the one the app generates (``make openapi``)."""

from pathlib import Path

from adapter.openapi import openapi_json

COMMITTED = Path(__file__).parents[2] / "openapi" / "openapi.json"


def test_openapi_document_has_not_drifted():
    assert COMMITTED.read_text(encoding="utf-8") == openapi_json(), (
        "openapi/openapi.json is out of date: run `make openapi` and commit it"
    )
