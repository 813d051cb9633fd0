"""The one gate between every consumer and the vendors: source routing, fan-out, merging,
writes, and what may leave for whom.

The public face is :class:`Facade` (every road's one way to a connector: the routes, the
export, the Subscriptions), the typed values it takes and gives (:class:`Caller`,
:class:`SearchResult`, :class:`Written`), and :func:`outcome_of`, the one place an
exception becomes an OperationOutcome.
See ``docs/architecture.md`` for the road of a search and of a write.
"""

from adapter.facade.access import Caller, readable_types
from adapter.facade.failures import outcome_of
from adapter.facade.pacing import Pacer
from adapter.facade.service import Facade, RequestLimits, SearchResult
from adapter.protocol import Page, Written

__all__ = [
    "Caller",
    "Facade",
    "Pacer",
    "Page",
    "RequestLimits",
    "SearchResult",
    "Written",
    "outcome_of",
    "readable_types",
]
