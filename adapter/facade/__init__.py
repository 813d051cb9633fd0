"""Between the routes and the connectors: source routing, fan-out, merging, writes.

The public face is :class:`Facade` (every route's one way to a connector), the typed
values it takes and gives (:class:`Caller`, :class:`SearchResult`, :class:`Written`),
and :func:`outcome_of`, the one place an exception becomes an OperationOutcome.
See ``docs/architecture.md`` for the road of a search and of a write.
"""

from adapter.connectors.base import Written
from adapter.facade.failures import outcome_of
from adapter.facade.service import Caller, Facade, RequestLimits, SearchResult

__all__ = ["Caller", "Facade", "RequestLimits", "SearchResult", "Written", "outcome_of"]
