"""The committed OpenAPI document is the one the app generates (``make openapi``)."""

from pathlib import Path

from adapter.openapi import openapi_json

COMMITTED = Path(__file__).parents[2] / "openapi" / "openapi.json"


def test_openapi_document_has_not_drifted():
    assert COMMITTED.read_text(encoding="utf-8") == openapi_json(), (
        "openapi/openapi.json is out of date: run `make openapi` and commit it"
    )


def test_the_served_document_is_the_committed_one():
    """``/openapi.json`` of the embedded default answers the committed document."""
    import asyncio

    import httpx
    import orjson

    from adapter.app import create_app
    from adapter.settings import load_settings

    app = create_app(load_settings(env={}))

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return await c.get("/openapi.json")

    served = asyncio.run(fetch())
    assert served.status_code == 200
    assert served.json() == orjson.loads(COMMITTED.read_bytes())
