"""Fixtures the hostile-input tests share: both sandboxes (``boxes``), a client of the
open app over them (``http``) and every request that app sent a vendor
(``vendor_requests``). A module with an ``http`` of its own uses that one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from hostile import client, open_app, sandboxes


@pytest.fixture
def boxes():
    return sandboxes()


@pytest.fixture
def vendor_requests() -> list[httpx.Request]:
    return []


@pytest.fixture
async def http(boxes, vendor_requests) -> AsyncIterator[httpx.AsyncClient]:
    async with client(open_app(boxes, vendor_requests)) as c:
        yield c
