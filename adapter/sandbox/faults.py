"""Switchable faults for the sandboxes, and an in-process transport that times out.

Faults are off by default. They act around a sandbox app as ASGI middleware, so they
work the same in-process and on a port:

- ``latency``: seconds added to every answer;
- ``error_rate``: share of requests answered 5xx (``error_status``) before the vendor
  does anything (nothing is committed);
- ``timeout_rate``: share of requests that hang ``hang_seconds`` before being handled,
  so the client's read timeout fires first;
- ``hang_after_commit``: a write (any method but GET) is carried out, then its answer
  hangs: the vendor committed, the client sees a timeout;
- ``malformed_rate``: share of answers whose body is cut short (not JSON);
- ``after_commit``: a write (any method but GET) is carried out, then its answer is
  replaced, as a failing load balancer or a crashing worker of the vendor would:
  ``"500"``, ``"502"`` (the vendor's error body with that status), ``"malformed"`` (its
  success cut short) or ``"drop"`` (the connection is lost: in process, the transport
  raises ``httpx.RemoteProtocolError``); ``after_commit_every`` N: only every Nth write;
- ``expired_token`` (Nyra): every hospital token is refused as expired (401).

Which requests a share hits is drawn from a seeded random generator, so a run repeats.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DROPPED", "FaultMiddleware", "Faults", "SandboxTransport"]

_AFTER_COMMIT = ("", "500", "502", "malformed", "drop")
# The header of an answer the in-process transport turns into a lost connection.
DROPPED = b"x-sandbox-dropped"


@dataclass
class Faults:
    latency: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    timeout_rate: float = 0.0
    hang_after_commit: bool = False
    hang_seconds: float = 30.0
    malformed_rate: float = 0.0
    after_commit: str = ""  # "500" | "502" | "malformed" | "drop": a write's answer, lost
    after_commit_every: int = 1
    expired_token: bool = False  # Nyra: every hospital token is past its time
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("error_rate", "timeout_rate", "malformed_rate"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"fault {name!r} must be a share between 0 and 1")
        if self.after_commit not in _AFTER_COMMIT:
            raise ValueError(f"fault 'after_commit' must be one of {', '.join(_AFTER_COMMIT)}")
        if self.after_commit_every < 1:
            raise ValueError("fault 'after_commit_every' must be at least 1")
        self._rng = random.Random(self.seed)
        self._writes = 0

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> Faults:
        known = {f.name for f in fields(cls) if not f.name.startswith("_")}
        unknown = set(config or {}) - known
        if unknown:
            raise ValueError(f"unknown sandbox fault(s): {', '.join(sorted(unknown))}")
        return cls(**(config or {}))

    def reset(self) -> None:
        """Every fault off again."""
        for f in fields(self):
            if not f.name.startswith("_") and f.name != "seed":
                setattr(self, f.name, f.default)

    def draw(self, share: float) -> bool:
        return share > 0 and self._rng.random() < share

    def lost_answer(self, method: str) -> str:
        """How this request's answer is lost after its write is made ("": it is not)."""
        if not self.after_commit or method == "GET":
            return ""
        self._writes += 1
        return self.after_commit if self._writes % self.after_commit_every == 0 else ""


class FaultMiddleware:
    """Applies :class:`Faults` around an ASGI app; ``error_body(status)`` gives the
    vendor's own error body for a simulated 5xx. ``sleep`` is how added latency and hangs
    wait: a test may replace it with one that records the waits, or never returns, to
    see what was added and what was cut off without timing anything."""

    def __init__(
        self,
        app: ASGIApp,
        faults: Faults,
        error_body: Callable[[int], bytes],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.app = app
        self.faults = faults
        self.error_body = error_body
        self.sleep = sleep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        f = self.faults
        if f.latency:
            await self.sleep(f.latency)
        if f.draw(f.timeout_rate):
            await self.sleep(f.hang_seconds)
        if f.draw(f.error_rate):
            await _send_body(send, f.error_status, self.error_body(f.error_status))
            return
        hang = f.hang_after_commit and scope.get("method") != "GET"
        malformed = f.draw(f.malformed_rate)
        lost = f.lost_answer(str(scope.get("method")))
        if not hang and not malformed and not lost:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        if lost in ("500", "502"):  # made; the answer is the vendor's error
            await _send_body(send, int(lost), self.error_body(int(lost)))
            return
        if lost == "drop":
            await send({"type": "http.response.start", "status": 200, "headers": [(DROPPED, b"1")]})
            await send({"type": "http.response.body", "body": b""})
            return
        malformed = malformed or lost == "malformed"
        if hang:
            await self.sleep(f.hang_seconds)
        for message in held:
            if malformed and message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [(k, v) for k, v in message["headers"] if k != b"content-length"],
                }
            if malformed and message["type"] == "http.response.body":
                message = {**message, "body": _cut(message.get("body", b""))}
            await send(message)


def _cut(body: bytes) -> bytes:
    return body[: len(body) // 2] or b"{"


async def _send_body(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SandboxTransport(httpx.ASGITransport):
    """httpx's ASGI transport, with the request's read timeout enforced as a socket would
    (httpx applies timeouts in its network layer, which an in-process app skips)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = (request.extensions.get("timeout") or {}).get("read")
        if timeout is None:
            return _dropped(await super().handle_async_request(request), request)
        try:
            response = await asyncio.wait_for(super().handle_async_request(request), timeout)
        except TimeoutError:
            raise httpx.ReadTimeout("read timed out", request=request) from None
        return _dropped(response, request)


def _dropped(response: httpx.Response, request: httpx.Request) -> httpx.Response:
    """The answer, or the lost connection the ``drop`` fault stands for."""
    if DROPPED.decode() in response.headers:
        raise httpx.RemoteProtocolError("server disconnected without an answer", request=request)
    return response
