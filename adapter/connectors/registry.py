"""Connectors are plug-ins: found under the entry-point group ``fhir_adapter.connectors``.

A third party's connector installs as a package declaring, in its ``pyproject.toml``::

    [project.entry-points."fhir_adapter.connectors"]
    acme = "acme_fhir.connector:AcmeConnector"

and is then configured by name (``connector = "acme"``). The object named must offer
``from_config(source, config, *, transport=None) -> Connector``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib.metadata import entry_points
from typing import Any

import httpx

from adapter.connectors.base import Connector, ConnectorConfigError

__all__ = ["GROUP", "available", "connector_class", "create_connector"]

GROUP = "fhir_adapter.connectors"


@cache
def available() -> dict[str, Any]:
    """Registered connector names and their entry points (loaded lazily)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def connector_class(name: str) -> Any:
    try:
        return available()[name].load()
    except KeyError:
        known = ", ".join(sorted(available())) or "none"
        raise ConnectorConfigError(f"unknown connector {name!r} (registered: {known})") from None


def create_connector(
    source: str,
    config: Mapping[str, Any],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Connector:
    """The connector for one configured source (``config["connector"]`` names its kind)."""
    name = config.get("connector")
    if not isinstance(name, str):
        raise ConnectorConfigError(f"source {source!r}: 'connector' is required")
    # What a plug-in's from_config gives is a Connector by contract (see above), unchecked.
    connector: Connector = connector_class(name).from_config(source, config, transport=transport)
    return connector
