"""The machine's services some tests need, and whether they answer. A test that needs
Redis is skipped, saying so, where it is not running (a laptop); under ``CI=true``, where
it always runs, its absence is a failure, never a quiet skip.

A test keeps what it puts in Redis under a key prefix of its own (:func:`namespace`, the
service's ``[server] redis_prefix``) and deletes only those keys afterwards
(:func:`forget`): it never flushes a database, so test runs, and anything else using the
same server, keep apart."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
import redis

__all__ = ["REDIS_URL", "aforget", "forget", "namespace", "need_redis", "needs_redis", "redis_up"]

REDIS_URL = "redis://127.0.0.1:6379"


def redis_up(url: str = REDIS_URL) -> bool:
    """Whether the Redis server at ``url`` answers a PING within half a second."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def need_redis(url: str = REDIS_URL) -> None:
    """Go on only with the Redis server at ``url``: else skip the test, or under
    ``CI=true`` fail it."""
    if redis_up(url):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, yet no Redis server answers at {url}", pytrace=False)
    pytest.skip(f"needs the Redis server at {url}, which is not answering")


# A mark for a test, a parameter or (as ``pytestmark``) a module that needs Redis:
# conftest.py calls need_redis() before each test so marked.
needs_redis = pytest.mark.needs_redis


def namespace() -> str:
    """A key prefix no other test (or run) uses: give it as ``redis_prefix`` or a store's
    ``namespace``, then :func:`forget` it."""
    return f"test-{uuid.uuid4().hex[:16]}:"


def forget(prefix: str, url: str = REDIS_URL) -> int:
    """Delete every key under ``prefix`` (and nothing else); how many there were."""
    with redis.Redis.from_url(url, socket_connect_timeout=1) as client:
        names = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if names:
            client.delete(*names)
        return len(names)


async def aforget(client: Any, prefix: str) -> int:
    """The same through an asyncio Redis client the test already holds."""
    names = [n async for n in client.scan_iter(match=f"{prefix}*", count=1000)]
    if names:
        await client.delete(*names)
    return len(names)
