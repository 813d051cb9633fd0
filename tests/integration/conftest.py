"""Fixtures the over-HTTP tests share: both sandboxes with the facade over them
(``world``, :class:`worlds.World`) and a client of it on a loopback port (``served``)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fhir_check import check_response
from serving import on_a_port
from worlds import World


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def served(world: World) -> Iterator[httpx.Client]:
    """A client of ``world``'s facade over HTTP; every answer is checked on the way."""
    with (
        on_a_port(world.app) as base,
        httpx.Client(
            base_url=f"{base}/fhir", timeout=30, event_hooks={"response": [check_response]}
        ) as client,
    ):
        yield client
