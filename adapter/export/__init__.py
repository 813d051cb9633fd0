"""Bulk data export (FHIR Bulk Data Access IG v2.0.0): the engine that writes NDJSON
files, the background jobs behind ``$export``, and where jobs are kept."""

from adapter.export.engine import ExportState, manifest, run_export
from adapter.export.jobs import ExportRunner

__all__ = ["ExportRunner", "ExportState", "manifest", "run_export"]
