"""The operator's console log and the audit trail: two sinks, set up once per process by
:func:`configure`.

Console (logger ``fhir_adapter`` and its children, standard error): one JSON object per
line, for people and log shippers alike. What it says is safe to show to whoever runs the
service: counts, states, route templates, never a search value, an id or a secret. With
tracing on (:mod:`adapter.ops.telemetry`), a line written within a trace carries its
``trace_id``.

- ``{"event": "request", ...}``, one per ``/fhir`` request (:func:`log_request`): method,
  route template (``/fhir/{type}``, never the query string: it holds search values),
  interaction, type, status, duration_ms, client, sources, and ``count``, how many ids the
  request touched (the ids themselves are the audit trail's).
- ``{"event": "vendor_failure", ...}`` (:func:`log_vendor_failure`): source, status, kind.
- ``{"event": "message", "message": ...}``: any other record of those loggers. Their
  messages are written to quote no patient data; an exception is shown by its type only,
  since its text and traceback may quote some.

Audit trail (logger ``fhir_adapter.audit``, :func:`write_audit`): one record per
``/fhir`` request with every id touched, and one per Subscription notification sent (its
client, Subscription, and how many resources of each type), so it never mixes with the
console. It goes to the AuditEvent NDJSON file when ``[server] audit_ndjson`` names one
(:func:`open_audit_ndjson`), and to standard output, one JSON object a line, only when
``[server] audit_stdout = true``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import IO, Any, TextIO

import orjson

from adapter.ops import telemetry

__all__ = [
    "AUDIT_LOGGER",
    "LOGGER",
    "JsonLines",
    "PlainLines",
    "configure",
    "log_request",
    "log_vendor_failure",
    "open_audit_ndjson",
    "write_audit",
]

LOGGER = "fhir_adapter"
AUDIT_LOGGER = "fhir_adapter.audit"

log = logging.getLogger(LOGGER)
audit_log = logging.getLogger(AUDIT_LOGGER)


class JsonLines(logging.Formatter):
    """A record as one JSON object: time (UTC), level, logger, then the event's fields
    (records made here) or ``event: message`` and the message (any other record)."""

    _second = -1
    _prefix = ""

    def format(self, record: logging.LogRecord) -> str:
        created = record.created
        second = int(created)
        if second != self._second:  # a line per request: format the date once a second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        line: dict[str, Any] = {
            "at": f"{self._prefix}.{int(created * 1000) % 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        else:
            line["event"] = "message"
            line["message"] = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__
        trace_id = telemetry.trace_id()
        if trace_id is not None:
            line["trace_id"] = trace_id
        return orjson.dumps(line, default=str).decode()


class PlainLines(JsonLines):
    """The same fields as ``key=value`` pairs after the time and level, for a person
    reading a terminal (``[server] log_format = "text"``)."""

    def format(self, record: logging.LogRecord) -> str:
        line = orjson.loads(super().format(record))
        head = f"{line.pop('at')} {line.pop('level').upper():7} {line.pop('logger')}"
        return head + "".join(f" {k}={v}" for k, v in line.items())


class _OpsHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler :func:`configure` installed (and so may replace when called again)."""


def configure(
    settings: Any,
    *,
    console: TextIO | None = None,
    audit_stream: TextIO | None = None,
) -> None:
    """Both sinks for this process; call it once per process before serving (again, it
    replaces what it installed before, nothing else). ``settings.audit_stdout`` (default
    false) sends the audit trail to standard output. ``console`` and ``audit_stream``
    default to standard error and standard output."""
    plain = getattr(settings, "log_format", "json") == "text"
    _install(log, _OpsHandler(console or sys.stderr), PlainLines() if plain else JsonLines())
    audit = logging.getLogger(AUDIT_LOGGER)
    # Never up to the console's handler: audit records carry every id.
    audit.propagate = False
    if getattr(settings, "audit_stdout", False):
        _install(audit, _OpsHandler(audit_stream or sys.stdout), logging.Formatter("%(message)s"))
    else:
        _remove_ours(audit)
        # Disabled, so the guard skips building records no one reads (the NDJSON file,
        # when configured, is written regardless).
        audit.setLevel(logging.WARNING)


