"""The Leyr connector: one Leyr EHR (an EHR code and its care units) as a FHIR source."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
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
    read_rest,
)
from adapter.connectors.config import (
    check_source,
    http_for,
    require,
    source_options,
    vendor_client,
)
from adapter.connectors.directory import DIRECTORY_TYPES, Kept, directory_page, find, read_each
from adapter.connectors.leyr.errors import classify
from adapter.connectors.leyr.search import Plan, plan_appointments, plan_patients
from adapter.connectors.memo import DEFAULT_BYTES, Mapped, MappedMemo, map_records
from adapter.connectors.slots import (
    booked_from_slot,
    parse_slot_id,
    service_digest,
    slot_capability,
    slot_of,
    slot_page,
    slot_query,
    slot_resource,
)
from adapter.connectors.writes import (
    Ambiguous,
    actor_of,
    all_refusals,
    changed,
    found_before_sending,
    look_after_unknown,
    participants_changed,
    same_fields,
    unknown_outcome,
    unreadable_answer,
    without_foreign_references,
)
from adapter.fhir.match import matches, wanted_codes
from adapter.fhir.search import SearchRequest
from adapter.fhir.versions import require_version, with_version
from adapter.transport import (
    KeyPool,
    LeyrCredentials,
    MalformedResponse,
    NotFound,
    VendorClient,
    VendorError,
    VendorValidation,
)
from mappings import LeyrContext, LeyrDirectory, MappingError, decode_id, leyr
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
_SLOT_DAYS = 14  # days of free time asked in one timeslots call
_LIST_FROM = 2  # patients wanted at once from which listing their care unit is fewer calls
_LIST_PER_WANTED = 100  # ... unless the unit holds more than this many per patient wanted
_DIRECTORY_PARAMS: dict[str, frozenset[str]] = {
    "Practitioner": frozenset({"_id", "name", "family", "given", "identifier"}),
    "Device": frozenset({"_id", "device-name", "organization", "location"}),
    "Location": frozenset({"_id", "name", "organization"}),
    "Organization": frozenset({"_id", "name", "partof"}),
    "HealthcareService": frozenset({"_id", "name", "organization", "location", "service-type"}),
    "Schedule": frozenset({"_id", "actor"}),
}


@dataclass(frozen=True)
class Listing:
    """What the EHR says of its care units (the configured ones), resources and
    services, as FHIR by type, with the names references carry."""

    directory: LeyrDirectory
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    services: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # vendor, by unit


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
            **{t: ResourceCapability(p) for t, p in _DIRECTORY_PARAMS.items()},
        }
    )

    def __init__(
        self,
        source: str,
        *,
        emr: str,
        care_units: list[str],
        timezone: str,
        client: VendorClient,
        directory_seconds: float = 300.0,
        memo_bytes: int = DEFAULT_BYTES,
        directory_bytes: int = 8 << 20,
        country: str | None = None,
    ) -> None:
        if not care_units:
            raise ConnectorConfigError(f"source {source!r}: 'care_units' must name at least one")
        self.source = source
        self.emr = emr
        self.care_units = list(care_units)
        self.unit_sizes: dict[str, int] = {}  # patients per care unit, as last listed
        self.plain = LeyrContext(source, timezone)
        self.zone = zone(timezone)
        self.country = country  # of the phone numbers held without a country code
        self.client = client
        self.memo = MappedMemo(memo_bytes, source)
        self.listing = Kept(
            directory_seconds, self._list_directory, max_bytes=directory_bytes, source=source
        )
        # The care units alone (one call): all a Patient's names need. A sixteenth more of
        # ``directory_mb``; the whole listing asks them through here.
        self.units = Kept(
            directory_seconds, self._list_units, max_bytes=directory_bytes // 16, source=source
        )
        self._named: tuple[Listing, LeyrContext] | None = None
        self._version = 0  # changes with the directory: answers are mapped once per version
        self._units_named: tuple[list[Any], LeyrContext] | None = None
        self._units_version = 0  # the same, for answers mapped with the care units' names

    # -- the directory --------------------------------------------------------------------

    async def _list_units(self) -> list[Any]:
        """The configured care units as the EHR names them: one call."""
        units = await self.client.get_json(f"/emrs/{quote(self.emr, safe='')}/care-units")
        named = {
            u["id"]: u
            for u in (units if isinstance(units, list) else ())
            if isinstance(u, dict) and isinstance(u.get("id"), str)
        }
        return [named.get(cu, {"id": cu}) for cu in self.care_units]

    async def _list_directory(self) -> Listing:
        """The care units, resources (practitioners, equipment) and services of the
        configured care units: the units (kept on their own too) and two calls per unit."""
        care_units = await self.units.get()
        resources: list[Any] = []
        services: dict[str, list[dict[str, Any]]] = {}
        for cu in self.care_units:
            listed = await self.client.get_json(f"{self._cu(cu)}/resources")
            if isinstance(listed, list):
                resources += [self._in_unit(r, cu) for r in listed]
            offered = await self.client.get_json(f"{self._cu(cu)}/healthcare-services")
            offered = offered if isinstance(offered, list) else []
            services[cu] = [self._in_unit(s, cu) for s in offered if isinstance(s, dict)]
        directory = LeyrDirectory.from_records(
            care_units, resources, [s for unit in services.values() for s in unit]
        )
        ctx = replace(self.plain, directory=directory)
        by_type: dict[str, list[dict[str, Any]]] = {t: [] for t in DIRECTORY_TYPES}
        kept = map_records(self.source, resources, lambda r: leyr.to_fhir_resource(r, ctx))
        for resource in kept:
            by_type[resource["resourceType"]].append(resource)
        by_type["Schedule"] = list(
            map_records(self.source, resources, lambda r: leyr.to_fhir_schedule(r, ctx))
        )
        by_type["Location"] = list(
            map_records(self.source, care_units, lambda u: leyr.to_fhir_location(u, ctx))
        )
        by_type["Organization"] = list(
            map_records(self.source, care_units, lambda u: leyr.to_fhir_organization(u, ctx))
        )
        by_type["HealthcareService"] = list(
            map_records(
                self.source,
                [s for unit in services.values() for s in unit],
                lambda s: leyr.to_fhir_healthcare_service(s, ctx),
            )
        )
        return Listing(directory, by_type, services)

    @property
    def ctx(self) -> LeyrContext:
        """The newest mapping context (a booking fetches the directory first: see create)."""
        return self._named[1] if self._named is not None else self.plain

    async def _names_after_write(self) -> LeyrContext:
        """The context to map a write's answer with: the directory's names if it can be
        had, else the names known. The write is made: its answer must not fail for want
        of a name."""
        try:
            ctx, _ = await self._context()
        except Exception:
            log.warning("source %s: a write answered without the directory's names", self.source)
            return self.ctx
        return ctx

    async def _context(self) -> tuple[LeyrContext, int]:
        """The mapping context with the names of the EHR's directory, and a number that
        changes when the directory does (mapped answers are remembered per number)."""
        listing = await self.listing.get()
        if self._named is None or self._named[0] is not listing:
            self._named = (listing, replace(self.plain, directory=listing.directory))
            self._version += 1
        return self._named[1], self._version

    async def _unit_context(self) -> tuple[LeyrContext, str]:
        """The mapping context with the care units' names alone (what a Patient's
        mapping uses: one call, not the whole directory), and its memo version."""
        units = await self.units.get()
        if self._units_named is None or self._units_named[0] is not units:
            directory = LeyrDirectory.from_records(units, (), ())
            self._units_named = (units, replace(self.plain, directory=directory))
            self._units_version += 1
        return self._units_named[1], f"u{self._units_version}"

    async def _context_for(self, resource_type: str) -> tuple[LeyrContext, int | str]:
        """What ``resource_type``'s answers are mapped with: a Patient's only names its
        care unit; an Appointment names resources and services too."""
        if resource_type == "Patient":
            return await self._unit_context()
        return await self._context()

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
        options = source_options(config)
        return cls(
            source,
            emr=require(source, config, "emr", defaults),
            care_units=list(require(source, config, "care_units", defaults)),
            timezone=require(source, config, "timezone", defaults),
            client=client,
            directory_seconds=options.directory_seconds,
            memo_bytes=options.memo_bytes,
            directory_bytes=options.directory_bytes,
            country=options.country,
        )

    def _cu(self, care_unit: str) -> str:
        return f"/emrs/{quote(self.emr, safe='')}/care-units/{quote(care_unit, safe='')}"

    async def aclose(self) -> None:
        await self.client.aclose()

    def health(self) -> str:
        return self.client.health()

    def limits(self) -> list[tuple[int, float]]:
        return self.client.limits()

    async def probe(self) -> None:
        """One cheap call that needs the credentials and the EHR code (``check-config
        --probe``): the EHR's care units, the lightest route of the Leyr contract. Tried
        once, so the answer is what the vendor says, not what retries make of it; a
        failure is the transport's typed error."""
        await self.client.send("GET", f"/emrs/{quote(self.emr, safe='')}/care-units")

    async def read(self, resource_type: str, fhir_id: str) -> dict[str, Any]:
        """One resource, with its ``meta.versionId`` as a search gives it."""
        return with_version(await self._read_one(resource_type, fhir_id))

    async def _read_one(self, resource_type: str, fhir_id: str) -> dict[str, Any]:
        if resource_type == "Slot":
            return await self._read_slot(fhir_id)
        if resource_type in DIRECTORY_TYPES:
            listing = await self.listing.get()
            return find(listing.resources[resource_type], resource_type, fhir_id)
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
        ctx, _ = await self._context_for(resource_type)
        try:
            record = await self.client.get_json(path)
        except NotFound:
            return None
        return to_fhir(self._in_unit(record, cu), ctx)

    @staticmethod
    def _in_unit(record: Any, cu: str) -> Any:
        # Leyr records carry care_unit_id; an EHR that leaves it out is read in the care
        # unit the call addressed.
        if isinstance(record, dict) and "care_unit_id" not in record:
            return {**record, "care_unit_id": cu}
        return record

    async def search(self, request: SearchRequest, cursor: str | None = None) -> Page:
        check_supported(self.capabilities, request)
        if request.resource_type in DIRECTORY_TYPES:
            listing = await self.listing.get()
            found = listing.resources[request.resource_type]
            return directory_page(found, request, cursor, self.zone)
        if request.resource_type == "Slot":
            return slot_page(await self._slots(request), request, cursor, self.zone)
        if request.resource_type == "Patient":
            plan = plan_patients(request, self.source, self.care_units)
        else:
            plan = plan_appointments(request, self.source, self.care_units, self.zone)
        found, left_out = ([], []) if plan.empty else await self._fetch(request.resource_type, plan)
        hits = (
            [r for r in found if matches(r, request.params, self.zone, self.country)]
            if request.params
            else found
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
        ctx, version = await self._context_for(resource_type)
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
            call = f"{path}?{sorted(plan.query.items())}#{version}"

            def mapped(body: bytes, cu: str = cu, call: str = call) -> Mapped:
                resources: Mapped = self.memo.get_or_map(
                    call, body, lambda b: self._map_list(b, cu, to_fhir, ctx)
                )
                return resources

            listed = await self.client.get_json(path, params=plan.query or None, decode=mapped)
            out.extend(listed)
            left_out.extend(listed.left_out)
        return out, left_out

    # -- several at once, for _include ----------------------------------------------------

    def _by_unit(self, fhir_ids: Sequence[str]) -> dict[str, list[str]]:
        """Patient ids by the care unit they name (ids of no care unit here: none)."""
        out: dict[str, list[str]] = {}
        for fhir_id in dict.fromkeys(fhir_ids):
            try:
                gid = decode_id(fhir_id)
            except MappingError:
                continue
            if gid.source == self.source and gid.scope in self.care_units:
                out.setdefault(gid.scope, []).append(fhir_id)
        return out

    def _lists(self, cu: str, wanted: int) -> bool:
        """Whether listing a care unit's patients (one call, no paging in Leyr) is worth it
        for ``wanted`` of them: from 2 (one call, not two), unless the unit is known to be
        very large."""
        size = self.unit_sizes.get(cu)
        return wanted >= _LIST_FROM and (size is None or size <= _LIST_PER_WANTED * wanted)

    async def read_cost(self, resource_type: str, fhir_ids: Sequence[str]) -> int:
        """Patients: one call a care unit that is listed, else a read each."""
        if resource_type != "Patient":
            return len(fhir_ids)
        units = self._by_unit(fhir_ids).items()
        return sum(1 if self._lists(cu, len(ids)) else len(ids) for cu, ids in units)

    async def read_many(
        self, resource_type: str, fhir_ids: Sequence[str]
    ) -> dict[str, dict[str, Any] | Exception]:
        """Patients of a care unit from its listing when that takes fewer calls than a read
        each, then a read for any id the listing did not hold; anything else a read each."""
        wanted = list(dict.fromkeys(fhir_ids))
        listed: dict[str, dict[str, Any]] = {}
        if resource_type == "Patient":
            units = [cu for cu, ids in self._by_unit(wanted).items() if self._lists(cu, len(ids))]
            for cu, found in zip(
                units, await asyncio.gather(*(self._patients_of(cu) for cu in units)), strict=True
            ):
                self.unit_sizes[cu] = len(found)
                listed.update((r["id"], r) for r in found)
        return await read_rest(self, resource_type, wanted, listed)

    async def _patients_of(self, cu: str) -> Mapped:
        """Every patient of a care unit, mapped (once per distinct answer)."""
        ctx, version = await self._unit_context()
        path = f"{self._cu(cu)}/patients"
        call = f"{path}?[]#{version}"
        to_fhir = _MAPPERS["Patient"][1]

        def mapped(body: bytes) -> Mapped:
            resources: Mapped = self.memo.get_or_map(
                call, body, lambda b: self._map_list(b, cu, to_fhir, ctx)
            )
            return resources

        listed: Mapped = await self.client.get_json(path, decode=mapped)
        return listed

    def _map_list(self, body: bytes, cu: str, to_fhir: Any, ctx: LeyrContext) -> Mapped:
        records = orjson.loads(body)
        if not isinstance(records, list):
            raise MalformedResponse(self.source, None, "expected a JSON array")
        return map_records(self.source, records, lambda r: to_fhir(self._in_unit(r, cu), ctx))

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
        (or the ones ``service-type`` names)."""
        if request.named("_id"):
            return await read_each(request, self._read_slot)
        query = slot_query(request, self.zone)
        try:
            gid = decode_id(query.practitioner)
        except MappingError:
            return []
        if query.empty or gid.source != self.source or gid.scope not in self.care_units:
            return []
        cu = gid.scope
        system = healthcare_service_system(self.source)
        wanted: frozenset[str] | None = None  # the services the service-types name (ANDed)
        for param in request.named("service-type"):
            codes = wanted_codes(param, system)
            if codes is not None:
                wanted = codes if wanted is None else wanted & codes
        listing = await self.listing.get()
        services = [s["id"] for s in listing.services.get(cu, ()) if isinstance(s.get("id"), str)]
        if wanted is not None:
            services = sorted(wanted)
        out = []
        for service in services:
            out += await self._free_time(cu, gid.vendor_id, service, query.first, query.last)
        out.sort(key=lambda s: (s["start"], s["id"]))
        return out

    async def _free_time(
        self, cu: str, resource_id: str, service: str, first: Any, last: Any
    ) -> list[dict[str, Any]]:
        """The resource's free Slots for one service, from ``first`` to ``last`` (dates),
        asked of Leyr :data:`_SLOT_DAYS` days at a time (it refuses longer spans)."""
        slots: list[Any] = []
        while first <= last:
            upto = min(last, first + timedelta(days=_SLOT_DAYS - 1))
            params = {
                "resource_id": resource_id,
                "healthcare_service_id": service,
                "start_date": first.isoformat(),
                "end_date": upto.isoformat(),
            }
            try:
                got = await self.client.get_json(f"{self._cu(cu)}/timeslots", params=params)
            except VendorValidation as exc:
                if {"INVALID_RESOURCE_ID", "INVALID_HEALTHCARE_SERVICE_ID"} & set(exc.error_codes):
                    return []  # not this practitioner's or care unit's: no free time here
                raise
            slots += got if isinstance(got, list) else []
            first = upto + timedelta(days=1)
        ctx, _ = await self._context()
        coding: dict[str, Any] = {"system": healthcare_service_system(self.source), "code": service}
        name = ctx.directory.services.get((cu, service))
        if name:
            coding["display"] = name
        kind = "Device" if (cu, resource_id) in ctx.directory.devices else "Practitioner"
        actor = f"{kind}/{ctx.id(resource_id, cu)}"
        out = []
        for slot in slots:
            try:
                start = datetime.fromisoformat(slot["start"])
                end = datetime.fromisoformat(slot["end"])
            except (KeyError, TypeError, ValueError):
                raise MalformedResponse(self.source, None, "a timeslot without start/end") from None
            made = slot_resource(ctx, actor.split("/")[1], resource_id, cu, start, end, coding)
            out.append(made)
        return out

    async def _read_slot(self, fhir_id: str) -> dict[str, Any]:
        """The Slot while its time is free: the vendor is asked for that day's free time of
        the resource and service the id names."""
        key = parse_slot_id(fhir_id, with_service=True)
        if key is None or key.source != self.source or key.scope not in self.care_units:
            raise ResourceNotFound("Slot", fhir_id)
        listing = await self.listing.get()
        services = [
            s["id"]
            for s in listing.services.get(key.scope, ())
            if isinstance(s.get("id"), str) and service_digest(s["id"]) == key.service
        ]
        day = key.start.astimezone(self.zone).date()
        for service in services:
            for slot in await self._free_time(key.scope, key.resource, service, day, day):
                if slot["id"] == fhir_id:
                    return slot
        raise ResourceNotFound("Slot", fhir_id)

    # -- writes -------------------------------------------------------------------------

    async def create(
        self, resource_type: str, resource: dict[str, Any], *, look_first: bool = False
    ) -> Written:
        if resource_type == "Patient":  # mapped with the names known: the write comes first
            return await self._create_patient(resource, look_first=look_first)
        if resource_type == "Appointment":
            await self._context()  # a resource is a Practitioner or a Device: the directory says
            return await self._book(resource, look_first=look_first)
        raise WriteNotSupported(self.source, resource_type, "create")

    async def _create_patient(
        self, resource: dict[str, Any], *, look_first: bool = False
    ) -> Written:
        resource = without_foreign_references(resource, self.source)
        record = all_refusals(
            {k: v for k, v in resource.items() if k != "id"},
            lambda r: leyr.from_fhir_patient(r, self.ctx),
        )
        cu = record.pop("care_unit_id", None) or self.care_units[0]
        if cu not in self.care_units:
            raise WriteRefused("Patient.managingOrganization", "not a care unit of this source")
        if not record.get("first_name") or not record.get("last_name"):
            raise WriteRefused("Patient.name", "Leyr needs a given and a family name")
        if look_first:  # an earlier try's outcome is unknown: it may have been made
            found = await found_before_sending(self.source, lambda: self._find_patient(cu, record))
            if found is not None:
                return Written(found)
        # Leyr: create-or-return-existing (upsert by identity); 201 only when created.
        try:
            status, body = await self.client.send("POST", f"{self._cu(cu)}/patients", record)
            if not isinstance(body, dict):
                raise unreadable_answer(self.source, status, "expected the patient")
        except VendorError as exc:
            if not unknown_outcome(exc):
                raise
            return await look_after_unknown(
                self.source, exc, lambda: self._find_patient(cu, record)
            )
        ctx = await self._names_after_write()
        return Written(leyr.to_fhir_patient(self._in_unit(body, cu), ctx), status == 201)

    async def _find_patient(self, cu: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """The patient a create that timed out may have made. With an identity (an
        external or EHR id) the upsert itself is the question: asked again, it answers
        the patient it holds, or makes it once. Without one, the care unit's patients of
        that name that hold every field sent; more than one cannot be told apart."""
        if record.get("external_id") or record.get("emr_id"):
            _, body = await self.client.send("POST", f"{self._cu(cu)}/patients", record)
            if not isinstance(body, dict):
                raise MalformedResponse(self.source, None, "expected the patient")
            return leyr.to_fhir_patient(self._in_unit(body, cu), await self._names_after_write())
        query = {"first_name": record["first_name"], "last_name": record["last_name"]}
        listed = await self.client.get_json(f"{self._cu(cu)}/patients", params=query)
        keys = tuple(k for k, v in record.items() if isinstance(v, str | int | bool))
        same = [r for r in listed or () if same_fields(record, r, keys)]
        if len(same) > 1:
            raise Ambiguous()
        if not same:
            return None
        return leyr.to_fhir_patient(self._in_unit(same[0], cu), await self._names_after_write())

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
                raise WriteRefused(
                    element, f"Leyr needs {what.get(key, 'a start')} to book, or a Slot"
                )
        return record["care_unit_id"], body

    async def _book(self, resource: dict[str, Any], *, look_first: bool = False) -> Written:
        slot_id = slot_of(resource)
        if slot_id is not None:
            try:
                resource = await self._from_slot(resource, slot_id)
            except WriteRefused as taken:
                if taken.status != 409:
                    raise
                # Taken: by this very booking's earlier try, if the Appointment holding it
                # is the patient's, with the Slot's practitioner and start.
                return await self._own_slot(resource, slot_id, taken, look_first)
        cu, body = self._booking(resource)
        if look_first:  # an earlier try's outcome is unknown: it may have been made
            found = await found_before_sending(self.source, lambda: self._find_booking(cu, body))
            if found is not None:
                return Written(found)
        try:
            status, made = await self.client.send("POST", f"{self._cu(cu)}/appointments", body)
            # Leyr returns a list of appointments from a create.
            if not isinstance(made, list) or not made or not isinstance(made[0], dict):
                raise unreadable_answer(self.source, status, "expected a list of appointments")
        except VendorError as exc:
            if not unknown_outcome(exc):
                raise
            # The booking may have been made: look before anyone tries again.
            return await look_after_unknown(self.source, exc, lambda: self._find_booking(cu, body))
        return Written(leyr.to_fhir_appointment(self._in_unit(made[0], cu), self.ctx))

    async def _own_slot(
        self, resource: dict[str, Any], slot_id: str, taken: WriteRefused, retried: bool
    ) -> Written:
        """The Appointment that holds a Slot no longer free, when it is this booking's own
        (the same patient, the Slot's practitioner and start); else the 409 stands."""
        key = parse_slot_id(slot_id, with_service=True)
        patient = actor_of(resource, "Patient")
        if key is None or patient is None or key.scope is None:
            raise taken
        try:
            patient_id = decode_id(patient.split("/", 1)[1]).vendor_id
        except MappingError:
            raise taken from None
        start = key.start.astimezone(self.zone)
        day = start.date().isoformat()
        query = {"patient_id": patient_id, "start_date": day, "end_date": day}
        listed = await self.client.get_json(f"{self._cu(key.scope)}/appointments", params=query)
        for record in listed if isinstance(listed, list) else ():
            if (
                record.get("resource_id") == key.resource
                and record.get("status") in ("booked", None)
                and _same_instant(record.get("start"), start.isoformat())
            ):
                found = leyr.to_fhir_appointment(self._in_unit(record, key.scope), self.ctx)
                return Written(found, created=retried)
        raise taken

    async def _from_slot(self, resource: dict[str, Any], slot_id: str) -> dict[str, Any]:
        """The Appointment to book, completed from the Slot it names (409 when that time
        is no longer free)."""
        key = parse_slot_id(slot_id, with_service=True)
        if key is None or key.source != self.source or key.scope not in self.care_units:
            raise WriteRefused("Appointment.slot", f"Slot/{slot_id} is not a Slot of {self.source}")
        try:
            slot = await self._read_slot(slot_id)
        except ResourceNotFound:
            raise WriteRefused(
                "Appointment.slot", f"Slot/{slot_id} is no longer free", status=409
            ) from None
        patient = actor_of(resource, "Patient")
        if patient is not None:
            try:
                scope = decode_id(patient.split("/", 1)[1]).scope
            except MappingError:
                scope = None
            if scope is not None and scope != key.scope:
                raise WriteRefused(
                    "Appointment.slot", f"Slot/{slot_id} is in another care unit than the Patient"
                )
        directory = self.ctx.directory
        kind = "Device" if (key.scope, key.resource) in directory.devices else "Practitioner"
        actor = f"{kind}/{self.ctx.id(key.resource, key.scope)}"
        name = directory.resources.get((key.scope, key.resource))
        return booked_from_slot(resource, slot, actor, name)

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

    async def update(
        self,
        resource_type: str,
        fhir_id: str,
        resource: dict[str, Any],
        *,
        if_match: str | None = None,
    ) -> Written:
        if resource_type != "Appointment":
            raise WriteNotSupported(self.source, resource_type, "update")
        await self._context()
        current = await self.read("Appointment", fhir_id)
        if not changed(current, resource):  # as asked already (a retry of a change made)
            return Written(current, created=False)
        if if_match is not None:
            require_version(current, if_match)  # nothing sent to the vendor on a mismatch
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
        try:
            status, body = await self.client.send("PATCH", path, patch)
            if not isinstance(body, dict):
                raise unreadable_answer(self.source, status, "expected the appointment")
        except VendorError as exc:
            if not unknown_outcome(exc):
                raise
            return await look_after_unknown(
                self.source,
                exc,
                lambda: self._changed_as_asked(fhir_id, resource),
                created=False,
            )
        # A cancel that needs the patient's confirmation comes back as a new appointment,
        # awaiting_confirmation (FHIR status pending), under a new id.
        return Written(leyr.to_fhir_appointment(self._in_unit(body, cu or ""), self.ctx), False)

    async def _changed_as_asked(
        self, fhir_id: str, resource: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The appointment, if it now holds what a change whose answer was lost asked for
        (the change was made); None if it does not (it was not)."""
        now = await self.read("Appointment", fhir_id)
        return now if not changed(now, resource) else None


def _same_instant(a: Any, b: Any) -> bool:
    try:
        return datetime.fromisoformat(a) == datetime.fromisoformat(b)
    except (TypeError, ValueError):
        return False
