"""A rest-hook receiver on loopback, and the Subscription that points at it: what the
Subscription tests, in one process or against ``serve`` workers, are told through."""

from __future__ import annotations

import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

__all__ = ["Receiver", "subscription"]


class Receiver:
    """A rest-hook endpoint on loopback: each POST's headers and body, in a queue; it
    answers ``status``."""

    def __init__(self, wait: float = 5.0) -> None:
        self.wait = wait  # seconds next() waits for a notification, unless told
        self.got: queue.Queue[tuple[dict[str, str], dict[str, Any]]] = queue.Queue()
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = orjson.loads(self.rfile.read(length))
                outer.got.put(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next(self, timeout: float | None = None) -> tuple[dict[str, str], dict[str, Any]]:
        """The next notification; ``queue.Empty`` if none comes within the wait."""
        return self.got.get(timeout=self.wait if timeout is None else timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def subscription(endpoint: str, criteria: str, **channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "CRM sync",
        "criteria": criteria,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "header": ["Authorization: Bearer hook-secret"],
            **channel,
        },
    }
