"""The gate built from the settings: the one place connectors are made, and sandboxes
wired in (a source with a ``sandbox`` table gets the simulator's transport and
credentials here, above the connectors, which know no simulator).

The server (:mod:`adapter.app`) and the ``export`` command (:mod:`adapter.export_command`)
both call :func:`build_facade`, so that an export run without a server reads the same
sources, through the same connectors, limits and change journal, as the server does.
Nothing else imports a connector module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from adapter.connectors import Connector, ConnectorConfigError
from adapter.connectors.registry import create_connector
from adapter.facade import Facade, RequestLimits
from adapter.fhir.cursor import CursorCodec
from adapter.journal import Journal, journal_for
from adapter.sandbox import sandbox_for
from adapter.settings import Settings

__all__ = ["build_facade", "cache_parts", "connector_for", "journal_of"]


def connector_for(
    name: str, config: Mapping[str, Any], transport: httpx.AsyncBaseTransport | None = None
) -> Connector:
    """The connector of source ``name``. With a ``sandbox`` table the source talks to an
    in-process simulator: its transport (unless one is handed in) and its credentials
    where the configuration gives none."""
    spec = config.get("sandbox")
    if spec is not None:
        try:
            sandbox = sandbox_for(str(config.get("connector")), spec, config)
        except (ValueError, TypeError, OSError) as exc:
            raise ConnectorConfigError(f"source {name!r}: sandbox: {exc}") from None
        config = {**sandbox.defaults(), **config}
        transport = transport or sandbox.transport()
    return create_connector(name, config, transport=transport)


def journal_of(settings: Settings) -> Journal:
    """The change journal of this deployment: in Redis with ``[server] redis_url``, else a
    sqlite file under ``[export] dir`` (made when first used)."""
    return journal_for(settings.redis_url, Path(settings.export.dir), settings.redis_prefix)


def cache_parts(settings: Settings, source: str) -> dict[str, float]:
    """A source's part of ``[server] cache_mb``, in MB, as the source keys that hold it
    (what the source configures itself wins over these).

    Each source takes an equal part. Of it, an eighth goes to its directory and, when its
    read cache keeps answers in this worker (``cache_seconds`` without Redis), another
    eighth to that; the memo of mapped answers takes the rest."""
    part = settings.cache_mb / max(1, len(settings.sources))
    config = settings.sources[source]
    reads = float(config.get("cache_seconds", 0)) > 0 and not settings.redis_url
    directory = part / 8
    read = part / 8 if reads else 0.0
    return {"memo_mb": part - directory - read, "directory_mb": directory, "cache_mb": read}


def build_facade(
    settings: Settings,
    *,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    sources: Iterable[str] | None = None,
    journal: Journal | None = None,
) -> Facade:
    """The gate over the configured sources (or only ``sources``); ``transports`` (source
    -> transport) puts a caller's own vendor behind a source, as tests do. ``journal``:
    the change journal, :func:`journal_of` unless given."""
    transports = transports or {}
    names = list(settings.sources) if sources is None else list(sources)
    connectors = {
        name: connector_for(
            name, {**cache_parts(settings, name), **settings.sources[name]}, transports.get(name)
        )
        for name in names
    }
    read_only = frozenset(n for n in names if settings.sources[n].get("read_only") is True)
    return Facade(
        connectors,
        CursorCodec(settings.cursor_key),
        read_only=read_only,
        limits=RequestLimits(
            settings.default_count,
            settings.max_count,
            settings.request_seconds,
            settings.max_vendor_calls,
        ),
        journal=journal if journal is not None else journal_of(settings),
    )
