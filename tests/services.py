"""The machine's services some tests need, and whether they answer: such a test is
skipped, saying which service it needs, rather than left to hang."""

from __future__ import annotations

import redis

__all__ = ["redis_up"]


def redis_up(url: str) -> bool:
    """Whether the Redis server at ``url`` answers a PING within half a second."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False
