"""The address ``serve`` prints (its banner and the demo's token command): one whose Host
the server answers for, also when it listens on every interface."""

from __future__ import annotations

import pytest

from adapter.api.guard import host_policy
from adapter.cli import _answered_origin
from adapter.settings import Settings, load_settings

PORT = 8080


def answers_for(settings: Settings, origin: str, bound: str) -> bool:
    policy = host_policy(settings, (bound, PORT))
    host = origin.split("://", 1)[1]
    return policy is None or policy.allows(host.encode())


@pytest.mark.parametrize("bound", ["0.0.0.0", "::"])
def test_on_every_interface_the_embedded_demo_prints_a_loopback_address(bound):
    settings = load_settings(env={})  # the embedded default, as the image runs it
    origin = _answered_origin(settings, bound, PORT)
    expected = "http://127.0.0.1:8080" if bound == "0.0.0.0" else "http://[::1]:8080"
    assert origin == expected
    assert answers_for(settings, origin, bound)


def test_with_only_a_public_name_trusted_that_name_is_printed():
    settings = Settings(sources={}, trusted_hosts=("*.example.org", "fhir.example.org:*"))
    origin = _answered_origin(settings, "0.0.0.0", PORT)
    assert origin == "http://fhir.example.org:8080"
    assert answers_for(settings, origin, "0.0.0.0")


def test_a_named_address_is_printed_as_it_is():
    settings = load_settings(env={})
    assert _answered_origin(settings, "127.0.0.1", PORT) == "http://127.0.0.1:8080"
    assert _answered_origin(settings, "::1", PORT) == "http://[::1]:8080"
