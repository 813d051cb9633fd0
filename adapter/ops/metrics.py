"""The service's Prometheus metrics, defined once, and the small functions that record them.

- ``fhir_requests_seconds``, histogram: ``interaction``, ``type``, ``status`` (HTTP code);
- ``vendor_calls_seconds``, histogram: ``source``, ``status`` (the vendor's HTTP code, or
  ``timeout``, ``error``);
- ``vendor_rate_limited_total``, counter: ``source``;
- ``vendor_key_budget_remaining``, gauge: ``source``, ``key`` (a key's public label);
- ``source_circuit_open``, gauge: ``source`` (1 open, 0 closed);
- ``cache_hits_total``, counter: ``source``;
- ``worker_resident_memory_bytes``, gauge: each worker's resident memory (by ``pid`` in
  multiprocess mode), sampled every few seconds and at each scrape;
- ``cache_entries``, ``cache_bytes`` (summed over live workers) and ``cache_limit_bytes``,
  gauges; ``cache_lookups_total`` (``result``: hit, miss) and ``cache_evictions_total``,
  counters: ``cache``, ``source`` (every in-process cache, :mod:`adapter.ops.caches`;
  ``source`` is empty for the service's own tables).

Every label value comes from a bounded set (configured sources and key labels, served
resource types, status codes): a value a client can choose freely would let it grow the
metrics without end, so callers map such values to a fixed word first (the guard does so
for the resource type).

Recording is on the request path, so each function keeps the labelled child it looked up
once per label set (``Metric.labels`` validates and locks on every call).

Several workers (``serve --workers N``) each count their own requests; Prometheus needs
one sum. prometheus-client's multiprocess mode does that: with ``PROMETHEUS_MULTIPROC_DIR``
naming an empty directory in the environment *before the process starts*, each worker
writes its values to files there and :func:`exposition` merges them. The gauges say how
they merge across workers: a key's budget is the lowest any live worker sees (the
cautious figure), a circuit is open if it is open in any live worker. A worker that stops
takes its gauges with it (:func:`worker_exiting`); one that died without stopping is
forgotten at the next scrape.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = [
    "MULTIPROC_ENV",
    "count_cache_hit",
    "count_rate_limited",
    "exposition",
    "observe_request",
    "observe_vendor_call",
    "sample_worker",
    "set_cache",
    "set_circuit",
    "set_key_budget",
    "worker_exiting",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Read when this module is imported, as prometheus-client reads it when it is imported:
# both must agree on where the values live.
_MULTIPROC_DIR = os.environ.get(MULTIPROC_ENV) or None
# prometheus-client leaves these two untyped; their types as used here.
_collector: Callable[[CollectorRegistry, str], object] = multiprocess.MultiProcessCollector
_mark_dead: Callable[[int, str], None] = multiprocess.mark_process_dead

# Seconds. A facade request is milliseconds when a vendor is quick; a slow vendor or a
# timeout pushes it to tens of seconds, so the top buckets stay wide.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

FHIR_REQUESTS = Histogram(
    "fhir_requests_seconds",
    "Time to answer a /fhir request, by FHIR interaction, resource type and HTTP status.",
    ["interaction", "type", "status"],
    buckets=_BUCKETS,
)
VENDOR_CALLS = Histogram(
    "vendor_calls_seconds",
    "Time of one vendor HTTP call, by source and the vendor's status (or timeout, error).",
    ["source", "status"],
    buckets=_BUCKETS,
)
VENDOR_RATE_LIMITED = Counter(
    "vendor_rate_limited_total",
    "Vendor answers that said too many requests (HTTP 429), by source.",
    ["source"],
)
VENDOR_KEY_BUDGET = Gauge(
    "vendor_key_budget_remaining",
    "Requests a vendor key may still make in its current window, by source and key label.",
    ["source", "key"],
    multiprocess_mode="livemin",
)
SOURCE_CIRCUIT_OPEN = Gauge(
    "source_circuit_open",
    "Whether a source's circuit breaker is open (1) or closed (0).",
    ["source"],
    multiprocess_mode="livemax",
)
LANE_CALLS = Counter(
    "vendor_lane_calls_total",
    "Calls for a source's vendor budget by lane and client: granted (a slot was given), "
    "waited (given after a wait), refused (429 over the client's share, or 503).",
    ["source", "lane", "client", "outcome"],
)
CACHE_HITS = Counter(
    "cache_hits_total",
    "Vendor answers served from the adapter's cache instead of a vendor call, by source.",
    ["source"],
)

WORKER_RSS = Gauge(
    "worker_resident_memory_bytes",
    "The resident memory of a worker process (each live worker's, by pid, in multiprocess mode).",
    multiprocess_mode="liveall",
)
CACHE_ENTRIES = Gauge(
    "cache_entries",
    "Entries an in-process cache holds, by cache and source (summed over live workers).",
    ["cache", "source"],
    multiprocess_mode="livesum",
)
CACHE_BYTES = Gauge(
    "cache_bytes",
    "About what an in-process cache holds in memory, in bytes, by cache and source (summed "
    "over live workers; each worker within cache_limit_bytes).",
    ["cache", "source"],
    multiprocess_mode="livesum",
)
CACHE_LIMIT = Gauge(
    "cache_limit_bytes",
    "What an in-process cache may hold in each worker, in bytes, by cache and source.",
    ["cache", "source"],
    multiprocess_mode="livemax",
)
CACHE_LOOKUPS = Counter(
    "cache_lookups_total",
    "Lookups in an in-process cache, by cache, source and result (hit or miss).",
    ["cache", "source", "result"],
)
CACHE_EVICTIONS = Counter(
    "cache_evictions_total",
    "Entries an in-process cache let go to stay within its limit, by cache and source.",
    ["cache", "source"],
)

_request_children: dict[tuple[str, str, int], Any] = {}
_vendor_children: dict[tuple[str, str], Any] = {}
_rate_limited_children: dict[str, Any] = {}
_budget_children: dict[tuple[str, str], Any] = {}
_lane_children: dict[tuple[str, str, str, str], Any] = {}
_circuit_children: dict[str, Any] = {}
_cache_children: dict[str, Any] = {}


def observe_request(interaction: str, resource_type: str, status: int, seconds: float) -> None:
    """One answered ``/fhir`` request. ``resource_type`` must be from a bounded set."""
    key = (interaction, resource_type, status)
    child = _request_children.get(key)
    if child is None:
        child = _request_children[key] = FHIR_REQUESTS.labels(
            interaction, resource_type, str(status)
        )
    child.observe(seconds)


def observe_vendor_call(source: str, status: int | str, seconds: float) -> None:
    """One vendor HTTP call: ``status`` is the vendor's HTTP status, or ``"timeout"`` or
    ``"error"`` when no answer came."""
    key = (source, str(status))
    child = _vendor_children.get(key)
    if child is None:
        child = _vendor_children[key] = VENDOR_CALLS.labels(*key)
    child.observe(seconds)


def count_rate_limited(source: str) -> None:
    """A vendor answered 429 (too many requests)."""
    child = _rate_limited_children.get(source)
    if child is None:
        child = _rate_limited_children[source] = VENDOR_RATE_LIMITED.labels(source)
    child.inc()


def set_key_budget(source: str, key: str, remaining: float) -> None:
    """What one vendor key may still spend in its window. ``key`` is the key's public
    label from the configuration, never the key or its secret: label values are shown to
    anyone who can read the metrics."""
    label = (source, key)
    child = _budget_children.get(label)
    if child is None:
        child = _budget_children[label] = VENDOR_KEY_BUDGET.labels(*label)
    child.set(remaining)


def count_lane_call(source: str, lane: str, client: str, outcome: str) -> None:
    """A call for ``source``'s budget in ``lane`` for ``client`` (a configured client's
    name: the labels come from the configuration, never from a request)."""
    label = (source, lane, client, outcome)
    child = _lane_children.get(label)
    if child is None:
        child = _lane_children[label] = LANE_CALLS.labels(*label)
    child.inc()


def set_circuit(source: str, is_open: bool) -> None:
    """A source's circuit breaker opened (True) or closed (False)."""
    child = _circuit_children.get(source)
    if child is None:
        child = _circuit_children[source] = SOURCE_CIRCUIT_OPEN.labels(source)
    child.set(1 if is_open else 0)


