"""The plugin's tests: the connector against its in-process upstream (which reads the
public FHIR samples beside the checkout, ../shared/fhir-samples: without them the
sandbox fails, so these tests fail rather than skip)."""

import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"
