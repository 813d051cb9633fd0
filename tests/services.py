"""The machine's services some tests need, and whether they answer. A test that needs
Redis is skipped, saying so, where it is not running (a laptop); under ``CI=true``, where
it always runs, its absence is a failure, never a quiet skip."""

from __future__ import annotations

import os

import pytest
import redis

__all__ = ["REDIS_URL", "need_redis", "needs_redis", "redis_up"]

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
