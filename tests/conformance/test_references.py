"""Every reference a connector's resources carry resolves through the facade.

For each registered connector, over its sandbox and through the facade's HTTP API: a
page of every type it serves (and the free Slots of one practitioner), every
``reference`` anywhere in them gathered, and each read back. Each must answer 200 with a
resource of the referenced type and id that validates as R4.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fhir_check import acheck_response
from harness import HARNESSES, source_config

from adapter.app import create_app
from adapter.settings import Settings

pytestmark = pytest.mark.anyio


def references(value: Any) -> set[str]:
    """Every literal ``reference`` in a resource, at any depth."""
    found: set[str] = set()
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str):
            found.add(ref)
        for item in value.values():
            found |= references(item)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


def weekday_ahead(days: int) -> date:
    day = date.today() + timedelta(days=days)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


@pytest.mark.parametrize("name", sorted(HARNESSES))
async def test_every_reference_resolves(name: str):
    sandbox = HARNESSES[name].make(5, 40)
    source = f"{name}-refs"
    settings = Settings(
        open_access=True,
        sources={source: source_config(name, sandbox)},
        cursor_key=b"r" * 32,
        max_vendor_calls=200,
    )
    app = create_app(settings, transports={source: sandbox.transport()})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://fhir.test/fhir",
        event_hooks={"response": [acheck_response]},
    ) as http:
        statement = (await http.get("/metadata")).json()
        types = [  # every type the statement says may be searched
            r["type"]
            for r in statement["rest"][0]["resource"]
            if any(i["code"] == "search-type" for i in r.get("interaction", ()))
        ]
        assert {"Practitioner", "Location", "Organization", "Schedule"} <= set(types)
        emitted: list[dict[str, Any]] = []
        for kind in types:
            if kind in ("Slot", "ConceptMap"):
                continue
            r = await http.get(f"/{kind}", params={"_count": "50"})
            assert r.status_code == 200, (kind, r.text)
            emitted += [e["resource"] for e in r.json().get("entry", ())]
        practitioner = next(r for r in emitted if r["resourceType"] == "Practitioner")
        day = weekday_ahead(2)
        slots = await http.get(
            "/Slot",
            params=[
                ("schedule.actor", f"Practitioner/{practitioner['id']}"),
                ("start", f"ge{day}"),
                ("start", f"lt{day + timedelta(days=1)}"),
            ],
        )
        assert slots.status_code == 200, slots.text
        emitted += [e["resource"] for e in slots.json().get("entry", ())]
        emitted = [r for r in emitted if r["resourceType"] != "OperationOutcome"]
        seen = {r["resourceType"] for r in emitted}
        assert {"Appointment", "Patient", "Slot", "Schedule"} <= seen
        refs = set().union(*(references(r) for r in emitted))
        assert any(ref.startswith("Practitioner/") for ref in refs)
        assert any(ref.startswith("Organization/") for ref in refs)
        kinds = {ref.split("/")[0] for ref in refs}
        assert {"Patient", "Practitioner", "Location", "Organization", "Schedule"} <= kinds
        for ref in sorted(refs):
            kind, fhir_id = ref.split("/")
            r = await http.get(f"/{ref}")
            assert r.status_code == 200, (ref, r.text)
            body = r.json()
            assert (body["resourceType"], body["id"]) == (kind, fhir_id)
