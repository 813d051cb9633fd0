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
from hypothesis.database import DirectoryBasedExampleDatabase

# Every run draws fresh examples (no derandomize: a property that always replays the same
# inputs finds nothing new), and keeps the failing ones it found in an example database,
# to be tried first next time. A local run keeps it in .hypothesis/ (git ignores it); a
# run under CI=true in the user's cache, which outlives the clean checkout each CI run
# starts from, so that a failure CI once found is tried again in every later run. No
# deadline on a shared, noisy machine. HYPOTHESIS_PROFILE=explore searches far more
# examples (a long run, before a release).
_EXAMPLES = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fhir-adapter" / "hypothesis"
    if os.environ.get("CI") == "true"
    else Path(__file__).resolve().parents[1] / ".hypothesis" / "examples"
)
_COMMON = {
    "database": DirectoryBasedExampleDatabase(str(_EXAMPLES)),
    "deadline": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow],
}
settings.register_profile("default", max_examples=150, **_COMMON)
settings.register_profile("explore", max_examples=2000, **_COMMON)
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


@pytest.fixture(autouse=True)
def _budgets_as_they_were():
    """What vendor budgets draw on is the process's (``adapter.transport.budget``), set by
    every app made: each test leaves it as it found it, so that an app made over a Redis
    that is not there does not hand that Redis to the next test's clients."""
    from adapter.transport import budget

    before = budget.current()
    yield
    budget.configure(before)
