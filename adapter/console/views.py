"""What each console page shows, gathered from the service's own state: never a vendor
call, never a patient's data (no resource, search value, criteria, id of a record or
diagnostics text), never a secret.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from adapter.auth.scopes import format_scopes
from adapter.console.chart import Series, line_chart
from adapter.export.engine import ExportState
from adapter.export.jobs import ExportRunner
from adapter.facade import Facade
from adapter.fhir.outcome import FhirError
from adapter.ops.activity import MINUTES, Figures
from adapter.settings import Settings
from adapter.subscriptions import SubscriptionPoller
from adapter.transport.client import VendorClient

__all__ = [
    "charts",
    "clients",
    "configuration",
    "exports",
    "is_job_id",
    "mask_endpoint",
    "requeue",
    "sources",
    "subscriptions",
    "when",
]

_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SUB_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_SECRET_WORDS = ("secret", "password", "token", "key", "credential", "private", "redis_url")
REDACTED = "(redacted)"


def sources(facade: Facade, settings: Settings) -> list[dict[str, Any]]:
    """Each source: its state, its circuit, and each key by index: calls in each
    window against the limit, 429s; the requests waiting for its keys; and, where it has
    a budget, each lane's share, waiting calls and state."""
    out = []
    for name, connector in facade.connectors.items():
        row: dict[str, Any] = {
            "name": name,
            "connector": str(settings.sources.get(name, {}).get("connector", "")),
            "state": connector.health(),
            "circuit": "-",
            "failing": False,
            "queue": 0,
            "keys": [],
            "lanes": {},
        }
        client = getattr(connector, "client", None)
        if isinstance(client, VendorClient):
            row["circuit"] = client.circuit.state
            row["failing"] = client.circuit.failing
            row["queue"] = client.pool.waiting
            row["keys"] = client.pool.usage()
            row["lanes"] = client.pool.lane_states() if client.pool.limits else {}
        out.append(row)
    return out


def _minute_label(minute: int) -> str:
    return time.strftime("%H:%M", time.gmtime(minute * 60))


