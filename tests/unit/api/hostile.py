"""The apps the hostile-input tests send to: both sandboxes with the facade over them,
in-process, and a client that checks every answer on the way (not 2xx under ``/fhir``
means an R4 OperationOutcome)."""

from __future__ import annotations

import httpx
from fhir.resources.R4B.operationoutcome import OperationOutcome
from harness import FAST

from adapter.api.writes import MAX_DEPTH
from adapter.app import create_app
from adapter.fhir.params import MAX_SEARCH_CHARACTERS, MAX_TEXT_CHARACTERS, MAX_VALUES
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings

__all__ = [
    "CONFIG",
    "JSON",
    "LARGEST_SEARCH",
    "LARGE_PREFER",
    "LEYR",
    "MEGABYTE_OF_NESTING",
    "NYRA",
    "Recording",
    "checked",
    "client",
    "open_app",
    "outcome",
    "refused",
    "sandboxes",
]

LEYR, NYRA = "leyr-a", "nyra-b"
CONFIG = {
    LEYR: {"connector": "leyr", "timezone": "Europe/Stockholm", "emr": "webdoc"},
    NYRA: {"connector": "nyra", "timezone": "Asia/Kolkata"},
}
JSON = {"content-type": "application/fhir+json"}

# Inputs the tests send and bench/bench_hostile.py times.
# Every bound of a search at once, with text that folds long (é folds into two).
LARGEST_SEARCH = [
    ("name:contains", "é" * (MAX_TEXT_CHARACTERS // 2 - 5)),
    ("identifier", ",".join(f"s|{i:06d}" for i in range(MAX_VALUES - 20))),
    *(("birthdate", f"ne19{i:02d}") for i in range(19)),
]
assert sum(len(value) for _, value in LARGEST_SEARCH) <= MAX_SEARCH_CHARACTERS
# 7,000 arrays each nested to the limit, inside one more: under a megabyte, too deep.
MEGABYTE_OF_NESTING = (
    b'{"resourceType": "Patient", "x": ['
    + b",".join([b"[" * MAX_DEPTH + b"]" * MAX_DEPTH] * 7000)
    + b"]}"
)
# A thousand preferences, the one that matters last.
LARGE_PREFER = ", ".join(["respond-async"] * 1000) + ", handling=strict"


def sandboxes() -> dict[str, LeyrSandbox | NyraSandbox]:
    return {
        LEYR: LeyrSandbox(seed=3, patients=20),
        NYRA: NyraSandbox(seed=3, patients=20, limits=FAST),
    }


class Recording(httpx.AsyncBaseTransport):
    """A sandbox's transport that adds every request reaching the vendor to ``sent``."""

    def __init__(self, inner: httpx.AsyncBaseTransport, sent: list[httpx.Request]) -> None:
        self.inner = inner
        self.sent = sent

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self.inner.handle_async_request(request)


def open_app(boxes: dict[str, LeyrSandbox | NyraSandbox], sent: list[httpx.Request] | None = None):
    """The open app over ``boxes``; every request reaching a vendor is added to ``sent``,
    when given."""
    sources = {
        name: {**CONFIG[name], **box.defaults(), "retry": {"attempts": 1}}
        for name, box in boxes.items()
    }
    settings = Settings(open_access=True, sources=sources, cursor_key=b"c" * 32)
    transports: dict[str, httpx.AsyncBaseTransport] = {n: b.transport() for n, b in boxes.items()}
    if sent is not None:
        transports = {n: Recording(t, sent) for n, t in transports.items()}
    return create_app(settings, transports=transports)


async def checked(response: httpx.Response) -> None:
    await response.aread()
    if response.is_success or not response.request.url.path.startswith("/fhir"):
        return
    OperationOutcome.model_validate(response.json())


def client(app, address: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 40000)),
        base_url="http://fhir.test",
        event_hooks={"response": [checked]},
    )


def outcome(response: httpx.Response) -> dict:
    body = response.json()
    OperationOutcome.model_validate(body)
    return body


def refused(response: httpx.Response, status: int, expression: str | None = None) -> dict:
    """The one issue of a refusal with ``status``, naming ``expression`` if given."""
    assert response.status_code == status, response.text[:300]
    (issue,) = outcome(response)["issue"]
    if expression is not None:
        assert issue["expression"] == [expression]
    return issue
