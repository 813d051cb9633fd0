"""The plugin's tests: the connector against its in-process upstream (which reads the
public FHIR samples beside the checkout, ../shared/fhir-samples: without them the
sandbox fails, so these tests fail rather than skip)."""

import sys
from pathlib import Path

import pytest

# The core's test helpers stand beside these tests: the R4 search oracle written from the
# specification alone (tests/search_oracle.py), which the push-down property holds the
# connector to.
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))


@pytest.fixture
def anyio_backend():
    return "asyncio"
