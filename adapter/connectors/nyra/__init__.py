"""NyraAI (https://docs.nyraai.io): a hospital-scoped external API with per-key limits."""

from adapter.connectors.nyra.connector import NyraConnector

__all__ = ["NyraConnector"]
