"""Every FHIR body a test receives must validate as R4 (fhir.resources R4B models)."""

from __future__ import annotations

from typing import Any

import httpx
from fhir.resources.R4B import get_fhir_model_class


def validate(body: Any) -> None:
    assert isinstance(body, dict) and "resourceType" in body, "not a FHIR resource"
    get_fhir_model_class(body["resourceType"]).model_validate(body)


def check_response(response: httpx.Response) -> None:
    """httpx event hook: validate any FHIR JSON answer."""
    response.read()
    if response.headers.get("content-type", "").startswith(
        ("application/fhir+json", "application/json")
    ):
        validate(response.json())


async def acheck_response(response: httpx.Response) -> None:
    await response.aread()
    if response.headers.get("content-type", "").startswith(
        ("application/fhir+json", "application/json")
    ):
        validate(response.json())
