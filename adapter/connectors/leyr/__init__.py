"""Leyr (https://docs.leyr.io): a unified API over Nordic EHRs, addressed by EHR code."""

from adapter.connectors.leyr.connector import LeyrConnector

__all__ = ["LeyrConnector"]
