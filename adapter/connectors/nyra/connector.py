"""The NyraAI connector: one hospital, reached with one or more three-part API keys."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import time, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from adapter.connectors.base import (
    Capabilities,
    ConnectorConfigError,
    Page,
    PaginationLoop,
    ResourceCapability,
    ResourceNotFound,
    WriteNotSupported,
    WriteRefused,
    Written,
    check_supported,
)
from adapter.connectors.config import AtLeast, check_source, http_for, require, vendor_client
from adapter.connectors.memo import MappedMemo, map_records
from adapter.connectors.nyra.errors import classify
from adapter.connectors.nyra.search import plan
from adapter.connectors.slots import slot_capability, slot_page, slot_query, slot_resource
from adapter.connectors.writes import (
    Ambiguous,
    changed,
    look_after_timeout,
    participants_changed,
    refuse_future_birth,
    same_fields,
    without_foreign_references,
)
from adapter.fhir.match import matches
from adapter.fhir.search import SearchRequest
from adapter.transport import (
    AuthenticationRejected,
    KeyPool,
    MalformedResponse,
    NotFound,
    NyraKey,
    VendorClient,
    VendorTimeout,
)
from mappings import MappingError, NyraContext, decode_id, nyra
from mappings.common.time import local_to_instant, zone
from mappings.errors import LocalTimeError

__all__ = ["NyraConnector"]

log = logging.getLogger("fhir_adapter")

_PATIENT_PARAMS = frozenset(
    {"_id", "name", "family", "given", "birthdate", "gender", "phone", "email", "telecom", "active"}
)
_APPOINTMENT_PARAMS = frozenset({"_id", "patient", "practitioner", "actor", "date", "status"})
_MAPPERS = {
    "Patient": ("/patients", nyra.to_fhir_patient),
    "Appointment": ("/appointments", nyra.to_fhir_appointment),
}
MAX_LIMIT = 100  # Nyra: "limit default 20, max 100"


_WRITES = frozenset({"read", "search-type", "create"})

# The keys a Nyra source takes besides those every source takes (connectors/config.py);
# any other key is a configuration error naming the nearest.
SOURCE_KEYS: dict[str, Any] = {
    "keys": [{"key": str, "secret": str, "token": str}],
    "rate_limit": {
        "per_second": AtLeast(int, 1),
        "per_minute": AtLeast(int, 1),
        "second_window": AtLeast(float, 0, strictly=True),
        "minute_window": AtLeast(float, 0, strictly=True),
        "max_wait": AtLeast(float, 0),
    },
    "slot_minutes": AtLeast(int, 1),
}


class NyraConnector:
    capabilities = Capabilities(
        {
            "Patient": ResourceCapability(_PATIENT_PARAMS, interactions=_WRITES),
            "Appointment": ResourceCapability(
                _APPOINTMENT_PARAMS,
                interactions=_WRITES | {"update"},
                includes=frozenset({"Appointment:patient"}),
            ),
            "Slot": slot_capability(),
        }
    )

    def __init__(
        self, source: str, *, timezone: str, client: VendorClient, slot_minutes: int = 15
    ) -> None:
        self.source = source
        self.ctx = NyraContext(source, timezone, slot_minutes=slot_minutes)
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
    ) -> NyraConnector:
        check_source(source, config, SOURCE_KEYS, transport)
        http, defaults = http_for("nyra", source, config, transport)
        raw_keys = require(source, config, "keys", defaults)
        if not isinstance(raw_keys, list) or not raw_keys:
            raise ConnectorConfigError(f"[sources.{source}] keys: must list at least one key")
        keys = []
        for i, entry in enumerate(raw_keys):
            try:
                keys.append(NyraKey(entry["key"], entry["secret"], entry["token"]))
            except (KeyError, TypeError):
                raise ConnectorConfigError(
                    f"[sources.{source}] keys[{i}]: needs 'key', 'secret' and 'token'"
                ) from None
        limits = config.get("rate_limit") or {}
        pool = KeyPool.nyra(keys, **limits)
        return cls(
            source,
            timezone=require(source, config, "timezone", defaults),
            slot_minutes=int(config.get("slot_minutes", 15)),
            client=vendor_client(source, config, http, pool, classify),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def health(self) -> str:
        return self.client.health()

    async def probe(self) -> None:
        """One cheap call that needs the key and ``patients:read`` (``check-config
        --probe``): one patient of the first page. Tried once, so the answer is what the
        vendor says, not what retries make of it; a failure is the transport's typed
        error. A key refused on the way (the call then goes on with another) is a
        failure too: it must be rotated all the same."""
        await self.client.send("GET", "/patients", params={"page": "1", "limit": "1"})
        if self.client.pool.active() < len(self.client.pool.keys):
            raise AuthenticationRejected(self.source, 401, "one of the source's keys was refused")

    def _data(self, body: Any) -> Any:
        # Nyra: every success is {"success": true, "data": ...} (nyra.md, List envelope).
        if not isinstance(body, dict) or body.get("success") is not True or "data" not in body:
            raise MalformedResponse(self.source, None, "expected a {success, data} envelope")
        return body["data"]

    async def read(self, resource_type: str, fhir_id: str) -> dict[str, Any]:
        if resource_type not in _MAPPERS:
            raise ResourceNotFound(resource_type, fhir_id)
        try:
            gid = decode_id(fhir_id)
        except MappingError:
            raise ResourceNotFound(resource_type, fhir_id) from None
        if gid.source != self.source or gid.scope is not None:
            raise ResourceNotFound(resource_type, fhir_id)
        found = await self._get_one(resource_type, gid.vendor_id)
        if found is None:
            raise ResourceNotFound(resource_type, fhir_id)
        return found

    async def _get_one(self, resource_type: str, vendor_id: str) -> dict[str, Any] | None:
        path, to_fhir = _MAPPERS[resource_type]
        try:
            body = await self.client.get_json(f"{path}/{quote(vendor_id, safe='')}")
        except NotFound:
            return None
        return to_fhir(self._data(body), self.ctx)

    async def search(self, request: SearchRequest, cursor: str | None = None) -> Page:
        check_supported(self.capabilities, request)
        if request.resource_type == "Slot":
            return slot_page(await self._slots(request), request, cursor, self.zone)
        p = plan(request, self.source, self.zone)
        if p.empty:
            return Page([], None, total=0)
        if p.by_id:
            found, left_out = [], []
            for vendor_id in p.ids:
                try:
                    found.append(await self._get_one(request.resource_type, vendor_id))
                except MappingError as exc:
                    log.warning(
                        "source %s: vendor record %s left out: %s", self.source, vendor_id, exc
                    )
                    left_out.append(vendor_id)
            hits = [r for r in found if r and matches(r, request.params, self.zone)]
            return Page(hits, None, len(hits), tuple(left_out))
        if p.exact:
            return await self._exact_page(request, p.query, cursor)
        return await self._filtered_page(request, p.query, cursor)

    async def _list(
        self, resource_type: str, query: dict[str, str], page: int, limit: int
    ) -> dict[str, Any]:
        """One vendor page: ``data`` with ``results`` mapped to FHIR (``records`` keeps the
        vendor's ids, for loop detection). Mapped once per distinct answer."""
        path, to_fhir = _MAPPERS[resource_type]
        params = {**query, "page": str(page), "limit": str(limit)}
        call = f"{path}?{sorted(params.items())}"

        def build(body: bytes) -> dict[str, Any]:
            data = self._data(orjson.loads(body))
            if not isinstance(data, dict) or not isinstance(data.get("results"), list):
                raise MalformedResponse(self.source, None, "expected data.results to be a list")
            records = data["results"]
            mapped = map_records(self.source, records, lambda r: to_fhir(r, self.ctx))
            ids = [r.get("id") for r in records if isinstance(r, dict)]
            # ``size``: the vendor's own count on the page, left-out records included.
            return {**data, "results": mapped, "ids": ids, "size": len(records)}

        def decode(body: bytes) -> dict[str, Any]:
            answer: dict[str, Any] = self.memo.get_or_map(
                call, body, build, size=lambda d: len(d["results"])
            )
            return answer

        return await self.client.get_json(path, params=params, decode=decode)

    async def _exact_page(
        self, request: SearchRequest, query: dict[str, str], cursor: str | None
    ) -> Page:
        """Every param answered natively: one vendor page is one FHIR page."""
        limit = min(request.count, MAX_LIMIT)
        page = int(cursor) if cursor else 1
        data = await self._list(request.resource_type, query, page, limit)
        total = data.get("total") if isinstance(data.get("total"), int) else None
        resources = data["results"]
        more = data["size"] > 0 and (total is None or page * limit < total)
        return Page(resources, str(page + 1) if more else None, total, resources.left_out)

    async def _filtered_page(
        self, request: SearchRequest, query: dict[str, str], cursor: str | None
    ) -> Page:
        """Scan vendor pages of 100, keeping FHIR matches, until the page is full.

        The cursor is ``page:skip``: the vendor page to read next and how many of its
        records an earlier FHIR page already took.
        """
        page, skip = (int(x) for x in cursor.split(":")) if cursor else (1, 0)
        hits: list[dict[str, Any]] = []
        left_out: list[str] = []
        previous: list[Any] | None = None
        while True:
            data = await self._list(request.resource_type, query, page, MAX_LIMIT)
            records = data["results"]
            ids = data["ids"]
            if previous is not None and ids and ids == previous:
                raise PaginationLoop(f"{self.source}: loop detected in pagination")
            previous = ids
            if skip == 0:  # said with the page that first reaches this vendor page
                left_out.extend(records.left_out)
            for index, resource in enumerate(records):
                if index < skip or not matches(resource, request.params, self.zone):
                    continue
                hits.append(resource)
                if len(hits) == request.count:
                    last = index + 1 == len(records) and data["size"] < MAX_LIMIT
                    nxt = None if last else f"{page}:{index + 1}"
                    return Page(hits, nxt, None, tuple(left_out))
            skip = 0
            if data["size"] < MAX_LIMIT or page >= int(data.get("total_pages") or page):
                return Page(hits, None, None, tuple(left_out))
            page += 1

    async def _slots(self, request: SearchRequest) -> list[dict[str, Any]]:
        """Free time from Nyra's per-day doctor slots (hospital-local times)."""
        query = slot_query(request, self.zone)
        try:
            gid = decode_id(query.practitioner)
        except MappingError:
            return []
        if query.empty or gid.source != self.source or gid.scope is not None:
            return []
        path = f"/doctors/{quote(gid.vendor_id, safe='')}/slots"
        out = []
        day = query.first
        while day <= query.last:
            try:
                body = await self.client.get_json(path, params={"date": day.isoformat()})
            except NotFound:
                return []  # no such doctor
            data = self._data(body)
            for slot in (data or {}).get("slots") or ():
                try:
                    start = local_to_instant(
                        day, time.fromisoformat(slot["time"]), self.ctx.timezone
                    )
                    end = local_to_instant(
                        day, time.fromisoformat(slot["end_time"]), self.ctx.timezone
                    )
                except (KeyError, TypeError, ValueError, LocalTimeError):
                    continue  # a slot a local clock cannot name (a DST gap) is not offered
                out.append(
                    slot_resource(self.ctx, query.practitioner, gid.vendor_id, None, start, end)
                )
            day += timedelta(days=1)
        return out

    # -- writes -------------------------------------------------------------------------

    async def create(self, resource_type: str, resource: dict[str, Any]) -> Written:
        resource = {k: v for k, v in resource.items() if k != "id"}
        if resource_type == "Patient":
            resource = without_foreign_references(resource, self.source)
            refuse_future_birth(resource, self.zone, "Nyra")
            record = nyra.from_fhir_patient(resource, self.ctx)
            if not record.get("name"):
                raise WriteRefused("Patient.name", "Nyra needs the patient's name")
            if not record.get("phone"):
                raise WriteRefused("Patient.telecom", "Nyra needs a phone number")
            for key in ("created_at", "updated_at", "age"):
                record.pop(key, None)  # set by Nyra
            try:
                status, body = await self.client.send("POST", "/patients", record)
            except VendorTimeout as exc:
                return await look_after_timeout(
                    self.source, exc, lambda: self._find_patient(record)
                )
            made = self._data(body)
            vendor_id = made.get("patient_id") if isinstance(made, dict) else None
        elif resource_type == "Appointment":
            return await self._book(resource)
        else:
            raise WriteNotSupported(self.source, resource_type, "create")
        if not isinstance(vendor_id, str):
            raise MalformedResponse(self.source, status, "expected data.patient_id")
        # Nyra answers a create with the id only: read the record back.
        stored = await self._get_one(resource_type, vendor_id)
        if stored is None:
            raise MalformedResponse(self.source, None, "the created record cannot be read")
        return Written(stored)

    async def _find_patient(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """The patient a create that timed out may have made: Nyra's patients found by the
        phone sent (``q``) that hold every field sent; more than one cannot be told apart."""
        answer = await self.client.get_json(
            "/patients", params={"q": str(record["phone"]), "limit": str(MAX_LIMIT)}
        )
        data = self._data(answer)
        rows = data.get("results") if isinstance(data, dict) else None
        keys = tuple(k for k, v in record.items() if isinstance(v, str | int | bool))
        same = [r for r in rows or () if same_fields(record, r, keys)]
        if len(same) > 1:
            raise Ambiguous()
        if not same:
            return None
        return await self._get_one("Patient", str(same[0]["id"]))

    async def _book(self, resource: dict[str, Any]) -> Written:
        if resource.get("status") not in ("booked", None):
            raise WriteRefused("Appointment.status", "a new appointment is booked")
        body = nyra.to_nyra_booking(resource, self.ctx)
        try:
            status, answer = await self.client.send("POST", "/appointments", body)
        except VendorTimeout as exc:  # look before anyone tries again
            return await look_after_timeout(self.source, exc, lambda: self._find_booking(body))
        made = self._data(answer)
        vendor_id = made.get("appointment_id") if isinstance(made, dict) else None
        if not isinstance(vendor_id, str):
            raise MalformedResponse(self.source, status, "expected data.appointment_id")
        stored = await self._get_one("Appointment", vendor_id)
        if stored is None:
            raise MalformedResponse(self.source, None, "the booking cannot be read back")
        return Written(stored)

    async def _find_booking(self, body: dict[str, Any]) -> dict[str, Any] | None:
        query = {
            "patient_id": body["patient_id"],
            "doctor_id": body["doctor_id"],
            "date_from": body["appointment_date"],
            "date_to": body["appointment_date"],
        }
        data = await self._list("Appointment", query, 1, MAX_LIMIT)
        local = f"{body['appointment_date']}T{body['appointment_time']}"
        results: list[dict[str, Any]] = data["results"]
        for resource in results:
            start = resource.get("start", "")
            if start.startswith(local) and resource.get("status") == "booked":
                return resource
        return None

    async def update(self, resource_type: str, fhir_id: str, resource: dict[str, Any]) -> Written:
        if resource_type != "Appointment":
            raise WriteNotSupported(self.source, resource_type, "update")
        current = await self.read("Appointment", fhir_id)
        differs = changed(current, resource)
        if participants_changed(current, resource):
            raise WriteRefused("Appointment.participant", "Nyra cannot change who takes part")
        if differs - {"status"}:
            name = sorted(differs - {"status"})[0]
            raise WriteRefused(
                f"Appointment.{name}", "Nyra changes only an appointment's status (a cancel)"
            )
        if "status" not in differs:
            return Written(current, created=False)
        if resource.get("status") != "cancelled":
            raise WriteRefused("Appointment.status", "Nyra takes only a cancel through the API")
        vendor_id = decode_id(fhir_id).vendor_id
        path = f"/appointments/{quote(vendor_id, safe='')}/status"
        status, body = await self.client.send("PATCH", path, {"status": "CANCELLED"})
        data = self._data(body)
        if not isinstance(data, dict):
            raise MalformedResponse(self.source, status, "expected the appointment")
        return Written(nyra.to_fhir_appointment(data, self.ctx), created=False)
