"""The Leyr connector: one Leyr EHR (an EHR code and its care units) as a FHIR source."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from adapter.connectors.base import (
    Capabilities,
    ConnectorConfigError,
    Page,
    ResourceCapability,
    ResourceNotFound,
    WriteNotSupported,
    WriteRefused,
    Written,
    check_supported,
    offset_page,
)
from adapter.connectors.config import check_source, http_for, require, vendor_client
from adapter.connectors.leyr.errors import classify
from adapter.connectors.leyr.search import Plan, plan_appointments, plan_patients
from adapter.connectors.memo import Mapped, MappedMemo, map_records
from adapter.connectors.slots import slot_capability, slot_page, slot_query, slot_resource
from adapter.connectors.writes import (
    Ambiguous,
    actor_of,
    changed,
    look_after_timeout,
    participants_changed,
    same_fields,
    without_foreign_references,
)
from adapter.fhir.match import matches
from adapter.fhir.search import SearchRequest
from adapter.transport import (
    KeyPool,
    LeyrCredentials,
    MalformedResponse,
    NotFound,
    VendorClient,
    VendorTimeout,
    VendorValidation,
)
from mappings import LeyrContext, MappingError, decode_id, leyr
from mappings.common.time import zone
from mappings.leyr.appointment import healthcare_service_system

__all__ = ["LeyrConnector"]

log = logging.getLogger("fhir_adapter")

_PATIENT_PARAMS = frozenset(
    {
        "_id",
        "identifier",
        "name",
        "family",
        "given",
        "birthdate",
        "gender",
        "phone",
        "email",
        "telecom",
    }
)
_APPOINTMENT_PARAMS = frozenset(
    {"_id", "patient", "practitioner", "actor", "date", "status", "service-type"}
)
_MAPPERS = {
    "Patient": ("patients", leyr.to_fhir_patient),
    "Appointment": ("appointments", leyr.to_fhir_appointment),
}


_WRITES = frozenset({"read", "search-type", "create"})

# The keys a Leyr source takes besides those every source takes (connectors/config.py);
# any other key is a configuration error naming the nearest.
SOURCE_KEYS: dict[str, Any] = {
    "emr": str,
    "care_units": list[str],
    "client_id": str,
    "client_secret": str,
}


class LeyrConnector:
    """Reads and searches Patients and Appointments across an EHR's care units."""

    capabilities = Capabilities(
        {
            "Patient": ResourceCapability(_PATIENT_PARAMS, interactions=_WRITES),
            "Appointment": ResourceCapability(
                _APPOINTMENT_PARAMS,
                interactions=_WRITES | {"update"},
                includes=frozenset({"Appointment:patient"}),
            ),
            "Slot": slot_capability("service-type"),
        }
    )

    def __init__(
        self, source: str, *, emr: str, care_units: list[str], timezone: str, client: VendorClient
    ) -> None:
        if not care_units:
            raise ConnectorConfigError(f"source {source!r}: 'care_units' must name at least one")
        self.source = source
        self.emr = emr
        self.care_units = list(care_units)
        self.ctx = LeyrContext(source, timezone)
        self.zone = zone(timezone)
        self.client = client
        self.memo = MappedMemo()

    @classmethod
    def from_config(
        cls,
        source: str,
        config: Mapping[str, Any],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> LeyrConnector:
        check_source(source, config, SOURCE_KEYS, transport)
        http, defaults = http_for("leyr", source, config, transport)
        credentials = LeyrCredentials(
            require(source, config, "client_id", defaults),
            require(source, config, "client_secret", defaults),
        )
        client = vendor_client(source, config, http, KeyPool.unlimited([credentials]), classify)
        client.json_always = True  # Leyr: Content-Type: application/json on every request
        return cls(
            source,
            emr=require(source, config, "emr", defaults),
            care_units=list(require(source, config, "care_units", defaults)),
            timezone=require(source, config, "timezone", defaults),
            client=client,
        )

    def _cu(self, care_unit: str) -> str:
        return f"/emrs/{quote(self.emr, safe='')}/care-units/{quote(care_unit, safe='')}"

    async def aclose(self) -> None:
        await self.client.aclose()

    def health(self) -> str:
        return self.client.health()

    async def probe(self) -> None:
        """One cheap call that needs the credentials and the EHR code (``check-config
        --probe``): the EHR's care units, the lightest route of the Leyr contract. Tried
        once, so the answer is what the vendor says, not what retries make of it; a
        failure is the transport's typed error."""
        await self.client.send("GET", f"/emrs/{quote(self.emr, safe='')}/care-units")

    async def read(self, resource_type: str, fhir_id: str) -> dict[str, Any]:
        if resource_type not in _MAPPERS:
            raise ResourceNotFound(resource_type, fhir_id)
        try:
            gid = decode_id(fhir_id)
        except MappingError:
            raise ResourceNotFound(resource_type, fhir_id) from None
        if gid.source != self.source or gid.scope not in self.care_units:
            raise ResourceNotFound(resource_type, fhir_id)
        record = await self._get_one(resource_type, gid.scope, gid.vendor_id)
        if record is None:
            raise ResourceNotFound(resource_type, fhir_id)
        return record

    async def _get_one(self, resource_type: str, cu: str, vendor_id: str) -> dict[str, Any] | None:
        collection, to_fhir = _MAPPERS[resource_type]
        path = f"{self._cu(cu)}/{collection}/{quote(vendor_id, safe=':')}"
        try:
            record = await self.client.get_json(path)
        except NotFound:
            return None
        return to_fhir(self._in_unit(record, cu), self.ctx)

    @staticmethod
    def _in_unit(record: Any, cu: str) -> Any:
        # Leyr records carry care_unit_id; an EHR that leaves it out is read in the care
        # unit the call addressed.
        if isinstance(record, dict) and "care_unit_id" not in record:
            return {**record, "care_unit_id": cu}
        return record

    async def search(self, request: SearchRequest, cursor: str | None = None) -> Page:
        check_supported(self.capabilities, request)
        if request.resource_type == "Slot":
            return slot_page(await self._slots(request), request, cursor, self.zone)
        if request.resource_type == "Patient":
            plan = plan_patients(request, self.source, self.care_units)
        else:
            plan = plan_appointments(request, self.source, self.care_units, self.zone)
        found, left_out = ([], []) if plan.empty else await self._fetch(request.resource_type, plan)
        hits = (
            [r for r in found if matches(r, request.params, self.zone)] if request.params else found
        )
        page = offset_page(hits, request.count, cursor)
        if cursor is None:  # the whole list is read for every page: say it once
            page.left_out = tuple(left_out)
        return page

    async def _fetch(
        self, resource_type: str, plan: Plan
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """What the plan finds, and the vendor ids of records that could not be mapped."""
        collection, to_fhir = _MAPPERS[resource_type]
        out: list[dict[str, Any]] = []
        left_out: list[str] = []
        for cu in plan.care_units:
            if cu in plan.ids:
                for vendor_id in sorted(plan.ids[cu]):
                    try:
                        one = await self._get_one(resource_type, cu, vendor_id)
                    except MappingError as exc:
                        log.warning(
                            "source %s: vendor record %s left out: %s", self.source, vendor_id, exc
                        )
                        left_out.append(vendor_id)
                        continue
                    if one is not None:
                        out.append(one)
                continue
            if plan.lookups:
                found = await self._lookup(cu, plan.lookups)
                if found is not None:
                    out.extend(found)
                    continue
            path = f"{self._cu(cu)}/{collection}"
            call = f"{path}?{sorted(plan.query.items())}"

            def mapped(body: bytes, cu: str = cu, call: str = call) -> Mapped:
                resources: Mapped = self.memo.get_or_map(
                    call, body, lambda b: self._map_list(b, cu, to_fhir)
                )
                return resources

            listed = await self.client.get_json(path, params=plan.query or None, decode=mapped)
            out.extend(listed)
            left_out.extend(listed.left_out)
        return out, left_out

    def _map_list(self, body: bytes, cu: str, to_fhir: Any) -> Mapped:
        records = orjson.loads(body)
        if not isinstance(records, list):
            raise MalformedResponse(self.source, None, "expected a JSON array")
        return map_records(self.source, records, lambda r: to_fhir(self._in_unit(r, cu), self.ctx))

    async def _lookup(self, cu: str, typed_ids: list[str]) -> list[dict[str, Any]] | None:
        """Patients found by typed id; None when the EHR does not take that id type."""
        out = []
        for typed in typed_ids:
            try:
                one = await self._get_one("Patient", cu, typed)
            except VendorValidation as exc:
                # Leyr: an EHR that does not take this id type says so; list and filter.
                if "PATIENT_ID_LOOKUP_TYPE_NOT_SUPPORTED" in exc.error_codes:
                    return None
                raise
            if one is not None:
                out.append(one)
        return out

    async def _slots(self, request: SearchRequest) -> list[dict[str, Any]]:
        """Free time from Leyr's timeslots, for every healthcare service of the care unit
        (or the one ``service-type`` names)."""
        query = slot_query(request, self.zone)
        try:
            gid = decode_id(query.practitioner)
        except MappingError:
            return []
        if query.empty or gid.source != self.source or gid.scope not in self.care_units:
            return []
        cu = gid.scope
        system = healthcare_service_system(self.source)
        wanted = {
            v.rpartition("|")[2]
            for p in request.named("service-type")
            for v in p.values
            if "|" not in v or v.startswith(f"{system}|")
        }
        if wanted:
            services = sorted(wanted)
        else:
            listed = await self.client.get_json(f"{self._cu(cu)}/healthcare-services")
            services = [s["id"] for s in listed or () if isinstance(s, dict) and "id" in s]
        out = []
        for service in services:
            params = {
                "resource_id": gid.vendor_id,
                "healthcare_service_id": service,
                "start_date": query.first.isoformat(),
                "end_date": query.last.isoformat(),
            }
            try:
                slots = await self.client.get_json(f"{self._cu(cu)}/timeslots", params=params)
            except VendorValidation as exc:
                if {"INVALID_RESOURCE_ID", "INVALID_HEALTHCARE_SERVICE_ID"} & set(exc.error_codes):
                    continue  # not this practitioner's or care unit's: no free time here
                raise
            coding = {"system": system, "code": service}
            for slot in slots if isinstance(slots, list) else ():
                try:
                    start = datetime.fromisoformat(slot["start"])
                    end = datetime.fromisoformat(slot["end"])
                except (KeyError, TypeError, ValueError):
                    raise MalformedResponse(
                        self.source, None, "a timeslot without start/end"
                    ) from None
                out.append(
                    slot_resource(
                        self.ctx, query.practitioner, gid.vendor_id, cu, start, end, coding
                    )
                )
        out.sort(key=lambda s: (s["start"], s["id"]))
        return out

    # -- writes -------------------------------------------------------------------------

    async def create(self, resource_type: str, resource: dict[str, Any]) -> Written:
        if resource_type == "Patient":
            return await self._create_patient(resource)
        if resource_type == "Appointment":
            return await self._book(resource)
        raise WriteNotSupported(self.source, resource_type, "create")

    async def _create_patient(self, resource: dict[str, Any]) -> Written:
        resource = without_foreign_references(resource, self.source)
        record = leyr.from_fhir_patient({k: v for k, v in resource.items() if k != "id"}, self.ctx)
        cu = record.pop("care_unit_id", None) or self.care_units[0]
        if cu not in self.care_units:
            raise WriteRefused("Patient.managingOrganization", "not a care unit of this source")
        if not record.get("first_name") or not record.get("last_name"):
            raise WriteRefused("Patient.name", "Leyr needs a given and a family name")
        # Leyr: create-or-return-existing (upsert by identity); 201 only when created.
        try:
            status, body = await self.client.send("POST", f"{self._cu(cu)}/patients", record)
        except VendorTimeout as exc:
            return await look_after_timeout(
                self.source, exc, lambda: self._find_patient(cu, record)
            )
        if not isinstance(body, dict):
            raise MalformedResponse(self.source, status, "expected the patient")
        return Written(leyr.to_fhir_patient(self._in_unit(body, cu), self.ctx), status == 201)

    async def _find_patient(self, cu: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """The patient a create that timed out may have made. With an identity (an
        external or EHR id) the upsert itself is the question: asked again, it answers
        the patient it holds, or makes it once. Without one, the care unit's patients of
        that name that hold every field sent; more than one cannot be told apart."""
        if record.get("external_id") or record.get("emr_id"):
            _, body = await self.client.send("POST", f"{self._cu(cu)}/patients", record)
            if not isinstance(body, dict):
                raise MalformedResponse(self.source, None, "expected the patient")
            return leyr.to_fhir_patient(self._in_unit(body, cu), self.ctx)
        query = {"first_name": record["first_name"], "last_name": record["last_name"]}
        listed = await self.client.get_json(f"{self._cu(cu)}/patients", params=query)
        keys = tuple(k for k, v in record.items() if isinstance(v, str | int | bool))
        same = [r for r in listed or () if same_fields(record, r, keys)]
        if len(same) > 1:
            raise Ambiguous()
        return leyr.to_fhir_patient(self._in_unit(same[0], cu), self.ctx) if same else None

    def _booking(self, resource: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(care unit, Leyr booking body) of a FHIR Appointment; the care unit is the
        patient's when no Location names it."""
        resource = {k: v for k, v in resource.items() if k != "id"}
        patient = actor_of(resource, "Patient")
        if patient is None:
            raise WriteRefused("Appointment.participant", "names no Patient")
        if actor_of(resource, "Location") is None:
            try:
                gid = decode_id(patient.split("/", 1)[1])
            except MappingError:
                raise WriteRefused("Appointment.participant", "the Patient is not known") from None
            location = {"actor": {"reference": f"Location/{self.ctx.id(gid.scope or '')}"}}
            resource["participant"] = [*resource.get("participant", []), location]
        record = leyr.from_fhir_appointment(resource, self.ctx)
        if record.get("status") not in ("booked", None):
            raise WriteRefused("Appointment.status", "a new appointment is booked")
        body: dict[str, Any] = {
            k: record[k]
            for k in (
                "patient_id",
                "resource_id",
                "healthcare_service_id",
                "start",
                "end",
                "comment",
            )
            if k in record
        }
        for key, element in (
            ("resource_id", "Appointment.participant"),
            ("healthcare_service_id", "Appointment.serviceType"),
            ("start", "Appointment.start"),
        ):
            if key not in body:
                what = {"resource_id": "a Practitioner", "healthcare_service_id": "a service type"}
                raise WriteRefused(element, f"Leyr needs {what.get(key, 'a start')} to book")
        return record["care_unit_id"], body

    async def _book(self, resource: dict[str, Any]) -> Written:
        cu, body = self._booking(resource)
        try:
            status, made = await self.client.send("POST", f"{self._cu(cu)}/appointments", body)
        except VendorTimeout as exc:
            # The booking may have been made: look before anyone tries again.
            return await look_after_timeout(self.source, exc, lambda: self._find_booking(cu, body))
        # Leyr returns a list of appointments from a create.
        if not isinstance(made, list) or not made or not isinstance(made[0], dict):
            raise MalformedResponse(self.source, status, "expected a list of appointments")
        return Written(leyr.to_fhir_appointment(self._in_unit(made[0], cu), self.ctx))

    async def _find_booking(self, cu: str, body: dict[str, Any]) -> dict[str, Any] | None:
        day = body["start"][:10]
        query = {"patient_id": body["patient_id"], "start_date": day, "end_date": day}
        listed = await self.client.get_json(f"{self._cu(cu)}/appointments", params=query)
        for record in listed if isinstance(listed, list) else ():
            same = all(
                record.get(k) == body.get(k) for k in ("resource_id", "healthcare_service_id")
            )
            active = record.get("status") in ("booked", None)
            if same and active and _same_instant(record.get("start"), body["start"]):
                return leyr.to_fhir_appointment(self._in_unit(record, cu), self.ctx)
        return None

    async def update(self, resource_type: str, fhir_id: str, resource: dict[str, Any]) -> Written:
        if resource_type != "Appointment":
            raise WriteNotSupported(self.source, resource_type, "update")
        current = await self.read("Appointment", fhir_id)
        cu, vendor_id = decode_id(fhir_id).scope, decode_id(fhir_id).vendor_id
        differs = changed(current, resource)
        people = participants_changed(current, resource)
        for kind in ("Patient", "Location"):
            if kind in people:
                raise WriteRefused("Appointment.participant", f"Leyr cannot change the {kind}")
        fixed = differs - {"start", "end", "comment", "status", "participant", "minutesDuration"}
        if fixed:
            name = sorted(fixed)[0]
            raise WriteRefused(f"Appointment.{name}", "Leyr cannot change this element")
        path = f"{self._cu(cu or '')}/appointments/{quote(vendor_id, safe='')}"
        if "status" in differs:
            if resource.get("status") != "cancelled" or differs - {"status"}:
                raise WriteRefused(
                    "Appointment.status", "Leyr changes a status only by a cancel, on its own"
                )
            patch: dict[str, Any] = {"status": "cancelled"}
        else:
            wanted = leyr.from_fhir_appointment({**resource, "id": fhir_id}, self.ctx)
            patch = {k: wanted.get(k) for k in ("start", "end", "comment") if k in differs}
            if "comment" in patch and patch["comment"] is None:
                patch["comment"] = ""
            if "Practitioner" in people:
                patch["resource_id"] = wanted.get("resource_id")
            if not patch:
                return Written(current, created=False)
        status, body = await self.client.send("PATCH", path, patch)
        if not isinstance(body, dict):
            raise MalformedResponse(self.source, status, "expected the appointment")
        # A cancel that needs the patient's confirmation comes back as a new appointment,
        # awaiting_confirmation (FHIR status pending), under a new id.
        return Written(leyr.to_fhir_appointment(self._in_unit(body, cu or ""), self.ctx), False)


def _same_instant(a: Any, b: Any) -> bool:
    try:
        return datetime.fromisoformat(a) == datetime.fromisoformat(b)
    except (TypeError, ValueError):
        return False
