"""Any FHIR R4 server as a source of the facade.

The upstream already speaks FHIR, so there is no mapping to write: what this connector
does is keep the facade's promises over another server's resources.

- **Ids** are the source name and the upstream's id (``mappings.encode_id``); an
  upstream id holding a dot (another facade's, say) keeps its first part as the id's
  scope, so that ids stay short through several levels. An id that would pass FHIR's 64
  characters is refused by name: the record is left out of a search (and named in the
  search's outcome), never truncated.
- **References** to the upstream's resources of types the facade serves are rewritten
  to facade ids, so they resolve through the facade; any other reference (another
  server, a type the facade does not serve) keeps only its display. ``meta.source``
  names the source; the upstream's ``versionId`` is kept, so that an ``If-Match`` the
  client sends is the upstream's own version and is passed through.
- **Search**: the facade's typed search goes upstream for each parameter the upstream's
  CapabilityStatement declares; every match is then checked again in memory (the
  facade's own matcher), which also applies what the upstream does not search by. A
  parameter the facade does not declare for the type is refused (400, naming it).
  ``schedule.actor`` on Slots is asked as the Schedules of that actor first.
- **Paging** follows the upstream's ``next`` links (only to the upstream's own base),
  inside this connector's cursor: the link and how many of that page were already given.
- **Writes**: Patient create (conditional on its first identifier where the upstream
  takes ``If-None-Exist``), Appointment create and update (``If-Match`` passed through
  where the upstream versions resources; checked here against a fresh read otherwise).
  A write whose answer was lost is looked up before anyone is told to send it again.

The calls go through the core's vendor client: the source's budget (``rate_limit``),
retries, circuit and the request's deadline apply as to every other source.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import tzinfo
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from adapter.connectors.base import (
    Capabilities,
    ConnectorConfigError,
    Page,
    PaginationLoop,
    ResourceCapability,
    ResourceNotFound,
    WriteNotSupported,
    Written,
    check_supported,
)
from adapter.connectors.config import AtLeast, OneOf, check_source, source_options, vendor_client
from adapter.connectors.writes import found_before_sending, look_after_unknown, unknown_outcome
from adapter.fhir.declared import READS
from adapter.fhir.match import KINDS, matches
from adapter.fhir.outcome import FhirError
from adapter.fhir.search import SearchParam, SearchRequest, UnsupportedParameter
from adapter.transport import (
    KeyPool,
    MalformedResponse,
    NotFound,
    VendorClient,
    VendorError,
    VendorRejected,
)
from adapter.transport.client import make_vendor_http, tls_context
from adapter.transport.ratelimit import Limit
from fhir_upstream_connector.auth import EXTRA_HEADERS, AuthTransport, auth_from_config
from fhir_upstream_connector.ids import Rewriter
from fhir_upstream_connector.statement import Statement, classify, parse_statement
from mappings import IdError, SourceContext
from mappings.common.time import zone

__all__ = ["SOURCE_KEYS", "FhirUpstreamConnector"]

log = logging.getLogger("fhir_adapter")

#: The keys of a ``connector = "fhir-upstream"`` source, besides every source's own.
SOURCE_KEYS: dict[str, Any] = {
    "auth": {
        "type": OneOf(("none", "bearer", "smart")),
        "token": str,
        "client_id": str,
        "private_key": str,
        "algorithm": OneOf(("RS384", "ES384")),
        "key_id": str,
        "token_url": str,
        "scope": str,
    },
    "rate_limit": {
        "per_second": AtLeast(int, 1),
        "per_minute": AtLeast(int, 1),
        "second_window": AtLeast(float, 0, strictly=True),
        "minute_window": AtLeast(float, 0, strictly=True),
        "max_wait": AtLeast(float, 0),
    },
    "types": list[str],
    "page_size": AtLeast(int, 1),
}

# What the facade can search each type by: the parameters its matcher evaluates (so that
# whatever the upstream does not take is still answered exactly). An Appointment's
# location is left out: few servers take it, and matching it over every appointment
# would read them all.
_PARAMS: dict[str, frozenset[str]] = {
    kind: frozenset(params) - ({"location"} if kind == "Appointment" else set())
    for kind, params in KINDS.items()
}
_WRITES: dict[str, frozenset[str]] = {
    "Patient": frozenset({"create"}),
    "Appointment": frozenset({"create", "update"}),
}
_MAX_PAGES = 50  # upstream pages read for one facade page; then a shorter page, and more


class FhirUpstreamConnector:
    """One upstream FHIR R4 server (see the module's docstring)."""

    def __init__(
        self,
        source: str,
        *,
        client: VendorClient,
        base_url: str,
        timezone: str = "UTC",
        country: str | None = None,
        types: tuple[str, ...] | None = None,
        page_size: int = 100,
    ) -> None:
        self.source = source
        self.client = client
        self.base_url = base_url.rstrip("/") + "/"
        self.timezone = timezone
        self._zone = zone(timezone)
        self._country = country
        self.ctx = SourceContext(source, timezone)
        self.page_size = min(page_size, 1000)
        kinds = types if types is not None else tuple(_PARAMS)
        self.capabilities = Capabilities(
            {
                kind: ResourceCapability(
                    _PARAMS[kind], interactions=READS | _WRITES.get(kind, frozenset())
                )
                for kind in kinds
            }
        )
        self._statement: Statement | None = None
        self.ids = Rewriter(source, base_url, self.capabilities.resources)

    @property
    def zone(self) -> tzinfo:
        return self._zone

    @property
    def country(self) -> str | None:
        return self._country

    @classmethod
    def from_config(
        cls,
        source: str,
        config: Mapping[str, Any],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> FhirUpstreamConnector:
        check_source(source, config, SOURCE_KEYS, transport)
        label = f"[sources.{source}]"
        base_url = config.get("base_url")
        if not isinstance(base_url, str) or not base_url:
            raise ConnectorConfigError(f"{label}: 'base_url' is required")
        types = config.get("types")
        if types is not None:
            unknown = sorted(set(types) - set(_PARAMS))
            if unknown:
                raise ConnectorConfigError(
                    f"{label} types: not served by the facade: {', '.join(unknown)} "
                    f"(known: {', '.join(sorted(_PARAMS))})"
                )
        auth = auth_from_config(label, base_url, config.get("auth") or {"type": "none"})
        inner = transport or httpx.AsyncHTTPTransport(verify=tls_context())
        timeout = config.get("timeout") or {}
        http = make_vendor_http(
            base_url,
            timeout=httpx.Timeout(
                float(timeout.get("read", 30.0)), connect=float(timeout.get("connect", 5.0))
            ),
            transport=AuthTransport(inner, auth),
        )
        limits = dict(config.get("rate_limit") or {})
        max_wait = limits.pop("max_wait", None)
        declared = []
        if "per_second" in limits:
            declared.append(Limit(limits["per_second"], limits.get("second_window", 1.0)))
        if "per_minute" in limits:
            declared.append(Limit(limits["per_minute"], limits.get("minute_window", 60.0)))
        pool = KeyPool(
            [_Upstream()], declared, max_wait=float(max_wait) if max_wait is not None else 65.0
        )
        options = source_options(config)
        return cls(
            source,
            client=vendor_client(source, config, http, pool, classify),
            base_url=base_url,
            timezone=str(config.get("timezone", "UTC")),
            country=options.country,
            types=tuple(types) if types is not None else None,
            page_size=int(config.get("page_size", 100)),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def health(self) -> str:
        return self.client.health()

    def limits(self) -> list[tuple[int, float]]:
        return self.client.limits()

    async def probe(self) -> None:
        """The CapabilityStatement, then one Patient (which needs the credentials)."""
        self._statement = None
        await self.statement()
        await self.client.send("GET", "Patient", params={"_count": "1"})

    # -- what the upstream declares ----------------------------------------------------

    async def statement(self) -> Statement:
        """The upstream's CapabilityStatement, read once (again after a failure)."""
        if self._statement is None:
            body = await self.client.get_json("metadata")
            try:
                self._statement = parse_statement(body)
            except (ValueError, KeyError, TypeError):
                raise MalformedResponse(self.source, 200, "not a CapabilityStatement") from None
        return self._statement

    # -- ids and references (see :mod:`.ids`) ------------------------------------------

    def fhir_id(self, upstream_id: str) -> str:
        return self.ids.fhir_id(upstream_id)

    def upstream_id(self, resource_type: str, fhir_id: str) -> str:
        return self.ids.upstream_id(resource_type, fhir_id)

    def to_facade(self, resource: dict[str, Any]) -> dict[str, Any]:
        return self.ids.to_facade(resource)

    def to_upstream(self, resource: dict[str, Any], upstream_id: str | None) -> dict[str, Any]:
        return self.ids.to_upstream(resource, upstream_id)

    # -- reads and searches -------------------------------------------------------------

    async def _served(self, resource_type: str) -> bool:
        statement = await self.statement()
        return resource_type in self.capabilities.resources and (
            "read" in statement.interactions.get(resource_type, frozenset())
            or "search-type" in statement.interactions.get(resource_type, frozenset())
        )

    async def read(self, resource_type: str, fhir_id: str) -> dict[str, Any]:
        upstream = self.upstream_id(resource_type, fhir_id)
        if not await self._served(resource_type):
            raise ResourceNotFound(resource_type, fhir_id)
        try:
            body = await self.client.get_json(f"{resource_type}/{quote(upstream, safe='')}")
        except NotFound:
            raise ResourceNotFound(resource_type, fhir_id) from None
        if not isinstance(body, dict) or body.get("resourceType") != resource_type:
            raise MalformedResponse(self.source, 200, f"not a {resource_type}")
        try:
            return self.to_facade(body)
        except IdError:
            raise ResourceNotFound(resource_type, fhir_id) from None

    async def search(self, request: SearchRequest, cursor: str | None = None) -> Page:
        check_supported(self.capabilities, request)
        kind = request.resource_type
        if not await self._served(kind):
            return Page([], None, total=0)
        local = tuple(p for p in request.params if p.name != "schedule.actor")
        if cursor is None:
            query = await self._query(request)
            if query is None:
                return Page([], None, total=0)
            size = max(1, request.count) if not local else max(request.count, self.page_size)
            url = f"{kind}?{urlencode([*query, ('_count', str(size))])}"
            skip = 0
        else:
            skip_text, _, url = cursor.partition(":")
            if not skip_text.isdigit() or not url or "://" in url:
                raise PaginationLoop("not a cursor of this search")
            skip = int(skip_text)
        return await self._page(request, local, url, skip, first=cursor is None)

    async def _page(
        self,
        request: SearchRequest,
        local: tuple[SearchParam, ...],
        url: str,
        skip: int,
        *,
        first: bool,
    ) -> Page:
        hits: list[dict[str, Any]] = []
        left_out: list[str] = []
        total: int | None = None
        for pages in range(_MAX_PAGES):
            body = await self.client.get_json(url)
            if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
                raise MalformedResponse(self.source, 200, "a search answered no Bundle")
            if first and pages == 0 and not request.params and isinstance(body.get("total"), int):
                total = body["total"]
            if request.count <= 0:  # only the total was asked for
                return Page([], None, total)
            entries = [
                e["resource"]
                for e in body.get("entry") or ()
                if isinstance(e, dict)
                and isinstance(e.get("resource"), dict)
                and (e.get("search") or {}).get("mode", "match") == "match"
                and e["resource"].get("resourceType") == request.resource_type
            ]
            for index in range(skip, len(entries)):
                try:
                    resource = self.to_facade(entries[index])
                except IdError as exc:
                    log.warning("source %s: a record left out: %s", self.source, exc)
                    left_out.append(str(entries[index].get("id", ""))[:80])
                    total = None
                    continue
                if matches(resource, local, self._zone, self._country):
                    hits.append(resource)
                if len(hits) == request.count:
                    if index + 1 < len(entries):
                        return Page(hits, f"{index + 1}:{url}", total, tuple(left_out))
                    following = self._next(body)
                    cursor = f"0:{following}" if following else None
                    return Page(hits, cursor, total, tuple(left_out))
            following = self._next(body)
            if following is None:
                return Page(hits, None, total, tuple(left_out))
            if following == url:
                raise PaginationLoop(f"{self.source}: loop detected in pagination")
            url, skip = following, 0
        return Page(hits, f"0:{url}", None, tuple(left_out))

    def _next(self, bundle: dict[str, Any]) -> str | None:
        """The upstream's ``next`` link, relative to its base; one elsewhere is refused
        (the credentials would go with it)."""
        for link in bundle.get("link") or ():
            if isinstance(link, dict) and link.get("relation") == "next":
                target = link.get("url")
                if not isinstance(target, str) or not target.startswith(self.base_url):
                    raise MalformedResponse(self.source, 200, "a next link off the server")
                return target[len(self.base_url) :]
        return None

    async def _query(self, request: SearchRequest) -> list[tuple[str, str]] | None:
        """The upstream parameters for what it declares (None: nothing can match)."""
        statement = await self.statement()
        kind = request.resource_type
        taken = statement.params.get(kind, frozenset())
        query: list[tuple[str, str]] = []
        for param in request.params:
            if param.name == "schedule.actor":
                if "schedule" not in taken:
                    # Matched here, it would need every Slot's Schedule read: refused.
                    raise UnsupportedParameter(
                        param.name, "the upstream does not search Slots by schedule"
                    )
                schedules = await self._schedules_of(param)
                if not schedules:
                    return None
                query.append(("schedule", ",".join(f"Schedule/{s}" for s in schedules)))
                continue
            if param.name not in taken:
                continue
            pushed = self._pushed(kind, param)
            if pushed is None:
                return None
            if pushed:
                query.append(pushed)
        return query

    def _pushed(self, kind: str, param: SearchParam) -> tuple[str, str] | tuple[()] | None:
        """One parameter as the upstream takes it: ``()`` to match it here only, None
        when no value can match (an id or reference of another source)."""
        if param.modifier not in (None, "exact", "contains"):
            return ()
        entry = KINDS[kind].get(param.name)
        what = entry[0] if entry else "token"
        values: list[str] = []
        if param.name == "_id" or what == "reference":
            for value in param.values:
                ref_kind, slash, fhir_id = value.rpartition("/")
                try:
                    upstream = self.upstream_id(ref_kind or kind, fhir_id)
                except ResourceNotFound:
                    continue
                values.append(f"{ref_kind}/{upstream}" if slash else upstream)
            if not values:
                return None
        elif param.is_date:
            if len(param.values) != 1:
                return ()  # ORed ranges: matched here
            prefix = param.value_prefixes()[0]
            values = [("" if prefix == "eq" else prefix) + param.values[0]]
        else:
            values = [v.replace("\\", "\\\\").replace(",", "\\,") for v in param.values]
        name = f"{param.name}:{param.modifier}" if param.modifier else param.name
        return name, ",".join(values)

    async def _schedules_of(self, param: SearchParam) -> list[str]:
        """The upstream ids of the Schedules of the actors a ``schedule.actor`` names."""
        refs = []
        for value in param.values:
            ref_kind, _, fhir_id = value.rpartition("/")
            try:
                self.upstream_id("Schedule", fhir_id)
            except ResourceNotFound:
                continue
            refs.append(f"{ref_kind or 'Practitioner'}/{fhir_id}")
        if not refs:
            return []
        request = SearchRequest("Schedule", (SearchParam("actor", tuple(refs)),), count=100)
        found: list[str] = []
        cursor: str | None = None
        while True:
            page = await self.search(request, cursor)
            found += [self.upstream_id("Schedule", r["id"]) for r in page.resources]
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    # -- writes -------------------------------------------------------------------------

    async def _writable(self, resource_type: str, interaction: str) -> Statement:
        cap = self.capabilities.resources.get(resource_type)
        if cap is None or interaction not in cap.interactions:
            raise WriteNotSupported(self.source, resource_type, interaction)
        statement = await self.statement()
        if interaction not in statement.interactions.get(resource_type, frozenset()):
            raise WriteNotSupported(self.source, resource_type, interaction)
        return statement

    async def _look(self, resource_type: str, sent: dict[str, Any]) -> dict[str, Any] | None:
        """What a create whose answer was lost may have made: found by its identifier,
        or (an Appointment) by its patient and start; None when surely not there."""
        identifier = _first_identifier(sent)
        if identifier is not None:
            params: tuple[SearchParam, ...] = (SearchParam("identifier", (identifier,)),)
        elif resource_type == "Appointment" and sent.get("start"):
            patients = [
                (p.get("actor") or {}).get("reference", "")
                for p in sent.get("participant") or ()
                if str((p.get("actor") or {}).get("reference", "")).startswith("Patient/")
            ]
            if not patients:
                raise LookupError("nothing to look by")
            params = (SearchParam("patient", (patients[0],)),)
        else:
            raise LookupError("nothing to look by")
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await self.search(SearchRequest(resource_type, params, count=100), cursor)
            found += page.resources
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        keys = [k for k in sent if k not in ("resourceType", "id", "meta")]
        same = [r for r in found if all(r.get(k) == sent[k] for k in keys)]
        if len(same) > 1:
            raise LookupError("several match")
        return same[0] if same else None

    async def create(
        self, resource_type: str, resource: dict[str, Any], *, look_first: bool = False
    ) -> Written:
        statement = await self._writable(resource_type, "create")
        body = self.to_upstream(resource, None)
        wanted = {k: v for k, v in resource.items() if k not in ("id", "meta")}
        if look_first:
            found = await found_before_sending(
                self.source, lambda: self._look(resource_type, wanted)
            )
            if found is not None:
                return Written(found, created=True)
        headers: dict[str, str] = {}
        identifier = _first_identifier(resource)
        if resource_type in statement.conditional_create and identifier is not None:
            headers["if-none-exist"] = urlencode({"identifier": identifier})
        try:
            status, answer = await self._send("POST", resource_type, body, headers)
        except VendorError as exc:
            if unknown_outcome(exc):
                return await look_after_unknown(
                    self.source, exc, lambda: self._look(resource_type, wanted)
                )
            raise
        return Written(self.to_facade(answer), created=status == 201)

    async def update(
        self,
        resource_type: str,
        fhir_id: str,
        resource: dict[str, Any],
        *,
        if_match: str | None = None,
    ) -> Written:
        statement = await self._writable(resource_type, "update")
        upstream = self.upstream_id(resource_type, fhir_id)
        body = self.to_upstream(resource, upstream)
        headers: dict[str, str] = {}
        if if_match is not None:
            current = await self.read(resource_type, fhir_id)
            # The version served is the upstream's own where it keeps one (with_version
            # leaves it), else a digest of the content: compared here, before any change.
            if current["meta"]["versionId"] != if_match:
                raise _stale()
            if resource_type in statement.versioned:
                headers["if-match"] = f'W/"{if_match}"'

        path = f"{resource_type}/{quote(upstream, safe='')}"
        try:
            _, answer = await self._send("PUT", path, body, headers)
        except VendorRejected as exc:
            if exc.status == 412:
                raise _stale() from None
            raise
        except NotFound:
            raise ResourceNotFound(resource_type, fhir_id) from None
        except VendorError as exc:
            if not unknown_outcome(exc):
                raise
            wanted = {k: v for k, v in resource.items() if k not in ("id", "meta")}

            async def look() -> dict[str, Any] | None:
                now = await self.read(resource_type, fhir_id)
                return now if all(now.get(k) == v for k, v in wanted.items()) else None

            return await look_after_unknown(self.source, exc, look, created=False)
        if not isinstance(answer, dict) or answer.get("resourceType") != resource_type:
            return Written(await self.read(resource_type, fhir_id), created=False)
        return Written(self.to_facade(answer), created=False)

    async def _send(
        self, method: str, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, Any]:
        token = EXTRA_HEADERS.set(
            {"prefer": "return=representation", "content-type": "application/fhir+json", **headers}
        )
        try:
            status, answer = await self.client.send(method, path, json=body)
        finally:
            EXTRA_HEADERS.reset(token)
        resource = isinstance(answer, dict) and answer.get("resourceType") == body["resourceType"]
        if method == "POST" and not resource:
            # Made, by the upstream's success, but its id is not known: looked up.
            broken = MalformedResponse(self.source, status, "a create answered no resource")
            broken.committed_unknown = True
            raise broken
        return status, answer


def _stale() -> FhirError:
    return FhirError.one(
        412, "conflict", "If-Match names a version that is no longer current: read it again"
    )


class _Upstream:
    """The pool's one key: the credentials themselves go on in :mod:`.auth`."""

    label = "upstream"

    def headers(self) -> dict[str, str]:
        return {}  # the client asks for application/json, which FHIR servers answer


def _first_identifier(resource: dict[str, Any]) -> str | None:
    for ident in resource.get("identifier") or ():
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            system = ident.get("system")
            return f"{system}|{ident['value']}" if isinstance(system, str) else ident["value"]
    return None