def open_audit_ndjson(settings: Any) -> IO[bytes] | None:
    """The AuditEvent NDJSON file ``settings.audit_ndjson`` names, opened for appending
    (the caller closes it), or None."""
    path = getattr(settings, "audit_ndjson", None)
    return open(path, "ab") if path else None


def log_request(
    *,
    method: str,
    route: str,
    interaction: str,
    resource_type: str,
    status: int,
    duration_ms: float,
    client: str | None,
    sources: Iterable[str],
    count: int,
) -> None:
    """One ``/fhir`` request on the console. ``route`` is the path's template, never the
    path or query as sent."""
    if not log.isEnabledFor(logging.INFO):
        return
    fields = {
        "event": "request",
        "method": method,
        "route": route,
        "interaction": interaction,
        "type": resource_type,
        "status": status,
        "duration_ms": duration_ms,
        "client": client,
        "sources": sorted(sources),
        "count": count,
    }
    # Made and handled directly: ``log.info`` would also look up the caller's frame, a
    # cost paid on every request for a place no line shows.
    record = log.makeRecord(LOGGER, logging.INFO, "", 0, "request", (), None)
    record.fields = fields
    log.handle(record)


def log_vendor_failure(source: str, status: int | str | None, kind: str) -> None:
    """A vendor call that failed: ``status`` is the vendor's HTTP status (or ``timeout``,
    ``error``, None), ``kind`` a fixed word for what went wrong (``rate_limited``,
    ``credentials``, ``unavailable``, ...). Never a vendor's body or message: those may
    quote patient data."""
    fields = {"event": "vendor_failure", "source": source, "status": status, "kind": kind}
    log.warning("vendor failure", extra={"fields": fields})


def _install(
    logger: logging.Logger, handler: logging.Handler, formatter: logging.Formatter
) -> None:
    _remove_ours(logger)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the line is written here; not again by the root's handlers


def _remove_ours(logger: logging.Logger) -> None:
    for handler in [h for h in logger.handlers if isinstance(h, _OpsHandler)]:
        logger.removeHandler(handler)


def write_audit(record: dict[str, Any], audit_file: IO[bytes] | None) -> None:
    """One audit record: to the audit logger (one JSON object), and to ``audit_file`` (the
    AuditEvent NDJSON file, when one is kept) as a FHIR R4 AuditEvent."""
    if audit_log.isEnabledFor(logging.INFO):
        audit_log.info(orjson.dumps(record).decode())
    if audit_file is not None:
        audit_file.write(orjson.dumps(audit_event(record)) + b"\n")
        audit_file.flush()


def audit_event(record: dict[str, Any]) -> dict[str, Any]:
    """The record as a FHIR R4 AuditEvent (https://hl7.org/fhir/R4/auditevent.html): a
    RESTful interaction, or a notification sent (DICOM's "Export": data leaving)."""
    action = {"create": "C", "read": "R", "search": "E", "update": "U", "delete": "D"}
    outcome = "0" if record["status"] < 400 else ("4" if record["status"] < 500 else "8")
    notify = record.get("event") == "subscription.notify"
    kind = (
        {
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110106",
            "display": "Export",
        }
        if notify
        else {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        }
    )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": kind,
        "action": "R" if notify else action.get(record["interaction"] or "", "E"),
        "recorded": record["at"],
        "outcome": outcome,
        "agent": [{"who": {"display": record["client"] or "anonymous"}, "requestor": True}],
        "source": {"observer": {"display": "fhir-adapter"}},
    }
    if record["interaction"] and not notify:
        event["subtype"] = [
            {"system": "http://hl7.org/fhir/restful-interaction", "code": record["interaction"]}
        ]
    entities: list[dict[str, Any]] = [
        {"what": {"reference": f"{record['type']}/{i}"}} for i in record["ids"][:50]
    ]
    if notify:
        entities = [
            {
                "what": {"reference": f"Subscription/{record['subscription']}"},
                "detail": [
                    {"type": resource_type, "valueString": str(count)}
                    for resource_type, count in sorted(record["counts"].items())
                ],
            }
        ]
    if entities:
        event["entity"] = entities
    return event
