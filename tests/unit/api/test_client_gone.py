"""A read whose client disconnects is cancelled, with the vendor call it waits on: the
request costs nobody's budget once nobody waits for it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from adapter.app import create_app
from adapter.settings import Settings

pytestmark = pytest.mark.anyio


class Hanging(httpx.AsyncBaseTransport):
    """A vendor that never answers; says when it was called and when the call ended."""

    def __init__(self) -> None:
        self.called = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.called.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("unreachable")


def _app(vendor: httpx.AsyncBaseTransport):
    source = {
        "connector": "nyra",
        "base_url": "http://nyra.test",
        "timezone": "Asia/Kolkata",
        "keys": [{"key": "nyra_k", "secret": "s", "token": "t"}],
    }
    settings = Settings(open_access=True, sources={"nyra-h": source}, cursor_key=b"c" * 32)
    return create_app(settings, transports={"nyra-h": vendor})


async def _call(app, method: str, path: str, gone: asyncio.Event) -> list[dict]:
    sent: list[dict] = []
    first = True

    async def receive() -> dict:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"fhir.test")],
        "client": ("127.0.0.1", 5000),
        "server": ("fhir.test", 80),
    }
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("path", ["/fhir/Patient?name=a", "/fhir/Patient/nyra-h.p1"])
async def test_a_read_whose_client_goes_is_cancelled_with_its_vendor_call(path):
    vendor = Hanging()
    app = _app(vendor)
    gone = asyncio.Event()
    call = asyncio.create_task(_call(app, "GET", path, gone))
    await vendor.called.wait()
    gone.set()  # the client disconnects while the vendor call hangs
    sent = await asyncio.wait_for(call, 5)
    assert vendor.cancelled.is_set()
    assert sent == []  # nobody to answer


async def test_a_client_that_stays_gets_its_answer_however_long_the_vendor_takes():
    release = asyncio.Event()
    called = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        called.set()
        await release.wait()
        return httpx.Response(404, json={"success": False, "error": "Not Found"})

    app = _app(httpx.MockTransport(slow))
    gone = asyncio.Event()  # never set: the client waits
    call = asyncio.create_task(_call(app, "GET", "/fhir/Patient/nyra-h.p1", gone))
    await called.wait()
    release.set()
    sent = await asyncio.wait_for(call, 5)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 404
