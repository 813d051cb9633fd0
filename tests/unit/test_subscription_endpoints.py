"""Where a notification goes: the endpoint's name is resolved once, judged, and the POST
goes to that very address, with the name kept as the Host header and the TLS server name,
so that a name which resolves elsewhere a moment later cannot redirect it."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest

from adapter.fhir.outcome import FhirError
from adapter.subscriptions.model import Target, check_endpoint
from adapter.subscriptions.poller import SubscriptionPoller


class Resolver:
    """``getaddrinfo`` answering from a table: the first lookup of a name, then another."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: Any, **kwargs: Any) -> list[Any]:
        self.asked.append(host)
        addresses = self.answers[host]
        address = addresses.pop(0) if len(addresses) > 1 else addresses[0]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]


@pytest.fixture
def resolver(monkeypatch):
    made = Resolver({"crm.example.org": ["93.184.216.34"]})
    loop = asyncio.new_event_loop()
    monkeypatch.setattr(loop, "getaddrinfo", made)
    yield made, loop
    loop.close()


def test_a_public_name_is_pinned_to_the_address_judged(resolver):
    made, loop = resolver
    target = loop.run_until_complete(check_endpoint("https://crm.example.org/hook?x=1", ()))
    assert target == Target(
        "https://93.184.216.34:443/hook?x=1", "crm.example.org", "crm.example.org"
    )
    assert made.asked == ["crm.example.org"]


def test_a_port_is_kept_in_the_host_header(resolver):
    _, loop = resolver
    target = loop.run_until_complete(check_endpoint("https://crm.example.org:8443/h", ()))
    assert target == Target(
        "https://93.184.216.34:8443/h", "crm.example.org:8443", "crm.example.org"
    )


def test_a_name_that_now_resolves_to_a_private_address_is_refused(resolver):
    made, loop = resolver
    made.answers["crm.example.org"] = ["10.0.0.7"]
    with pytest.raises(FhirError) as refused:
        loop.run_until_complete(check_endpoint("https://crm.example.org/hook", ()))
    assert refused.value.issues[0].expression == ("Subscription.channel.endpoint",)


def test_an_allowed_endpoint_is_called_as_written():
    target = asyncio.run(check_endpoint("http://127.0.0.1:9009/hook", ("http://127.0.0.1:*",)))
    assert target == Target("http://127.0.0.1:9009/hook")


def test_the_notification_goes_to_the_address_judged_under_its_name(resolver, monkeypatch):
    made, loop = resolver
    sent: list[httpx.Request] = []

    def take(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    poller = SubscriptionPoller.__new__(SubscriptionPoller)
    poller.allowed = ()
    poller.base_url = "https://fhir.example.org/fhir"
    poller._http = httpx.AsyncClient(transport=httpx.MockTransport(take))
    record = {
        "resource": {
            "channel": {
                "endpoint": "https://crm.example.org/hook",
                "payload": "application/fhir+json",
                "header": ["Authorization: Bearer s3cret"],
            }
        }
    }
    # Between the Subscription's check and this delivery the name moved to a private
    # address: the delivery judges it again, and refuses.
    made.answers["crm.example.org"] = ["10.0.0.7"]
    error = loop.run_until_complete(poller._deliver(record, []))
    assert error == "the endpoint now resolves to an address that may not be called"
    assert sent == []
    made.answers["crm.example.org"] = ["93.184.216.34"]
    assert loop.run_until_complete(poller._deliver(record, [])) is None
    (request,) = sent
    assert str(request.url) == "https://93.184.216.34/hook"  # 443: the default, not written
    assert request.headers["host"] == "crm.example.org"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.extensions["sni_hostname"] == "crm.example.org"
    loop.run_until_complete(poller._http.aclose())
