"""Upstream auth: none, a static bearer, SMART Backend Services (RS384 and ES384), with
the token renewed before it expires and a refused token recovered once."""

from __future__ import annotations

import pytest
from fhir_upstream_connector import FhirUpstreamConnector
from fhir_upstream_connector.sandbox import FhirSandbox
from upstream_keys import key_pair

from adapter.fhir.search import SearchRequest
from adapter.transport import AuthenticationRejected

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def smart_world(signing: str, *, clock: Clock, **auth):
    private, public = key_pair(signing)
    sandbox = FhirSandbox(patients=5, auth="smart", public_key=public, clock=clock)
    config = {
        **sandbox.defaults(),
        "connector": "fhir-upstream",
        "auth": {
            "type": "smart",
            "client_id": "facade",
            "private_key": private,
            "algorithm": signing,
            **auth,
        },
    }
    connector = FhirUpstreamConnector.from_config("up", config, transport=sandbox.transport())
    connector.client.http.transport.auth.clock = clock
    return sandbox, connector


def token_calls(sandbox: FhirSandbox) -> int:
    return sum(1 for call in sandbox.calls if call == ("POST", "token"))


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
async def test_smart_backend_services_token_is_obtained_and_renewed(algorithm):
    clock = Clock()
    sandbox, c = smart_world(algorithm, clock=clock)
    try:
        page = await c.search(SearchRequest("Patient", count=5))
        assert len(page.resources) == 5
        await c.search(SearchRequest("Patient", count=2))
        assert token_calls(sandbox) == 1  # the token is kept while it is good
        # 300 s tokens are renewed 30 s early: at 269 s the same, at 271 s a new one.
        clock.now += 269
        await c.search(SearchRequest("Patient", count=1))
        assert token_calls(sandbox) == 1
        clock.now += 2
        await c.search(SearchRequest("Patient", count=1))
        assert token_calls(sandbox) == 2
        assert len(sandbox.assertions) == 2  # each assertion is new (its own jti)
    finally:
        await c.aclose()


async def test_a_refused_token_is_renewed_once_and_the_call_succeeds():
    clock = Clock()
    sandbox, c = smart_world("RS384", clock=clock)
    try:
        await c.search(SearchRequest("Patient", count=1))
        sandbox.expire_tokens()  # the upstream forgets every token it gave
        page = await c.search(SearchRequest("Patient", count=3))
        assert len(page.resources) == 3
        assert token_calls(sandbox) == 2
        assert c.health() == "up"
    finally:
        await c.aclose()


async def test_a_client_the_token_endpoint_refuses_is_an_authentication_error():
    clock = Clock()
    other_private, _ = key_pair("ES384")
    sandbox, c = smart_world(
        "RS384", clock=clock, private_key=other_private, algorithm="ES384"
    )  # signed with a key the upstream does not know
    try:
        with pytest.raises(AuthenticationRejected) as info:
            await c.search(SearchRequest("Patient"))
        text = str(info.value)
        assert "up" in text and "rotated" in text
        assert "PRIVATE KEY" not in text and "BEGIN" not in text
        # The token endpoint was asked once; nothing went to the FHIR API without a token.
        assert sandbox.calls == [("POST", "token")]
    finally:
        await c.aclose()


async def test_a_static_bearer_token_and_no_auth():
    bearer = FhirSandbox(patients=3)
    open_server = FhirSandbox(patients=3, auth="none")
    for sandbox in (bearer, open_server):
        c = FhirUpstreamConnector.from_config(
            "up",
            {"connector": "fhir-upstream", **sandbox.defaults()},
            transport=sandbox.transport(),
        )
        try:
            page = await c.search(SearchRequest("Patient", count=10))
            assert len(page.resources) == 3
        finally:
            await c.aclose()


async def test_a_wrong_bearer_token_names_the_source_not_the_token():
    sandbox = FhirSandbox(patients=3)
    config = {
        "connector": "fhir-upstream",
        **sandbox.defaults(),
        "auth": {"type": "bearer", "token": "tok-not-the-secret"},
    }
    c = FhirUpstreamConnector.from_config("city-ehr", config, transport=sandbox.transport())
    try:
        with pytest.raises(AuthenticationRejected) as info:
            await c.search(SearchRequest("Patient"))
        assert "city-ehr" in str(info.value)
        assert "tok-not-the-secret" not in str(info.value)
    finally:
        await c.aclose()
