"""Source routing, fan-out and merging: what sits between the routes and the connectors.

Reads go to the source the id names. A search is asked of every source serving the type
(narrowed by ``_source``) at once, and the pages are merged:

- with ``_count`` at least the number of sources, each source has a fixed share of the
  page (20 over two sources: 10 each) and is asked concurrently; a source that runs out
  leaves its share empty, so later pages may be shorter than ``_count``;
- with fewer, the sources are served one after another, ``_count`` at a time.

A page's state (the search, each source's own cursor, the total when exact) goes into a
signed cursor (:mod:`adapter.fhir.cursor`), so any worker serves the next page. A source
that fails is named in an OperationOutcome entry and asked again on the next page; only
when every source asked fails is the whole search an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapter.connectors.base import Connector, ResourceNotFound, iterate
from adapter.fhir.outcome import FhirError, Issue, from_exception, vendor_issue
from adapter.fhir.params import ParsedSearch
from adapter.fhir.search import SearchParam, SearchRequest, UnsupportedParameter
from adapter.transport import VendorError
from mappings import MappingError, decode_id

__all__ = ["Facade", "SearchPage"]

# The parts of a page's state that differ between pages of one search.
_MOVING = ("at", "done", "tot", "first")
_INCLUDE_REFS = {"Appointment:patient": ("Appointment", "Patient")}


@dataclass
class SearchPage:
    matches: list[dict[str, Any]] = field(default_factory=list)
    includes: list[dict[str, Any]] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    total: int | None = None
    next_state: dict[str, Any] | None = None
    previous_state: dict[str, Any] | None = None


class Facade:
    def __init__(
        self, connectors: Mapping[str, Connector], read_only: frozenset[str] = frozenset()
    ) -> None:
        self.connectors = dict(connectors)
        self.read_only = read_only  # sources configured `read_only = true`: no writes
        self._declared()

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.connectors.values()))

    # -- what the sources can do ----------------------------------------------------------

    def resource_types(self) -> list[str]:
        return self._types

    def serving(self, resource_type: str) -> list[str]:
        return self._serving.get(resource_type, [])

    def supported_params(self, resource_type: str) -> dict[str, set[str]]:
        """Search parameter -> the sources that take it."""
        return self._params.get(resource_type, {})

    def interactions(self, resource_type: str) -> set[str]:
        """What some source can do with this type (writes only from writable sources)."""
        out: set[str] = set()
        for name in self.serving(resource_type):
            declared = set(self.connectors[name].capabilities.resources[resource_type].interactions)
            if name in self.read_only:
                declared &= {"read", "search-type"}
            out |= declared
        return out

    def includes(self, resource_type: str) -> set[str]:
        return self._include_map.get(resource_type, set())

    def _declared(self) -> None:
        """What the sources declare, gathered once (connectors are fixed for a facade)."""
        self._types = sorted(
            {t for c in self.connectors.values() for t in c.capabilities.resources}
        )
        self._serving: dict[str, list[str]] = {}
        self._params: dict[str, dict[str, set[str]]] = {}
        self._include_map: dict[str, set[str]] = {}
        for name, c in self.connectors.items():
            for resource_type, cap in c.capabilities.resources.items():
                self._serving.setdefault(resource_type, []).append(name)
                params = self._params.setdefault(resource_type, {})
                for param in cap.search_params:
                    params.setdefault(param, set()).add(name)
                known = set(cap.includes) & set(_INCLUDE_REFS)
                self._include_map.setdefault(resource_type, set()).update(known)

    def owner(self, fhir_id: str) -> str | None:
        """The configured source an id names, if any."""
        try:
            source = decode_id(fhir_id).source
        except MappingError:
            return None
        return source if source in self.connectors else None

    def writable(self, resource_type: str, interaction: str = "create") -> list[str]:
        return [
            n
            for n in self.serving(resource_type)
            if n not in self.read_only
            and interaction in self.connectors[n].capabilities.resources[resource_type].interactions
        ]

    async def source_for_create(
        self, resource_type: str, resource: dict[str, Any], allowed: frozenset[str] | None = None
    ) -> str:
        """Where a new resource goes: an Appointment to its Patient's source; a Patient to
        ``meta.source``, else the one source that takes it, else a 422 saying how to choose."""
        writable = [n for n in self.writable(resource_type) if allowed is None or n in allowed]
        if not writable:
            raise FhirError.one(405, "not-supported", f"no source takes new {resource_type}s")
        if resource_type == "Appointment":
            patients = [
                ((p or {}).get("actor") or {}).get("reference") or ""
                for p in resource.get("participant") or ()
            ]
            refs = [r for r in patients if r.startswith("Patient/")]
            if len(refs) != 1:
                raise FhirError.one(
                    422,
                    "required",
                    "an Appointment names exactly one Patient",
                    "Appointment.participant",
                )
            patient_id = refs[0].split("/", 1)[1]
            source = self.owner(patient_id)
            if allowed is not None and source not in allowed:
                source = None
            if source is not None:
                try:
                    await self.read("Patient", patient_id)
                except FhirError as exc:
                    if exc.status != 404:
                        raise
                    source = None
            if source is None:
                raise FhirError.one(
                    422, "not-found", f"{refs[0]} is not a known patient", "Appointment.participant"
                )
            if source not in writable:
                raise FhirError.one(422, "not-supported", f"source {source} takes no bookings")
            return source
        wanted = (resource.get("meta") or {}).get("source")
        if wanted is not None:
            if wanted not in self.connectors or (allowed is not None and wanted not in allowed):
                raise FhirError.one(
                    422,
                    "not-found",
                    f"meta.source names no configured source; use one of: {', '.join(writable)}",
                    f"{resource_type}.meta.source",
                )
            if wanted not in writable:
                raise FhirError.one(
                    422,
                    "not-supported",
                    f"source {wanted} does not take new {resource_type}s",
                    f"{resource_type}.meta.source",
                )
            return wanted
        if len(writable) == 1:
            return writable[0]
        raise FhirError.one(
            422,
            "required",
            f"set meta.source to the source to create in: one of {', '.join(writable)}",
            f"{resource_type}.meta.source",
        )

    # -- read -----------------------------------------------------------------------------

    async def read(
        self, resource_type: str, fhir_id: str, allowed: frozenset[str] | None = None
    ) -> dict[str, Any]:
        """One resource, from the source its id names (``allowed``: the sources the caller
        may see; any other is as unknown as one that is not configured)."""
        try:
            source = decode_id(fhir_id).source
        except MappingError:
            source = None
        if allowed is not None and source not in allowed:
            source = None
        connector = self.connectors.get(source) if source else None
        if connector is None or resource_type not in connector.capabilities.resources:
            raise _not_found(resource_type, fhir_id)
        try:
            return await connector.read(resource_type, fhir_id)
        except ResourceNotFound:
            raise _not_found(resource_type, fhir_id) from None
        except (VendorError, MappingError) as exc:
            raise from_exception(exc) from None

    # -- search ---------------------------------------------------------------------------

    def first_state(
        self, parsed: ParsedSearch, only: tuple[str, ...] | None = None
    ) -> tuple[dict[str, Any], list[Issue]]:
        """The state of a search's first page, and issues about sources left out."""
        request = parsed.request
        names = self.serving(request.resource_type)
        if request.sources is not None:
            names = [n for n in names if n in request.sources]
        if only is not None:
            names = [n for n in names if n in only]
        issues = []
        order = []
        for name in names:
            cap = self.connectors[name].capabilities.resources[request.resource_type]
            missing = sorted({p.name for p in request.params} - set(cap.search_params))
            if missing:
                issues.append(
                    Issue(
                        "warning",
                        "not-supported",
                        f"source {name} cannot search by {', '.join(missing)}; "
                        "its results are left out",
                        tuple(missing),
                    )
                )
            else:
                order.append(name)
        count = request.count
        lanes = len(order) if count >= len(order) else 1
        shares = {n: count for n in order}
        if lanes > 1:
            shares = {
                n: count // lanes + (1 if i < count % lanes else 0) for i, n in enumerate(order)
            }
        state = {
            "t": request.resource_type,
            "p": [[p.name, p.modifier, p.prefix, list(p.values)] for p in request.params],
            "n": count,
            "inc": list(parsed.includes),
            "order": order,
            "lanes": lanes,
            "share": shares,
            "at": {},  # source -> its connector's cursor, once past its first page
            "done": [],
            "tot": None,
            "first": True,
            "skip": len(issues),
        }
        return state, issues

    @staticmethod
    def request_of(state: dict[str, Any]) -> SearchRequest:
        params = tuple(SearchParam(n, tuple(v), m, p) for n, m, p, v in state["p"])
        return SearchRequest(state["t"], params, count=state["n"])

    async def search_page(self, state: dict[str, Any], issues: list[Issue]) -> SearchPage:
        request = self.request_of(state)
        pending = [n for n in state["order"] if n not in state["done"]]
        asked = pending[: state["lanes"]]
        results = await _gather([self._one_source(n, request, state) for n in asked])
        page = SearchPage(issues=list(issues))
        following = {**state, "at": dict(state["at"]), "done": list(state["done"]), "first": False}
        failures: list[tuple[int, Issue]] = []
        totals: list[int | None] = []
        for name, result in zip(asked, results, strict=True):
            if isinstance(result, BaseException):
                failures.append(_failure(name, result))
                totals.append(None)
                continue
            page.matches.extend(result.resources)
            totals.append(result.total)
            if result.next_cursor is None:
                following["done"].append(name)
                following["at"].pop(name, None)
            else:
                following["at"][name] = result.next_cursor
        if failures and len(failures) == len(asked):
            raise _all_failed(failures)
        page.issues.extend(f[1] for f in failures)
        page.total = state.get("tot")
        complete = not failures and not state["skip"] and len(asked) == len(state["order"])
        if state["first"] and complete and all(t is not None for t in totals):
            page.total = sum(t for t in totals if t is not None)
        following["tot"] = page.total
        if any(n not in following["done"] for n in state["order"]):
            # Only what moves from page to page: the search itself is the same.
            following["prev"] = {k: state[k] for k in _MOVING}
            page.next_state = following
        if state.get("prev") is not None:
            kept = {k: v for k, v in state.items() if k not in _MOVING and k != "prev"}
            page.previous_state = {**kept, **state["prev"]}
        if state["inc"]:
            page.includes, include_issues = await self._includes(state["inc"], page.matches)
            page.issues.extend(include_issues)
        return page

    async def _one_source(self, name: str, request: SearchRequest, state: dict[str, Any]):
        connector = self.connectors[name]
        sub = SearchRequest(request.resource_type, request.params, count=state["share"][name])
        return await connector.search(sub, state["at"].get(name))

    async def _includes(
        self, includes: list[str], matches: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[Issue]]:
        wanted: dict[str, tuple[str, str]] = {}
        for include in includes:
            _, target = _INCLUDE_REFS[include]
            for resource in matches:
                for participant in resource.get("participant") or ():
                    ref = (participant.get("actor") or {}).get("reference") or ""
                    kind, _, fhir_id = ref.rpartition("/")
                    if kind == target and fhir_id:
                        wanted[ref] = (kind, fhir_id)
        found = await asyncio.gather(
            *(self.read(kind, fhir_id) for kind, fhir_id in wanted.values()),
            return_exceptions=True,
        )
        out, issues = [], []
        for (ref, _), result in zip(wanted.items(), found, strict=True):
            if isinstance(result, FhirError):
                if result.status != 404:
                    issues.append(Issue("warning", "incomplete", f"{ref} could not be included"))
                continue
            if isinstance(result, BaseException):
                raise result
            out.append(result)
        return out, issues

    async def count(
        self, parsed: ParsedSearch, only: frozenset[str] | None = None
    ) -> tuple[int, list[Issue]]:
        """The exact number of matches (pages through sources whose total is not exact)."""
        state, issues = self.first_state(parsed, only=tuple(only) if only is not None else None)
        request = self.request_of(state)

        async def one(name: str) -> int:
            connector = self.connectors[name]
            first = await connector.search(
                SearchRequest(request.resource_type, request.params, count=1)
            )
            if first.total is not None:
                return first.total
            return sum([1 async for _ in iterate(connector, request)])

        results = await asyncio.gather(*(one(n) for n in state["order"]), return_exceptions=True)
        total = 0
        failures = []
        for name, result in zip(state["order"], results, strict=True):
            if isinstance(result, BaseException):
                failures.append(_failure(name, result))
            else:
                total += result
        if failures:
            raise _all_failed(failures)  # a count with a source missing is not a count
        return total, issues


