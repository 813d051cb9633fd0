"""Metrics under several workers: each process writes its values to the directory named by
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` merges them. Real processes, since the mode
is chosen when prometheus-client is imported."""

from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

WORKER = """
from adapter.ops import metrics
metrics.observe_request("search", "Patient", 200, 0.01)
metrics.set_circuit("leyr-a", True)
metrics.set_key_budget("nyra-b", "key-1", {budget})
{exit}
"""

SCRAPER = """
import sys
from adapter.ops import metrics
metrics.set_circuit("nyra-b", True)  # this process is alive: its gauges stay
body, content_type = metrics.exposition()
sys.stdout.write(body.decode())
"""


def run(code: str, directory: str) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_workers_counts_add_up_and_the_live_gauges_of_gone_workers_leave(tmp_path):
    directory = str(tmp_path)
    # One worker stops cleanly, one is gone without a word (as if killed).
    run(WORKER.format(budget=5, exit="metrics.worker_exiting()"), directory)
    run(WORKER.format(budget=3, exit=""), directory)
    found = samples(run(SCRAPER, directory))
    labels = (("interaction", "search"), ("status", "200"), ("type", "Patient"))
    assert found[("fhir_requests_seconds_count", labels)] == 2
    assert found[("source_circuit_open", (("source", "nyra-b"),))] == 1
    assert ("source_circuit_open", (("source", "leyr-a"),)) not in found
    assert not [key for key in found if key[0] == "vendor_key_budget_remaining"]
