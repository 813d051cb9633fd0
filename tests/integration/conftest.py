"""Fixtures the over-HTTP tests share: both sandboxes with the facade over them on a
loopback port (``world``, ``served``; defined beside the write tests)."""

from test_writes import served, world  # noqa: F401
