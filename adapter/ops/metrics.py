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
- ``read_cache_entries`` and ``read_cache_bytes``, gauges: ``source`` (a source's read
  cache in memory, with ``cache_seconds``; summed over live workers);
- ``memo_entries`` and ``memo_bytes``, gauges: ``source`` (the mapped answers a worker
  remembers, and about what they hold in memory; summed over live workers);
  ``memo_hits_total``, ``memo_misses_total``, ``memo_evictions_total``, counters:
  ``source``.

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
    "count_memo",
    "count_memo_eviction",
    "count_rate_limited",
    "exposition",
    "observe_request",
    "observe_vendor_call",
    "sample_worker",
    "set_circuit",
    "set_key_budget",
    "set_memo",
    "set_read_cache",
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
CACHE_HITS = Counter(
    "cache_hits_total",
    "Vendor answers served from the adapter's cache instead of a vendor call, by source.",
    ["source"],
)

MEMO_ENTRIES = Gauge(
    "memo_entries",
    "Vendor answers whose mapping a worker remembers, by source (summed over live workers).",
    ["source"],
    multiprocess_mode="livesum",
)
MEMO_BYTES = Gauge(
    "memo_bytes",
    "About what the remembered mapped answers hold in memory, by source (summed over live "
    "workers; bounded by the source's memo_mb in each).",
    ["source"],
    multiprocess_mode="livesum",
)
WORKER_RSS = Gauge(
    "worker_resident_memory_bytes",
    "The resident memory of a worker process (each live worker's, by pid, in multiprocess mode).",
    multiprocess_mode="liveall",
)
READ_CACHE_ENTRIES = Gauge(
    "read_cache_entries",
    "Vendor answers a source's read cache holds in memory (summed over live workers).",
    ["source"],
    multiprocess_mode="livesum",
)
READ_CACHE_BYTES = Gauge(
    "read_cache_bytes",
    "What a source's read cache holds in memory, in bytes (summed over live workers; "
    "bounded by the source's cache_mb in each).",
    ["source"],
    multiprocess_mode="livesum",
)
MEMO_HITS = Counter("memo_hits_total", "Vendor answers mapped once and served again.", ["source"])
MEMO_MISSES = Counter("memo_misses_total", "Vendor answers mapped afresh.", ["source"])
MEMO_EVICTIONS = Counter(
    "memo_evictions_total", "Remembered answers let go to stay within memo_mb.", ["source"]
)

_request_children: dict[tuple[str, str, int], Any] = {}
_memo_children: dict[tuple[str, str], Any] = {}
_vendor_children: dict[tuple[str, str], Any] = {}
_rate_limited_children: dict[str, Any] = {}
_budget_children: dict[tuple[str, str], Any] = {}
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


def _memo_child(metric: Any, kind: str, source: str) -> Any:
    child = _memo_children.get((kind, source))
    if child is None:
        child = _memo_children[(kind, source)] = metric.labels(source)
    return child


def count_memo(source: str, *, hit: bool) -> None:
    """A vendor answer was served from the memo (``hit``), or mapped afresh."""
    if hit:
        _memo_child(MEMO_HITS, "hit", source).inc()
    else:
        _memo_child(MEMO_MISSES, "miss", source).inc()


def count_memo_eviction(source: str) -> None:
    _memo_child(MEMO_EVICTIONS, "eviction", source).inc()


def set_memo(source: str, entries: int, held: int) -> None:
    """What the memo of ``source`` holds now: its entries and about how many bytes."""
    _memo_child(MEMO_ENTRIES, "entries", source).set(entries)
    _memo_child(MEMO_BYTES, "bytes", source).set(held)


def set_read_cache(source: str, entries: int, held: int) -> None:
    _memo_child(READ_CACHE_ENTRIES, "read-entries", source).set(entries)
    _memo_child(READ_CACHE_BYTES, "read-bytes", source).set(held)


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
