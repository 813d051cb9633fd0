"""A NyraAI External Hospital API simulator (``../shared/vendors/nyra.md``).

One hospital. Enforced as the contract says: the three locks (``x-api-key``,
``x-api-secret``, ``Authorization: Bearer <hospital token>``) with 401 for any wrong,
missing or expired one; per-key permissions (403 naming the permission); keys locked to a
branch see only that branch; ``{success, data}`` envelopes; ``page``/``limit`` paging with
``limit`` capped at 100; and per-key rate limits (12 per second, 60 per minute, fixed
windows, settings so tests can scale time down) with ``X-RateLimit-Limit``,
``-Remaining`` and ``-Reset`` on every answer and 429 + ``Retry-After`` past them.

Where the contract is silent, this simulator chooses (and the connector must not rely on
more): requests are counted against the presented API key before its secret and token
are checked, 429s included; lists keep insertion order; a booking must fall inside the
doctor's weekly availability, on a time no active appointment of that doctor holds, and
not in the past; ``PATCH /appointments/:id/status`` accepts any documented status.

Modules: ``keys`` (API keys, permissions, rate limits), ``state`` (records, availability,
issued keys, lookups), ``rules`` (validation, booking, availability, search and paging),
``errors`` (Nyra's error bodies), ``routes`` (the FastAPI app and its gate), ``sandbox``
(:class:`NyraSandbox`, state and app together).
"""

from adapter.sandbox.nyra.keys import ALL_PERMISSIONS, NyraGrant, RateLimits
from adapter.sandbox.nyra.sandbox import NyraSandbox

__all__ = ["ALL_PERMISSIONS", "NyraGrant", "NyraSandbox", "RateLimits"]
