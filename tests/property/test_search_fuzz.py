"""Searches with anything in them, against both sandboxes: never a 5xx, never a hang.

The searches are drawn from :mod:`searches`: every search parameter the
CapabilityStatement lists for a type and the result parameters every type takes, with
values of their kind and of no kind at all. Each goes by GET or by a POST ``_search``
form, sometimes with ``Prefer: handling=strict``. Whatever is sent, the answer is a
Bundle or a 4xx OperationOutcome: a bad value is the client's mistake to be told of,
never the server's failure. How long the answers take (no value may buy more than its
share of the event loop) is measured by ``bench/bench_hostile.py`` over the same
searches; here a search that does not end at all fails after a generous safety net.

The app is the embedded default's shape (a Leyr and a Nyra source over in-process
sandboxes, Nyra's rate windows scaled down), with the examples fixed (derandomized) so a
failure shows again on every run.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import httpx
import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from harness import FAST
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from searches import known, searches

from adapter.app import create_app
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings

EXAMPLES = 2000  # searches, over all types; about 30 s on a 2-core machine
SAFETY_NET = 60.0  # seconds: a search still unanswered then is taken to hang


@pytest.fixture(scope="module")
def world():
    """The app over both sandboxes, an event loop to drive it from hypothesis's
    synchronous examples, and references that exist (so some searches find records)."""
    loop = asyncio.new_event_loop()
    sandboxes = {
        "leyr-a": LeyrSandbox(seed=3, patients=40),
        "nyra-b": NyraSandbox(seed=3, patients=40, limits=FAST),
    }
    sources = {
        "leyr-a": {"connector": "leyr", "emr": "webdoc", "retry": {"attempts": 1}},
        "nyra-b": {"connector": "nyra", "retry": {"attempts": 1}},
    }
    for name, sandbox in sandboxes.items():
        sources[name] |= sandbox.defaults()
    settings_ = Settings(open_access=True, sources=sources, cursor_key=b"c" * 32)
    app = create_app(settings_, transports={n: sb.transport() for n, sb in sandboxes.items()})
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fhir.test", timeout=30
    )

    params, references = loop.run_until_complete(known(client))
    yield loop, client, params, references
    loop.run_until_complete(client.aclose())
    loop.run_until_complete(app.state.aclose())
    loop.close()


def _check(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    body = response.json()
    if response.status_code >= 400:
        OperationOutcome.model_validate(body)
    else:
        assert body["resourceType"] == "Bundle" and body["type"] == "searchset", what


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_no_search_is_a_server_error_or_slow(world, data):
    loop, client, params, references = world
    resource_type, items = data.draw(searches(params, references), label="search")
    by_post = data.draw(st.booleans(), label="POST _search")
    headers = {"prefer": "handling=strict"} if data.draw(st.booleans(), label="strict") else {}

    async def ask() -> httpx.Response:
        if by_post:
            form = {"content-type": "application/x-www-form-urlencoded", **headers}
            body = urlencode(items).encode()
            return await client.post(f"/fhir/{resource_type}/_search", content=body, headers=form)
        return await client.get(f"/fhir/{resource_type}", params=items, headers=headers)

    what = f"{'POST' if by_post else 'GET'} {resource_type} {items!r}"
    try:
        response = loop.run_until_complete(asyncio.wait_for(ask(), SAFETY_NET))
    except TimeoutError:
        raise AssertionError(f"{what}: no answer within {SAFETY_NET:g} s") from None
    event(f"{resource_type} {response.status_code}")  # --hypothesis-show-statistics
    _check(response, what)
