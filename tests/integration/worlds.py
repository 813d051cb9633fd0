"""The world the write, version and directory tests share: both sandboxes with the facade
over them, each vendor's own API beside it, and the bodies of the writes they send."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from harness import FAST

from adapter.app import create_app
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings
from mappings import decode_id, encode_id

__all__ = [
    "JSON",
    "PNR",
    "World",
    "booking",
    "leyr_own",
    "leyr_patient",
    "nyra_own",
    "nyra_patient",
    "weekday",
]

JSON = {"content-type": "application/fhir+json"}
PNR = "urn:oid:1.2.752.129.2.1.3.1"


class World:
    """Both sandboxes, the facade over them (``app``) and each vendor's own API."""

    def __init__(self, **source_extra) -> None:
        self.leyr = LeyrSandbox(seed=2, patients=12)
        self.nyra = NyraSandbox(seed=2, patients=12, limits=FAST)
        sources = {
            "leyr-w": {"connector": "leyr", **self.leyr.defaults(), **source_extra},
            "nyra-w": {"connector": "nyra", **self.nyra.defaults(), **source_extra},
        }
        transports = {"leyr-w": self.leyr.transport(), "nyra-w": self.nyra.transport()}
        self.app = create_app(
            Settings(open_access=True, sources=sources, cursor_key=b"w" * 32), transports=transports
        )


def leyr_own(world: World, cu: str, kind: str, vendor_id: str) -> httpx.Response:
    auth = {
        "x-leyr-client-id": world.leyr.client_id,
        "x-leyr-client-secret": world.leyr.client_secret,
    }

    async def get():
        async with httpx.AsyncClient(transport=world.leyr.transport(), base_url="http://l") as c:
            return await c.get(f"/emrs/webdoc/care-units/{cu}/{kind}/{vendor_id}", headers=auth)

    return asyncio.run(get())


def nyra_own(world: World, kind: str, vendor_id: str) -> httpx.Response:
    grant = world.nyra.api_keys()[0]
    auth = {
        "x-api-key": grant.key,
        "x-api-secret": grant.secret,
        "authorization": f"Bearer {grant.token}",
    }

    async def get():
        async with httpx.AsyncClient(transport=world.nyra.transport(), base_url="http://n") as c:
            return await c.get(f"/{kind}/{vendor_id}", headers=auth)

    return asyncio.run(get())


def leyr_patient() -> dict:
    return {
        "resourceType": "Patient",
        "meta": {"source": "leyr-w"},
        "identifier": [{"system": PNR, "value": "191212121212"}],
        "name": [{"family": "Tolvansson", "given": ["Tolvan"]}],
        "telecom": [{"system": "phone", "value": "+46701234567"}],
        "gender": "male",
        "birthDate": "1912-12-12",
    }


def nyra_patient() -> dict:
    return {
        "resourceType": "Patient",
        "meta": {"source": "nyra-w"},
        "name": [{"given": ["Asha"], "family": "Verma"}],
        "telecom": [{"system": "phone", "value": "+919812345678"}],
        "gender": "female",
        "birthDate": "1991-02-03",
    }


def weekday(days_ahead: int) -> date:
    day = date.today() + timedelta(days=days_ahead)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def booking(world: World, http: httpx.Client, source: str, patient_id: str, hour: int) -> dict:
    """A 15-minute booking for ``patient_id`` with a practitioner of its care unit or
    hospital, on a weekday three days ahead at ``hour`` local time."""
    zone = ZoneInfo("Europe/Stockholm" if source.startswith("leyr") else "Asia/Kolkata")
    start = datetime.combine(weekday(3), datetime.min.time(), zone).replace(hour=hour)
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=15)).isoformat(),
        "comment": "Booked through the facade",
    }
    if source.startswith("leyr"):
        cu = decode_id(patient_id).scope
        doctor = next(r["id"] for r in world.leyr.resources if r["care_unit_id"] == cu)
        service = next(
            s
            for s in world.leyr.services
            if s["care_unit_id"] == cu and s["duration_minutes"] == 15
        )
        doctor_ref = f"Practitioner/{encode_id(source, doctor, cu)}"
        system = f"https://fhir-adapter.dev/fhir/CodeSystem/{source}/healthcare-service"
        body["serviceType"] = [{"coding": [{"system": system, "code": service["id"]}]}]
    else:
        doctor_ref = f"Practitioner/{encode_id(source, next(iter(world.nyra.doctors))['id'])}"
    body["participant"] = [
        {"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"},
        {"actor": {"reference": doctor_ref}, "status": "accepted"},
    ]
    return body
