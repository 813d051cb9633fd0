"""Fixtures the hostile-input tests share: both sandboxes (``boxes``) and a client of the
open app over them (``http``). A module with an ``http`` of its own uses that one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from hostile import client, open_app, sandboxes


@pytest.fixture
def boxes():
    return sandboxes()


@pytest.fixture
async def http(boxes) -> AsyncIterator[httpx.AsyncClient]:
    async with client(open_app(boxes)) as c:
        yield c
