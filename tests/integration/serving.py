"""An ASGI app served by uvicorn on a loopback port, in a thread of the test's process.

The socket is bound to port 0 (the system picks a free port) and listening before uvicorn
is handed it: no other process can take the port in between, and a client may connect at
once (its connection waits in the backlog until uvicorn accepts it)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

__all__ = ["on_a_port"]


@contextlib.contextmanager
def on_a_port(app: Any, *, stop_seconds: float = 10, **config: Any) -> Iterator[str]:
    """``app`` served on 127.0.0.1 until the block ends; yields its base URL. ``config``:
    more of :class:`uvicorn.Config`. If uvicorn still waits for a connection or a task
    to end after ``stop_seconds``, it is stopped without waiting, so that nothing the app
    started (a poller, an export) outlives the test."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **config))
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[sock]),), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=stop_seconds)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=stop_seconds)
        sock.close()
