"""The connector protocol as the connectors see it: :mod:`adapter.protocol`, whose names
are re-exported here so that a connector imports what it implements from its own
package."""

from adapter.protocol import *  # noqa: F403
from adapter.protocol import __all__ as __all__
