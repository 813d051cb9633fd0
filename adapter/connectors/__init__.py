"""Connectors: one per vendor kind, each owning configured sources (see ``base``)."""

from adapter.connectors.base import (
    Capabilities,
    Connector,
    ConnectorConfigError,
    Page,
    PaginationLoop,
    ResourceCapability,
    ResourceNotFound,
    iterate,
)
from adapter.connectors.registry import available, create_connector

__all__ = [
    "Capabilities",
    "Connector",
    "ConnectorConfigError",
    "Page",
    "PaginationLoop",
    "ResourceCapability",
    "ResourceNotFound",
    "available",
    "create_connector",
    "iterate",
]