def charts(figures: Figures, now: float, source_names: list[str]) -> tuple[str, str]:
    """The SVG charts of the last hour: vendor calls per minute (a line per source) and
    the answers' mean and longest time per minute."""
    last = int(now // 60)
    minutes = list(range(last - MINUTES + 1, last + 1))
    labels = {i: _minute_label(m) for i, m in enumerate(minutes) if i % 15 == 0 or m == last}
    rows = [figures.minutes.get(m, {}) for m in minutes]
    calls = [
        Series(name, [row.get(f"calls:{name}", 0.0) for row in rows], f"series-{i % 6}")
        for i, name in enumerate(source_names)
    ]
    mean = [row["answer_ms"] / row["answers"] if row.get("answers") else None for row in rows]
    longest = [row.get("answer_max_ms") if row.get("answers") else None for row in rows]
    latency = [Series("mean", mean, "series-0")]
    if any(v is not None for v in longest):
        latency.append(Series("longest", longest, "series-1"))
    return (
        line_chart("Vendor calls per minute", "calls / min", calls, labels),
        line_chart("Answer time per minute", "ms", latency, labels),
    )


def clients(settings: Settings, figures: Figures) -> list[dict[str, Any]]:
    names = sorted(set(settings.clients) | set(figures.clients))
    empty = {"requests": 0, "401": 0, "403": 0, "429": 0, "tokens": 0}
    return [{"name": name, **empty, **figures.clients.get(name, {})} for name in names]


async def exports(runner: ExportRunner) -> list[dict[str, Any]]:
    """Every export job kept: its client, status, and how far its parts are."""
    out = []
    for job_id in sorted(await runner.store.ids()):
        job = await runner.store.get(job_id)
        if job is None:
            continue
        state = ExportState.from_json(job["state"])
        done = sum(1 for part in state.parts if part.done)
        out.append(
            {
                "id": job_id,
                "client": job.get("client") or "-",
                "status": job.get("status", "?"),
                "created": when(job.get("created")),
                "parts_done": done,
                "parts": len(state.parts),
                "records": sum(part.written for part in state.parts),
                "percent": round(100 * done / len(state.parts)) if state.parts else 100,
                "running": job_id in runner.running,
            }
        )
    return out


def is_job_id(text: str) -> bool:
    return _JOB_ID.fullmatch(text) is not None


def mask_endpoint(endpoint: str) -> str:
    """Where notifications go, as far as the host: ``https://hooks.example.org/…``."""
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "…"
    return f"{parts.scheme}://{host}{port}/…"


async def subscriptions(poller: SubscriptionPoller) -> list[dict[str, Any]]:
    """Every Subscription: owner, status, failures in a row, the last event number
    (topic-based) and its endpoint masked; never its criteria (they may name a patient)."""
    out = []
    for record in await poller.store.all():
        resource = record.get("resource") or {}
        sub_id = str(resource.get("id", ""))
        topic = record.get("topic")
        out.append(
            {
                "id": sub_id,
                "owner": record.get("owner") or "-",
                "status": resource.get("status", "?"),
                "kind": "topic" if topic else "criteria",
                "failures": int(record.get("failures") or 0),
                "events": await poller.store.counted(sub_id) if topic else None,
                "endpoint": mask_endpoint(str((resource.get("channel") or {}).get("endpoint"))),
            }
        )
    return sorted(out, key=lambda row: (row["status"] != "error", row["id"]))


async def requeue(poller: SubscriptionPoller, sub_id: str) -> None:
    """Set a Subscription in ``error`` back to ``requested`` (its queue, event log and
    count kept: delivery resumes from where it failed, after a new handshake), as an
    update by its owner would. 404 for no such Subscription, 409 for one not in
    ``error`` or whose delivery is under way."""
    lease = f"subscription.{sub_id}"
    if not _SUB_ID.fullmatch(sub_id) or await poller.store.get(sub_id) is None:
        raise FhirError.one(404, "not-found", "no such Subscription")
    if not await poller.store.lease(lease, 120.0):
        raise FhirError.one(409, "conflict", "a delivery to this Subscription is under way")
    try:
        record = await poller.store.get(sub_id)
        if record is None:
            raise FhirError.one(404, "not-found", "no such Subscription")
        resource = record["resource"]
        if resource.get("status") != "error":
            raise FhirError.one(409, "conflict", "only a Subscription in error is set back")
        resource["status"] = "requested"
        resource.pop("error", None)
        record.update(failures=0, next_at=0)
        await poller.store.update(record)
    finally:
        await poller.store.release(lease)
    poller.nudge()


def when(epoch: Any) -> str:
    """An epoch time as the console shows it (UTC, to the second)."""
    if not isinstance(epoch, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _redacted(value: Any, name: str = "") -> Any:
    secret = any(word in name.lower() for word in _SECRET_WORDS)
    if secret and not isinstance(value, int | float):  # a count of keys is no secret
        return REDACTED
    if isinstance(value, Mapping):
        return {k: _redacted(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v, name) for v in value]
    return value


def configuration(settings: Settings, loaded: float) -> dict[str, Any]:
    """The configuration in force, secrets redacted: every key whose name says secret,
    password, token, key or credential, the Redis URL (it may hold a password), and the
    clients' and operators' secrets (only their names, scopes and sources are shown)."""
    server = {
        "public_base_url": settings.public_base_url,
        "trusted_hosts": list(settings.trusted_hosts),
        "forwarded_allow_ips": list(settings.forwarded_allow_ips),
        "redis_url": REDACTED if settings.redis_url else None,
        "request_seconds": settings.request_seconds,
        "max_vendor_calls": settings.max_vendor_calls,
        "cache_mb": settings.cache_mb,
        "default_count": settings.default_count,
        "max_count": settings.max_count,
        "token_minutes": settings.token_minutes,
        "open_access": settings.open_access,
        "audit_ndjson": settings.audit_ndjson,
        "log_format": settings.log_format,
    }
    return {
        "origin": settings.origin,
        "loaded": when(loaded),
        "tables": {
            "server": server,
            "sources": {name: _redacted(dict(source)) for name, source in settings.sources.items()},
            "clients": {
                name: {
                    "scopes": format_scopes(client.scopes),
                    "sources": sorted(client.sources) or "all",
                    "secret": REDACTED,
                }
                for name, client in settings.clients.items()
            },
            "operators": {name: {"password_hash": REDACTED} for name in settings.operators},
            "export": {
                "dir": settings.export.dir,
                "keep_hours": settings.export.keep_hours,
                "budget_share": settings.export.budget_share,
            },
            "subscriptions": {
                "poll_seconds": settings.subscriptions.poll_seconds,
                "max_failures": settings.subscriptions.max_failures,
                "allowed_endpoints": list(settings.subscriptions.allowed_endpoints),
            },
            "telemetry": {"otlp_endpoint": settings.otlp_endpoint},
        },
    }