async def _gather(calls: list) -> list:
    """``asyncio.gather(..., return_exceptions=True)``, without a task for a lone call."""
    if len(calls) == 1:
        try:
            return [await calls[0]]
        except Exception as exc:
            return [exc]
    return await asyncio.gather(*calls, return_exceptions=True)


def _not_found(resource_type: str, fhir_id: str) -> FhirError:
    return FhirError.one(404, "not-found", f"{resource_type}/{fhir_id} is not known here")


def _failure(name: str, exc: BaseException) -> tuple[int, Issue, float | None]:
    if isinstance(exc, VendorError | MappingError):
        return (*vendor_issue(exc, name), getattr(exc, "retry_after", None))
    if isinstance(exc, UnsupportedParameter):
        return (
            400,
            Issue(
                "error",
                "not-supported",
                f"source {name} cannot search by {exc.parameter}: {exc.reason}",
                (exc.parameter,),
            ),
            None,
        )
    if isinstance(exc, FhirError):
        return exc.status, exc.issues[0], None
    raise exc


def _all_failed(failures: list[tuple[int, Issue, float | None]]) -> FhirError:
    """Every source asked failed: one status for all (502 when they differ), every issue,
    and the longest wait any of them asked for."""
    statuses = {f[0] for f in failures}
    status = statuses.pop() if len(statuses) == 1 else 502
    waits = [f[2] for f in failures if f[2] is not None]
    headers = {"Retry-After": str(max(1, round(max(waits))))} if waits else {}
    return FhirError(status, [f[1] for f in failures], headers)
