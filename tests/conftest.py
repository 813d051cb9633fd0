"""Shared test configuration. This folder is on ``sys.path``, so tests can
``import strategies`` (the hypothesis strategies every property test draws from).

Each folder of tests is on ``sys.path`` too (pytest's default ``prepend`` import mode puts
a test module's or conftest's folder there), so its helper modules are imported by name
(``from worlds import World`` in ``integration/``). A test module never imports another:
what two of them share lives in a helper module, whose name does not start with
``test_``, or as a fixture in the folder's ``conftest.py``. Every module name is unique
across the folders, since they share one namespace."""

import os
from pathlib import Path

import pytest
import services
from hypothesis import HealthCheck, settings

# Deterministic by default: the same examples on every run and machine, no example
# database, no deadline on a shared, noisy machine. HYPOTHESIS_PROFILE=explore searches
# with fresh randomness and more examples.
settings.register_profile(
    "default",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None, max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def anyio_backend():
    return "asyncio"


# Public FHIR samples beside the checkout (../shared/fhir-samples). Tests that read them may
# skip on a laptop without them; under CI=true, where they are always present, a missing
# folder is a failure, not a quiet skip.
FHIR_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "fhir-samples"


def pytest_sessionstart(session):
    if os.environ.get("CI") == "true" and not FHIR_SAMPLES.is_dir():
        raise pytest.UsageError(f"CI=true, yet no FHIR samples at {FHIR_SAMPLES}")


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_redis: skipped without Redis; fails under CI=true")


def pytest_runtest_setup(item):
    if item.get_closest_marker("needs_redis") is not None:
        services.need_redis()
