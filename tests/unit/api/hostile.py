"""The apps the hostile-input tests send to: both sandboxes with the facade over them,
in-process, and a client that checks every answer on the way (not 2xx under ``/fhir``
means an R4 OperationOutcome)."""

from __future__ import annotations

import httpx
from fhir.resources.R4B.operationoutcome import OperationOutcome
from harness import FAST

from adapter.app import create_app
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings

__all__ = [
    "CONFIG",
    "JSON",
    "LEYR",
    "NYRA",
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


def sandboxes() -> dict[str, LeyrSandbox | NyraSandbox]:
    return {
        LEYR: LeyrSandbox(seed=3, patients=20),
        NYRA: NyraSandbox(seed=3, patients=20, limits=FAST),
    }


def open_app(boxes: dict[str, LeyrSandbox | NyraSandbox]):
    sources = {
        name: {**CONFIG[name], **box.defaults(), "retry": {"attempts": 1}}
        for name, box in boxes.items()
    }
    settings = Settings(open_access=True, sources=sources, cursor_key=b"c" * 32)
    return create_app(settings, transports={n: b.transport() for n, b in boxes.items()})


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
