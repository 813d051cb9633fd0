"""The Leyr connector: one Leyr EHR (an EHR code and its care units) as a FHIR source."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from adapter.connectors.base import (
    Capabilities,
    ConnectorConfigError,
    Page,
    ReadOnly,
    ResourceCapability,
    ResourceNotFound,
    check_supported,
)
from adapter.connectors.config import http_for, require, retry_for
from adapter.connectors.leyr.errors import classify
from adapter.connectors.leyr.search import Plan, plan_appointments, plan_patients
from adapter.connectors.memo import MappedMemo, serialised
from adapter.fhir.match import matches
from adapter.fhir.search import SearchRequest
from adapter.transport import (
    KeyPool,
    LeyrCredentials,
    MalformedResponse,
    NotFound,
    VendorClient,
    VendorValidation,
)
from mappings import LeyrContext, MappingError, decode_id, leyr
from mappings.common.time import zone

__all__ = ["LeyrConnector"]

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


class LeyrConnector(ReadOnly):
    """Reads and searches Patients and Appointments across an EHR's care units."""

    capabilities = Capabilities(
        {
            "Patient": ResourceCapability(_PATIENT_PARAMS),
            "Appointment": ResourceCapability(
                _APPOINTMENT_PARAMS, includes=frozenset({"Appointment:patient"})
            ),
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
        http, defaults = http_for("leyr", source, config, transport)
        credentials = LeyrCredentials(
            require(source, config, "client_id", defaults),
            require(source, config, "client_secret", defaults),
        )
        client = VendorClient(
            source, http, KeyPool.unlimited([credentials]), classify, retry_for(source, config)
        )
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

    async def _get_one(self, resource_type: str, cu: str, vendor_id: str) -> dict | None:
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
        if request.resource_type == "Patient":
            plan = plan_patients(request, self.source, self.care_units)
        else:
            plan = plan_appointments(request, self.source, self.care_units, self.zone)
        found = [] if plan.empty else await self._fetch(request.resource_type, plan)
        hits = (
            [r for r in found if matches(r, request.params, self.zone)] if request.params else found
        )
        offset = int(cursor) if cursor else 0
        end = offset + request.count
        return Page(hits[offset:end], str(end) if end < len(hits) else None, total=len(hits))

    async def _fetch(self, resource_type: str, plan: Plan) -> list[dict[str, Any]]:
        collection, to_fhir = _MAPPERS[resource_type]
        out: list[dict[str, Any]] = []
        for cu in plan.care_units:
            if cu in plan.ids:
                for vendor_id in sorted(plan.ids[cu]):
                    one = await self._get_one(resource_type, cu, vendor_id)
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

            def mapped(body: bytes, cu: str = cu, call: str = call) -> list[dict[str, Any]]:
                return self.memo.get_or_map(call, body, lambda b: self._map_list(b, cu, to_fhir))

            out.extend(await self.client.get_json(path, params=plan.query or None, decode=mapped))
        return out

    def _map_list(self, body: bytes, cu: str, to_fhir: Any) -> list[dict[str, Any]]:
        records = orjson.loads(body)
        if not isinstance(records, list):
            raise MalformedResponse(self.source, None, "expected a JSON array")
        return serialised([to_fhir(self._in_unit(r, cu), self.ctx) for r in records])

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