def count_cache_hit(source: str) -> None:
    """An answer came from the cache instead of the vendor."""
    child = _cache_children.get(source)
    if child is None:
        child = _cache_children[source] = CACHE_HITS.labels(source)
    child.inc()


def set_cache(
    cache: str,
    source: str,
    *,
    entries: int,
    held: int,
    limit: int,
    hits: int,
    misses: int,
    evictions: int,
) -> None:
    """What an in-process cache holds now, and its lookups and evictions since last told
    (see :mod:`adapter.ops.caches`, which calls this off the request path)."""
    CACHE_ENTRIES.labels(cache, source).set(entries)
    CACHE_BYTES.labels(cache, source).set(held)
    CACHE_LIMIT.labels(cache, source).set(limit)
    if hits:
        CACHE_LOOKUPS.labels(cache, source, "hit").inc(hits)
    if misses:
        CACHE_LOOKUPS.labels(cache, source, "miss").inc(misses)
    if evictions:
        CACHE_EVICTIONS.labels(cache, source).inc(evictions)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def sample_worker() -> None:
    """This worker's resident memory, into its gauge (Linux's /proc; nothing elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident = int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return
    WORKER_RSS.set(resident)


def exposition() -> tuple[bytes, str]:
    """Every metric as Prometheus text, and the content type to send it with: this
    process's own, or in multiprocess mode the merge of every worker's files."""
    sample_worker()
    if _MULTIPROC_DIR is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    _forget_dead_workers(_MULTIPROC_DIR)
    registry = CollectorRegistry()
    _collector(registry, _MULTIPROC_DIR)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def worker_exiting() -> None:
    """This process stops serving: in multiprocess mode its live gauges (budgets,
    circuits) leave the merge, so a stopped worker's last view does not linger. Its counts
    and timings stay: totals must not go backwards."""
    if _MULTIPROC_DIR is not None:
        _mark_dead(os.getpid(), _MULTIPROC_DIR)


def _forget_dead_workers(path: str) -> None:
    """A worker that was killed never ran :func:`worker_exiting`; drop the live gauges of
    any process that no longer exists (the file names carry the process id)."""
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        try:
            pid = int(os.path.basename(name).rsplit("_", 1)[1][: -len(".db")])
        except ValueError:
            continue
        if not _alive(pid):
            _mark_dead(pid, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: a question, not a signal
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
