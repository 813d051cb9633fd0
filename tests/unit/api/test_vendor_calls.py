"""Vendor calls per FHIR request, counted where they reach the sandboxes.

Each test makes the requests a client makes and counts, by path, what each vendor was
asked: only the calls the vendor contract needs (one Appointment page once the doctors'
slot lengths are known, the included resources from the directory and from listings, a
Slot window's days once each within ``cache_seconds``), and the answers the same as a
facade that has kept nothing gives.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fhir_check import acheck_response
from harness import FAST

from adapter.app import create_app
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings

pytestmark = pytest.mark.anyio

LEYR, NYRA = "leyr-c", "nyra-c"
CONFIG = {
    LEYR: {"connector": "leyr", "timezone": "Europe/Stockholm", "emr": "webdoc"},
    NYRA: {"connector": "nyra", "timezone": "Asia/Kolkata"},
}
DIRECTORY = ("Practitioner", "Location", "Organization", "Schedule")


class Recording(httpx.AsyncBaseTransport):
    """A sandbox's transport keeping the path and query of every request it is sent."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.calls: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        query = request.url.query.decode()
        self.calls.append(request.url.path + (f"?{query}" if query else ""))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Service:
    """The app over two sandboxes (the same data for the same seed in every Service)."""

    def __init__(self, patients: int = 200, **source: Any) -> None:
        self.sandboxes = {
            LEYR: LeyrSandbox(seed=4, patients=patients),
            NYRA: NyraSandbox(seed=4, patients=patients, limits=FAST),
        }
        sources = {
            name: {**config, **self.sandboxes[name].defaults(), **source}
            for name, config in CONFIG.items()
        }
        self.seen = {name: Recording(sb.transport()) for name, sb in self.sandboxes.items()}
        settings = Settings(open_access=True, sources=sources, cursor_key=b"c" * 32)
        self.app = create_app(settings, transports=self.seen)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://fhir.test",
            event_hooks={"response": [acheck_response]},  # every body is valid R4
        )

    async def get(self, url: str) -> dict[str, Any]:
        r = await self.http.get(f"/fhir/{url}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def mark(self) -> dict[str, int]:
        return {name: len(r.calls) for name, r in self.seen.items()}

    def since(self, mark: dict[str, int], source: str) -> list[str]:
        return self.seen[source].calls[mark[source] :]

    async def warm_directory(self) -> None:
        for kind in DIRECTORY:
            for source in (LEYR, NYRA):
                await self.get(f"{kind}?_source={source}&_count=1")


def kinds(calls: list[str]) -> Counter[str]:
    """Calls by what they ask: the path's last segment (a vendor id left out)."""
    out: Counter[str] = Counter()
    for call in calls:
        path = call.split("?", 1)[0].rstrip("/").split("/")
        last = path[-1]
        if path[-2] in ("patients", "appointments", "doctors"):  # a read of one record
            last = f"{path[-2]}/id"
        elif path[-3:-2] == ["doctors"]:
            last = f"doctors/id/{last}"
        out[last] += 1
    return out


def resources(bundle: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Each entry's mode, key and resource without its version stamp, in order."""
    out = []
    for entry in bundle.get("entry", []):
        resource = {**entry["resource"]}
        resource["meta"] = {k: v for k, v in resource.get("meta", {}).items() if k != "lastUpdated"}
        out.append(
            (entry["search"]["mode"], f"{resource['resourceType']}/{resource['id']}", resource)
        )
    return out


async def test_include_actor_over_a_warm_directory_reads_the_directory_and_listings():
    # What a facade that has kept nothing answers.
    cold = Service()
    expected = await cold.get("Appointment?_count=20&_include=Appointment:actor")
    included = {k for mode, k, _ in resources(expected) if mode == "include"}
    assert {k.split("/")[0] for k in included} == {"Patient", "Practitioner", "Location"}

    warm = Service()
    await warm.warm_directory()
    mark = warm.mark()
    got = await warm.get("Appointment?_count=20&_include=Appointment:actor")
    assert resources(got) == resources(expected)
    # Leyr: the page (both care units' appointments) and one care unit's patients, listed;
    # practitioners, devices and care units from the directory.
    assert kinds(warm.since(mark, LEYR)) == Counter({"appointments": 2, "patients": 1})
    # Nyra: the page and the hospital's patients listed (two pages of 100, fewer than a read
    # each); doctors and branches from the directory.
    nyra = warm.since(mark, NYRA)
    assert kinds(nyra) == Counter({"appointments": 1, "patients": 2})
    assert nyra[1:] == ["/patients?page=1&limit=100", "/patients?page=2&limit=100"]


async def test_a_nyra_appointment_page_costs_one_call_once_its_doctors_are_known():
    service = Service()
    await service.warm_directory()
    first = await service.get(f"Patient?_source={NYRA}&_count=20")
    await service.get(
        next(x["url"] for x in first["link"] if x["relation"] == "next").split("/fhir/")[1]
    )
    mark = service.mark()
    page = await service.get(f"Appointment?_source={NYRA}&_count=20")
    assert len(page["entry"]) == 20
    assert service.since(mark, NYRA) == ["/appointments?page=1&limit=20"]
    following = next(x["url"] for x in page["link"] if x["relation"] == "next")
    mark = service.mark()
    await service.get(following.split("/fhir/")[1])
    assert service.since(mark, NYRA) == ["/appointments?page=2&limit=20"]


async def test_a_cold_nyra_page_asks_each_new_doctors_slot_length_once_and_its_includes_none():
    cold = Service()
    got = await cold.get(f"Appointment?_source={NYRA}&_count=20&_include=Appointment:actor")
    doctors = {
        p["actor"]["reference"]
        for mode, _, r in resources(got)
        if mode == "match"
        for p in r["participant"]
        if p["actor"]["reference"].startswith("Practitioner/")
    }
    counted = kinds(cold.seen[NYRA].calls)
    # The page, each doctor's availability once (the length of the doctor's slots: the
    # appointments' ends), and the patients: the number of them, then their two pages.
    assert counted == Counter(
        {"appointments": 1, "doctors/id/availability": len(doctors), "patients": 3}
    )
    # Each doctor and branch the page names is included without another call.
    included = {k for mode, k, _ in resources(got) if mode == "include"}
    assert doctors <= included
    assert any(k.startswith("Location/") for k in included)


async def test_nyra_everything_reads_the_patient_and_its_appointments_and_nothing_else():
    service = Service()
    patient = (await service.get(f"Patient?_source={NYRA}&_count=1"))["entry"][0]["resource"]
    vendor_id = patient["id"].rsplit(".", 1)[-1]
    mark = service.mark()
    cold = await service.get(f"Patient/{patient['id']}/$everything")
    calls = service.since(mark, NYRA)
    doctors = {c for c in calls if c.endswith("/availability")}
    assert calls[:2] == [
        f"/patients/{vendor_id}",
        f"/appointments?patient_id={vendor_id}&page=1&limit=100",
    ]
    assert len(calls) == 2 + len(doctors)  # each doctor's availability once, no branch read
    mark = service.mark()
    again = await service.get(f"Patient/{patient['id']}/$everything")
    assert service.since(mark, NYRA) == calls[:2]
    assert resources(again) == resources(cold)


async def test_a_cold_leyr_patient_page_asks_only_the_care_units_names():
    service = Service()
    mark = service.mark()
    await service.get(f"Patient?_source={LEYR}&_count=20")
    assert service.since(mark, LEYR) == [
        "/emrs/webdoc/care-units",
        "/emrs/webdoc/care-units/L0_1/patients",
        "/emrs/webdoc/care-units/L0_2/patients",
    ]
    # The Appointments' names need the whole directory; the care units are not asked again.
    mark = service.mark()
    await service.get(f"Appointment?_source={LEYR}&_count=20")
    assert kinds(service.since(mark, LEYR)) == Counter(
        {"resources": 2, "healthcare-services": 2, "appointments": 2}
    )


def _window(first: int, days: int) -> tuple[str, list[str]]:
    start = date.today() + timedelta(days=first)
    asked = [(start + timedelta(days=n)).isoformat() for n in range(days)]
    end = (start + timedelta(days=days)).isoformat()
    return f"start=ge{start.isoformat()}&start=lt{end}", asked


async def test_a_nyra_slot_search_asks_each_day_once_within_cache_seconds():
    service = Service(patients=30, cache_seconds=600)
    plain = Service(patients=30)
    appointment = (await service.get(f"Appointment?_source={NYRA}&_count=1"))["entry"][0]
    doctor = next(
        p["actor"]["reference"]
        for p in appointment["resource"]["participant"]
        if p["actor"]["reference"].startswith("Practitioner/")
    )
    vendor_doctor = doctor.rsplit(".", 1)[-1]
    window, days = _window(8, 14)
    url = f"Slot?schedule.actor={doctor}&{window}&_count=500"

    mark = service.mark()
    first = await service.get(url)
    assert service.since(mark, NYRA) == [
        f"/doctors/{vendor_doctor}/slots?date={day}" for day in days
    ]
    assert first["total"] > 0
    assert resources(first) == resources(await plain.get(url))  # the same Slots

    mark = service.mark()
    assert resources(await service.get(url)) == resources(first)
    assert service.since(mark, NYRA) == []  # every day asked within cache_seconds

    # A window reaching two days further asks only those two.
    wider, wider_days = _window(8, 16)
    mark = service.mark()
    await service.get(f"Slot?schedule.actor={doctor}&{wider}&_count=500")
    assert service.since(mark, NYRA) == [
        f"/doctors/{vendor_doctor}/slots?date={day}" for day in wider_days[14:]
    ]


async def test_a_count_at_a_source_without_a_total_reads_each_vendor_page_once():
    service = Service()
    # Nyra cannot filter by gender: its pages of 100 are read and the matches counted.
    mark = service.mark()
    counted = await service.get(f"Patient?_source={NYRA}&gender=female&_summary=count")
    assert service.since(mark, NYRA) == [
        "/patients?page=1&limit=100",
        "/patients?page=2&limit=100",
    ]
    females = [p for p in service.sandboxes[NYRA].data.patients if p["gender"] == "FEMALE"]
    assert counted["total"] == len(females) > 0
    # A source that gives its total gives it on the first page: one call.
    mark = service.mark()
    everyone = await service.get(f"Patient?_source={NYRA}&_summary=count")
    assert service.since(mark, NYRA) == ["/patients?page=1&limit=100"]
    assert everyone["total"] == len(service.sandboxes[NYRA].data.patients)


async def test_what_nyra_keeps_of_single_answers_is_in_the_directory_metrics():
    from adapter.ops import caches

    service = Service(patients=30)
    await service.get(f"Appointment?_source={NYRA}&_count=5")
    connector = service.app.state.facade.connectors[NYRA]
    assert len(connector.seen) > 0 and connector.seen.held_bytes > 0
    assert connector.seen.max_bytes == connector.roster.max_bytes // 8
    mine = [c for c in caches.registered() if (c.name, c.source) == ("directory", NYRA)]
    assert connector.seen in mine
