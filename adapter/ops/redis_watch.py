"""Whether the deployment's Redis answers, said once per outage.

With ``[server] redis_url`` the workers share through Redis what must be shared: export
jobs, vendor budgets, idempotent writes' outcomes, Subscriptions, the change journal. When
it stops answering, whatever notices first (``/readyz``, the export jobs' sweep, the
Subscriptions' rounds, ``check-config --probe``) reports it here: one error line naming
Redis by its address (never its credentials) when the outage begins, one line when it
answers again, however often it is found down in between.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.exceptions

__all__ = ["answers", "is_outage", "ping", "unreachable", "where"]

log = logging.getLogger("fhir_adapter")

PING_SECONDS = 2.0  # a Redis that has not answered a PING by then is taken as down

_down: set[str] = set()  # the Redis addresses found unreachable, until they answer again


def where(client: Any) -> str:
    """A client's Redis as ``host:port/db`` (or its socket's path): no user, no password."""
    kwargs = client.connection_pool.connection_kwargs
    place = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    return f"{place}/{kwargs.get('db', 0)}"


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis could not be reached (rather than that it refused a
    command)."""
    return isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError)


def unreachable(place: str, exc: BaseException) -> None:
    """Redis at ``place`` did not answer: said once, when an outage begins."""
    if place in _down:
        return
    _down.add(place)
    log.error(
        "redis at %s unreachable (%s): export jobs, shared budgets, idempotent writes and "
        "Subscriptions wait for it; said again when it answers",
        place,
        type(exc).__name__,
    )


def answers(place: str) -> None:
    """Redis at ``place`` answered: said once, when an outage ends."""
    if place in _down:
        _down.discard(place)
        log.warning("redis at %s answers again", place)


async def ping(client: Any, seconds: float = PING_SECONDS) -> bool:
    """Whether Redis answers a PING within ``seconds``; an outage is reported."""
    place = where(client)
    try:
        await asyncio.wait_for(client.ping(), seconds)
    except Exception as exc:
        if not (is_outage(exc) or isinstance(exc, TimeoutError | OSError)):
            raise
        unreachable(place, exc)
        return False
    answers(place)
    return True
