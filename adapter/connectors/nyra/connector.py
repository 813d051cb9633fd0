"""The NyraAI connector: one hospital, reached with one or more three-part API keys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time as clocks
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import time
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
    WriteRefusals,
    WriteRefused,
    Written,
    check_supported,
    read_rest,
)
from adapter.connectors.config import (
    AtLeast,
    check_source,
    http_for,
    require,
    source_options,
    vendor_client,
)
from adapter.connectors.directory import Kept, directory_page, read_each
from adapter.connectors.memo import DEFAULT_BYTES, MappedMemo, map_records
from adapter.connectors.nyra.errors import classify
from adapter.connectors.nyra.search import plan
from adapter.connectors.slots import (
    booked_from_slot,
    parse_slot_id,
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
    refuse_future_birth,
    same_fields,
    unknown_outcome,
    unreadable_answer,
    without_foreign_references,
)
from adapter.fhir.match import matches
from adapter.fhir.phones import compact
from adapter.fhir.search import SearchRequest
from adapter.fhir.versions import require_version, with_version
from adapter.ops.caches import Table
from adapter.transport import (
    AuthenticationRejected,
    KeyPool,
    MalformedResponse,
    NotFound,
    NyraKey,
    VendorClient,
    VendorError,
    scope,
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
_LIST_FROM = 3  # patients wanted at once from which listing them all may be cheaper


_WRITES = frozenset({"read", "search-type", "create"})
_DIRECTORY_PARAMS: dict[str, frozenset[str]] = {
    "Practitioner": frozenset({"_id", "name", "family", "given", "identifier"}),
    "Location": frozenset({"_id", "name", "organization"}),
    "Organization": frozenset({"_id", "name", "partof"}),
    "Schedule": frozenset({"_id", "actor"}),
}
_MAX_SCAN_PAGES = 1000  # a roster scan stops here, whatever a vendor's total says


@dataclass(frozen=True)
class Roster:
    """The doctors (id -> name, None when no record names them) and branches the
    hospital's appointments and patients name."""

    doctors: dict[str, str | None]
    branches: frozenset[str]


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
            **{t: ResourceCapability(p) for t, p in _DIRECTORY_PARAMS.items()},
        }
    )

    def __init__(
        self,
        source: str,
        *,
        timezone: str,
        client: VendorClient,
        slot_minutes: int = 15,
        directory_seconds: float = 300.0,
        memo_bytes: int = DEFAULT_BYTES,
        directory_bytes: int = 8 << 20,
        country: str | None = None,
        clock: Callable[[], float] = clocks.monotonic,
    ) -> None:
        self.source = source
        self.timezone = timezone
        self.country = country  # of the phone numbers held without a country code
        self.slot_minutes = slot_minutes
        self.zone = zone(timezone)
        self.client = client
        self.memo = MappedMemo(memo_bytes, source)
        # Each doctor's slot length, learned from the vendor's slots and availability
        # answers (refreshed whenever one is seen), and the names appointments give.
        self.learned: dict[str, int] = {}
        self.doctor_names: dict[str, str] = {}
        self.ctx = NyraContext(source, timezone, slot_minutes=slot_minutes)
        self.version = 0  # changes with ctx: answers are mapped once per version
        # The hospital's number of patients, as its last unfiltered listing said: whether
        # listing them all is cheaper than reading some one by one (:meth:`read_many`).
        self.patients_total: int | None = None
        # The directory's memory, half each to the doctors and branches, and the schedules;
        # a sixteenth more to what single answers said (a doctor's availability, a branch
        # a record names), each kept ``directory_seconds`` too.
        self.directory_seconds = directory_seconds
        self._clock = clock
        self.roster = Kept(
            directory_seconds, self._scan_roster, max_bytes=directory_bytes // 2, source=source
        )
        self.schedules = Kept(
            directory_seconds, self._all_schedules, max_bytes=directory_bytes // 2, source=source
        )
        self.seen: Table[tuple[str, str], tuple[float, dict[str, Any] | None]] = Table(
            "directory", directory_bytes // 16 if directory_seconds > 0 else 0, source=source
        )

    # -- what the hospital's records say of its doctors and branches ----------------------

    def _learn(self, doctor_id: str, minutes: int | None) -> None:
        """Remember a doctor's slot length (the default when the vendor gives none)."""
        minutes = minutes or self.slot_minutes
        if self.learned.get(doctor_id) != minutes:
            self.learned[doctor_id] = minutes
            self.version += 1
            self.ctx = NyraContext(
                self.source,
                self.timezone,
                slot_minutes=self.slot_minutes,
                slot_minutes_by_doctor=dict(self.learned),
            )

    def _recall(self, kind: str, key: str) -> tuple[bool, dict[str, Any] | None]:
        """What a record said of a doctor (``kind`` "doctor": the availability, None for
        no such doctor) or a branch ("branch") within ``directory_seconds``: (known, it)."""
        found = self.seen.get((kind, key))
        if found is None or found[0] <= self._clock():
            return False, None
        return True, found[1]

    def _remember(self, kind: str, key: str, value: dict[str, Any] | None) -> None:
        if self.directory_seconds > 0:
            self.seen.put((kind, key), (self._clock() + self.directory_seconds, value))

    async def _availability(self, doctor_id: str) -> dict[str, Any] | None:
        """The doctor's weekly availability (None: no such doctor); learns the slot. An
        answer is kept ``directory_seconds``, as the rest of the directory is."""
        known, data = self._recall("doctor", doctor_id)
        if known:
            return data
        path = f"/doctors/{quote(doctor_id, safe='')}/availability"
        try:
            data = self._data(await self.client.get_json(path))
        except NotFound:
            self._remember("doctor", doctor_id, None)
            return None
        if not isinstance(data, dict):
            raise MalformedResponse(self.source, None, "expected the doctor's availability")
        self._learn(doctor_id, nyra.slot_minutes_of(data))
        self._remember("doctor", doctor_id, data)
        return data

    async def _learn_slots(self, doctors: Iterable[Any]) -> None:
        """Ask the availability of each doctor whose slot length is not known yet (it
        gives the end of the doctor's appointments), all at once."""
        new = sorted({d for d in doctors if isinstance(d, str)} - set(self.learned))
        with scope.shared():  # learned once, for every request
            answers = await asyncio.gather(*(self._availability(d) for d in new))
        for doctor, known in zip(new, answers, strict=True):
            if known is None:
                self._learn(doctor, None)  # not a doctor Nyra knows: the default stands

    async def _doctor_name(self, doctor_id: str) -> str | None:
        """A doctor's name as the hospital's appointments give it (one call when no
        appointment seen so far named the doctor)."""
        if doctor_id not in self.doctor_names:
            params = {"doctor_id": doctor_id, "page": "1", "limit": "1"}
            data = self._data(await self.client.get_json("/appointments", params=params))
            for record in (data or {}).get("results") or () if isinstance(data, dict) else ():
                self._note(record)
        return self.doctor_names.get(doctor_id)

    def _note(self, record: Any) -> None:
        """What a record of the hospital says of its directory: the doctor's name, and
        that its branch is one (kept ``directory_seconds``)."""
        if isinstance(record, dict):
            doctor, name = record.get("doctor_id"), record.get("doctor_name")
            if isinstance(doctor, str) and isinstance(name, str) and name.strip():
                self.doctor_names[doctor] = name
            branch = record.get("branch_id")
            if isinstance(branch, str):
                held = self.seen.peek(("branch", branch))  # a note is not a lookup
                if held is None or held[0] <= self._clock() + self.directory_seconds / 2:
                    self._remember("branch", branch, None)

    async def _scan_roster(self) -> Roster:
        """Every doctor and branch the appointments and patients name (Nyra lists
        neither): pages of 100 of each."""
        doctors: dict[str, str | None] = {}
        branches: set[str] = set()
        for path in ("/appointments", "/patients"):
            page = 1
            while page <= _MAX_SCAN_PAGES:
                params = {"page": str(page), "limit": str(MAX_LIMIT)}
                data = self._data(await self.client.get_json(path, params=params))
                rows = data.get("results") if isinstance(data, dict) else None
                if not isinstance(rows, list):
                    raise MalformedResponse(self.source, None, "expected data.results to be a list")
                for row in rows:
                    if not isinstance(row, dict):
                        continue
                    self._note(row)
                    if isinstance(row.get("doctor_id"), str):
                        doctors.setdefault(row["doctor_id"], None)
                    if isinstance(row.get("branch_id"), str):
                        branches.add(row["branch_id"])
                if path == "/patients" and isinstance(data.get("total"), int):
                    self.patients_total = data["total"]
                pages = data.get("total_pages")
                if len(rows) < MAX_LIMIT or (isinstance(pages, int) and page >= pages):
                    break
                page += 1
        return Roster({d: self.doctor_names.get(d) for d in doctors}, frozenset(branches))

    async def _all_schedules(self) -> list[dict[str, Any]]:
        roster = await self.roster.get()
        out = []
        for doctor, name in sorted(roster.doctors.items()):
            availability = await self._availability(doctor)
            if availability is not None:
                out.append(nyra.to_fhir_schedule(availability, self.ctx, name))
        return out

    async def _directory(self, resource_type: str) -> list[dict[str, Any]]:
        """Every resource of a directory type the hospital's records name."""
        if resource_type == "Schedule":
            return await self.schedules.get()
        roster = await self.roster.get()
        if resource_type == "Practitioner":
            return [
                nyra.to_fhir_practitioner(_doctor(d, n), self.ctx)
                for d, n in sorted(roster.doctors.items())
            ]
        branches = sorted(roster.branches)
        if resource_type == "Location":
            return [nyra.to_fhir_location(b, self.ctx) for b in branches]
        return [nyra.to_fhir_organization(b, self.ctx) for b in (None, *branches)]

    async def _read_directory(self, resource_type: str, vendor_id: str) -> dict[str, Any] | None:
        if resource_type in ("Practitioner", "Schedule"):
            availability = await self._availability(vendor_id)
            if availability is None:
                return None
            name = await self._doctor_name(vendor_id)
            if resource_type == "Schedule":
                return nyra.to_fhir_schedule(availability, self.ctx, name)
            return nyra.to_fhir_practitioner(_doctor(vendor_id, name), self.ctx)
        if resource_type == "Organization" and vendor_id == nyra.HOSPITAL:
            return nyra.to_fhir_organization(None, self.ctx)
        if not await self._branch_named(vendor_id):
            return None
        if resource_type == "Location":
            return nyra.to_fhir_location(vendor_id, self.ctx)
        return nyra.to_fhir_organization(vendor_id, self.ctx)

    async def _branch_named(self, branch: str) -> bool:
        """Whether some appointment or patient of the hospital is at this branch."""
        known = self.roster.fresh()
        if known is not None and branch in known.branches:
            return True
        if self._recall("branch", branch)[0]:  # a record read lately is at this branch
            return True
        for path in ("/appointments", "/patients"):
            params = {"branch_id": branch, "page": "1", "limit": "1"}
            data = self._data(await self.client.get_json(path, params=params))
            rows = data.get("results") if isinstance(data, dict) else None
            # A key locked to one branch ignores the filter: the answer must say so.
            if any(isinstance(r, dict) and r.get("branch_id") == branch for r in rows or ()):
                return True
        return False

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
        options = source_options(config)
        return cls(
            source,
            timezone=require(source, config, "timezone", defaults),
            slot_minutes=int(config.get("slot_minutes", 15)),
            client=vendor_client(source, config, http, pool, classify),
            directory_seconds=options.directory_seconds,
            memo_bytes=options.memo_bytes,
            directory_bytes=options.directory_bytes,
            country=options.country,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def health(self) -> str:
        return self.client.health()

    def limits(self) -> list[tuple[int, float]]:
        return self.client.limits()

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
        """One resource, with its ``meta.versionId`` as a search gives it."""
        return with_version(await self._read_one(resource_type, fhir_id))

    async def _read_one(self, resource_type: str, fhir_id: str) -> dict[str, Any]:
        if resource_type == "Slot":
            return await self._read_slot(fhir_id)
        if resource_type not in _MAPPERS and resource_type not in _DIRECTORY_PARAMS:
            raise ResourceNotFound(resource_type, fhir_id)
        try:
            gid = decode_id(fhir_id)
        except MappingError:
            raise ResourceNotFound(resource_type, fhir_id) from None
        if gid.source != self.source or gid.scope is not None:
            raise ResourceNotFound(resource_type, fhir_id)
        if resource_type in _DIRECTORY_PARAMS:
            found = await self._read_directory(resource_type, gid.vendor_id)
        else:
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
        record = self._data(body)
        self._note(record)
        if resource_type == "Appointment" and isinstance(record, dict):
            await self._learn_slots([record.get("doctor_id")])
        return to_fhir(record, self.ctx)

    async def search(self, request: SearchRequest, cursor: str | None = None) -> Page:
        check_supported(self.capabilities, request)
        if request.resource_type == "Slot":
            return slot_page(await self._slots(request), request, cursor, self.zone)
        if request.resource_type in _DIRECTORY_PARAMS:
            if request.named("_id"):  # read each: no scan of the hospital's records
                kept = await read_each(request, lambda i: self.read(request.resource_type, i))
            else:
                kept = await self._directory(request.resource_type)
            return directory_page(kept, request, cursor, self.zone)
        p = plan(request, self.source, self.zone, self.country)
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
            hits = [r for r in found if r and matches(r, request.params, self.zone, self.country)]
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
            for record in records:
                self._note(record)
            mapped = map_records(self.source, records, lambda r: to_fhir(r, self.ctx))
            ids = [r.get("id") for r in records if isinstance(r, dict)]
            # ``size``: the vendor's own count on the page, left-out records included.
            return {**data, "results": mapped, "ids": ids, "size": len(records)}

        body: bytes = await self.client.get_json(path, params=params, decode=bytes)
        answer: dict[str, Any] | None = self.memo.peek(f"{call}#{self.version}", body)
        if answer is None:
            if resource_type == "Appointment":
                await self._learn_slots(_doctors_in(body))
            try:
                answer = self.memo.get_or_map(f"{call}#{self.version}", body, build)
            except orjson.JSONDecodeError:
                raise MalformedResponse(self.source, 200, "body is not JSON") from None
        if resource_type == "Patient" and not query and isinstance(answer.get("total"), int):
            self.patients_total = answer["total"]
        return answer

    # -- several at once, for _include ----------------------------------------------------

    async def _listing_pages(self) -> int | None:
        """Vendor pages of 100 that list every patient: the total as last seen, else
        asked (one call of one record, for every request: not this request's)."""
        if self.patients_total is None:
            with scope.shared():
                await self._list("Patient", {}, 1, 1)
        total = self.patients_total
        return None if total is None else max(1, math.ceil(total / MAX_LIMIT))

    async def _listing_wins(self, resource_type: str, wanted: int) -> int | None:
        """The pages to list instead of ``wanted`` reads, when that takes fewer calls."""
        if resource_type != "Patient" or wanted < _LIST_FROM:
            return None
        pages = await self._listing_pages()
        return pages if pages is not None and pages < wanted else None

    async def read_cost(self, resource_type: str, fhir_ids: Sequence[str]) -> int:
        """Patients: the listing's pages when fewer than the reads; else a read each."""
        n = len(set(fhir_ids))
        pages = await self._listing_wins(resource_type, n)
        return n if pages is None else pages

    async def read_many(
        self, resource_type: str, fhir_ids: Sequence[str]
    ) -> dict[str, dict[str, Any] | Exception]:
        """Patients, when listing the hospital's pages of 100 takes fewer calls than a
        read each (Nyra reads one patient a call): the listing, then a read for any id it
        did not hold (created since, say). Anything else: a read each."""
        wanted = list(dict.fromkeys(fhir_ids))
        listed: dict[str, dict[str, Any]] = {}
        pages = await self._listing_wins(resource_type, len(wanted))
        if pages is not None:
            for data in await asyncio.gather(
                *(self._list("Patient", {}, p, MAX_LIMIT) for p in range(1, pages + 1))
            ):
                listed.update((r["id"], r) for r in data["results"])
        return await read_rest(self, resource_type, wanted, listed)

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
                if index < skip or not matches(resource, request.params, self.zone, self.country):
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
        if request.named("_id"):
            return await read_each(request, self._read_slot)
        query = slot_query(request, self.zone)
        try:
            gid = decode_id(query.practitioner)
        except MappingError:
            return []
        if query.empty or gid.source != self.source or gid.scope is not None:
            return []
        # Nyra's days are the hospital's, the zone the window was read in: only the days
        # a matching slot can start on are asked (each answer kept ``cache_seconds``).
        out = []
        for day in query.days():
            found = await self._free_on(gid.vendor_id, day)
            if found is None:
                return []  # no such doctor
            out += found
        return out

    async def _free_on(self, doctor_id: str, day: Any) -> list[dict[str, Any]] | None:
        """The doctor's free Slots on a (local) day; None when Nyra knows no such doctor.
        The answer's slot length is learned: an appointment then ends where its Slot did."""
        path = f"/doctors/{quote(doctor_id, safe='')}/slots"
        try:
            body = await self.client.get_json(path, params={"date": day.isoformat()})
        except NotFound:
            return None
        data = self._data(body)
        if isinstance(data, dict):
            minutes = nyra.slot_minutes_of(data)
            if minutes is not None:
                self._learn(doctor_id, minutes)
        practitioner = self.ctx.id(doctor_id)
        out = []
        for slot in (data or {}).get("slots") or () if isinstance(data, dict) else ():
            try:
                start = local_to_instant(day, time.fromisoformat(slot["time"]), self.ctx.timezone)
                end = local_to_instant(day, time.fromisoformat(slot["end_time"]), self.ctx.timezone)
            except (KeyError, TypeError, ValueError, LocalTimeError):
                continue  # a slot a local clock cannot name (a DST gap) is not offered
            out.append(slot_resource(self.ctx, practitioner, doctor_id, None, start, end))
        return out

    async def _read_slot(self, fhir_id: str) -> dict[str, Any]:
        """The Slot while its time is free (the vendor is asked for that day)."""
        key = parse_slot_id(fhir_id, with_service=False)
        if key is None or key.source != self.source or key.scope is not None:
            raise ResourceNotFound("Slot", fhir_id)
        day = key.start.astimezone(self.zone).date()
        for slot in await self._free_on(key.resource, day) or ():
            if slot["id"] == fhir_id:
                return slot
        raise ResourceNotFound("Slot", fhir_id)

    # -- writes -------------------------------------------------------------------------

    async def create(
        self, resource_type: str, resource: dict[str, Any], *, look_first: bool = False
    ) -> Written:
        resource = {k: v for k, v in resource.items() if k != "id"}
        if resource_type == "Patient":
            resource = without_foreign_references(resource, self.source)
            record = all_refusals(
                resource,
                lambda r: nyra.from_fhir_patient(r, self.ctx),
                lambda r: refuse_future_birth(r, self.zone, "Nyra"),
                _needs_name_and_phone,
            )
            for key in ("created_at", "updated_at", "age"):
                record.pop(key, None)  # set by Nyra
            if isinstance(record.get("phone"), str):
                # Nyra finds a number by a substring of it as held: held formatted
                # ("+91 98123 45678"), its digits would not be found.
                record["phone"] = compact(record["phone"])
            if look_first:  # an earlier try's outcome is unknown: it may have been made
                found = await found_before_sending(self.source, lambda: self._find_patient(record))
                if found is not None:
                    return Written(found)
            try:
                status, body = await self.client.send("POST", "/patients", record)
                made = self._data(body)
                vendor_id = made.get("patient_id") if isinstance(made, dict) else None
                if not isinstance(vendor_id, str):
                    raise unreadable_answer(self.source, status, "expected data.patient_id")
            except (VendorError, MalformedResponse) as exc:
                if not unknown_outcome(exc):
                    raise
                return await look_after_unknown(
                    self.source, exc, lambda: self._find_patient(record)
                )
        elif resource_type == "Appointment":
            return await self._book(resource, look_first=look_first)
        else:
            raise WriteNotSupported(self.source, resource_type, "create")
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

    async def _book(self, resource: dict[str, Any], *, look_first: bool = False) -> Written:
        if resource.get("status") not in ("booked", None):
            raise WriteRefused("Appointment.status", "a new appointment is booked")
        slot_id = slot_of(resource)
        if slot_id is not None:
            try:
                resource = await self._from_slot(resource, slot_id)
            except WriteRefused as taken:
                if taken.status != 409:
                    raise
                # Taken: by this very booking's earlier try, if the Appointment holding it
                # is the patient's, with the Slot's doctor and start.
                return await self._own_slot(resource, slot_id, taken, look_first)
        doctor = actor_of(resource, "Practitioner")
        if doctor is not None:  # its slot length decides the end the booking must have
            with contextlib.suppress(MappingError):  # a foreign id: the mapping names it
                await self._learn_slots([decode_id(doctor.split("/", 1)[1]).vendor_id])
        body = nyra.to_nyra_booking(resource, self.ctx)
        if look_first:  # an earlier try's outcome is unknown: it may have been made
            found = await found_before_sending(self.source, lambda: self._find_booking(body))
            if found is not None:
                return Written(found)
        try:
            status, answer = await self.client.send("POST", "/appointments", body)
            made = self._data(answer)
            vendor_id = made.get("appointment_id") if isinstance(made, dict) else None
            if not isinstance(vendor_id, str):
                raise unreadable_answer(self.source, status, "expected data.appointment_id")
        except (VendorError, MalformedResponse) as exc:
            if not unknown_outcome(exc):
                raise
            # The booking may have been made: look before anyone tries again.
            return await look_after_unknown(self.source, exc, lambda: self._find_booking(body))
        stored = await self._get_one("Appointment", vendor_id)
        if stored is None:
            raise MalformedResponse(self.source, None, "the booking cannot be read back")
        return Written(stored)

    async def _from_slot(self, resource: dict[str, Any], slot_id: str) -> dict[str, Any]:
        """The Appointment to book, completed from the Slot it names (409 when that time
        is no longer free)."""
        key = parse_slot_id(slot_id, with_service=False)
        if key is None or key.source != self.source or key.scope is not None:
            raise WriteRefused("Appointment.slot", f"Slot/{slot_id} is not a Slot of {self.source}")
        try:
            slot = await self._read_slot(slot_id)
        except ResourceNotFound:
            raise WriteRefused(
                "Appointment.slot", f"Slot/{slot_id} is no longer free", status=409
            ) from None
        actor = f"Practitioner/{self.ctx.id(key.resource)}"
        return booked_from_slot(resource, slot, actor, self.doctor_names.get(key.resource))

    async def _own_slot(
        self, resource: dict[str, Any], slot_id: str, taken: WriteRefused, retried: bool
    ) -> Written:
        """The Appointment that holds a Slot no longer free, when it is this booking's own
        (the same patient, the Slot's doctor and start); else the 409 stands."""
        key = parse_slot_id(slot_id, with_service=False)
        patient = actor_of(resource, "Patient")
        if key is None or patient is None:
            raise taken
        try:
            patient_id = decode_id(patient.split("/", 1)[1]).vendor_id
        except MappingError:
            raise taken from None
        local = key.start.astimezone(self.zone)
        body = {
            "patient_id": patient_id,
            "doctor_id": key.resource,
            "appointment_date": local.date().isoformat(),
            "appointment_time": local.strftime("%H:%M:%S"),
        }
        found = await self._find_booking(body)
        if found is None:
            raise taken
        return Written(found, created=retried)

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
        current = await self.read("Appointment", fhir_id)
        if not changed(current, resource):  # as asked already (a retry of a change made)
            return Written(current, created=False)
        if if_match is not None:
            require_version(current, if_match)  # nothing sent to the vendor on a mismatch
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
        try:
            status, body = await self.client.send("PATCH", path, {"status": "CANCELLED"})
            data = self._data(body)
            if not isinstance(data, dict):
                raise unreadable_answer(self.source, status, "expected the appointment")
        except (VendorError, MalformedResponse) as exc:
            if not unknown_outcome(exc):
                raise
            return await look_after_unknown(
                self.source, exc, lambda: self._cancelled(fhir_id), created=False
            )
        return Written(nyra.to_fhir_appointment(data, self.ctx), created=False)

    async def _cancelled(self, fhir_id: str) -> dict[str, Any] | None:
        """The appointment, if a cancel whose answer was lost was made."""
        now = await self.read("Appointment", fhir_id)
        return now if now.get("status") == "cancelled" else None


def _doctor(doctor_id: str, name: str | None) -> dict[str, Any]:
    return {"id": doctor_id, "name": name} if name else {"id": doctor_id}


def _needs_name_and_phone(resource: dict[str, Any]) -> None:
    """Nyra makes no patient without a name and a phone number: each is refused."""
    missing = []
    if not any(
        isinstance(n, dict) and (n.get("text") or n.get("family") or n.get("given"))
        for n in resource.get("name") or ()
    ):
        missing.append(WriteRefused("Patient.name", "Nyra needs the patient's name"))
    if not any(
        isinstance(t, dict) and t.get("system") == "phone" and t.get("value")
        for t in resource.get("telecom") or ()
    ):
        missing.append(WriteRefused("Patient.telecom", "Nyra needs a phone number"))
    if len(missing) == 1:
        raise missing[0]
    if missing:
        raise WriteRefusals(missing)


def _doctors_in(body: bytes) -> list[Any]:
    """The doctor ids of a Nyra list answer (nothing, for one that is not one)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    inner = data.get("data") if isinstance(data, dict) else None
    results = inner.get("results") if isinstance(inner, dict) else None
    if not isinstance(results, list):
        return []
    return [r.get("doctor_id") for r in results if isinstance(r, dict)]
