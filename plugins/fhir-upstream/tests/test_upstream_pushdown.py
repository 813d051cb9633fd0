"""What the connector sends upstream never loses a match, and what it matches itself is
exact: for searches drawn at random over the sandbox's patients, the connector's answer is
what an R4 search evaluator written from the specification alone (the core's
``tests/search_oracle.py``) finds over every patient."""

from __future__ import annotations

import asyncio
from datetime import UTC
from functools import cache
from typing import Any

from fhir_upstream_connector import FhirUpstreamConnector
from fhir_upstream_connector.sandbox import FhirSandbox
from hypothesis import given, settings
from hypothesis import strategies as st
from search_oracle import Oracle

from adapter.fhir.search import SearchParam, SearchRequest


@cache
def world() -> tuple[FhirSandbox, list[dict[str, Any]]]:
    sandbox = FhirSandbox(seed=4, patients=60)

    async def every() -> list[dict[str, Any]]:
        c = connect(sandbox)
        try:
            return await answer(c, SearchRequest("Patient", count=100))
        finally:
            await c.aclose()

    return sandbox, asyncio.run(every())


def connect(sandbox: FhirSandbox) -> FhirUpstreamConnector:
    config = {"connector": "fhir-upstream", **sandbox.defaults()}
    return FhirUpstreamConnector.from_config("up", config, transport=sandbox.transport())


async def answer(c: FhirUpstreamConnector, request: SearchRequest) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        page = await c.search(request, cursor)
        out += page.resources
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


@st.composite
def searches(draw: st.DrawFn) -> tuple[SearchParam, ...]:
    _, patients = world()
    patient = draw(st.sampled_from(patients))
    params: list[SearchParam] = []
    if draw(st.booleans()):
        family = patient["name"][0]["family"]
        cut = draw(st.integers(1, len(family)))
        text = family[:cut]
        text = draw(st.sampled_from([text, text.lower(), text.upper()]))
        modifier = draw(st.sampled_from([None, None, "exact", "contains"]))
        params.append(SearchParam("family", (text,), modifier))
    if draw(st.booleans()):
        params.append(SearchParam("gender", (draw(st.sampled_from(["female", "male"])),)))
    if draw(st.booleans()):
        born = patient["birthDate"]
        value = draw(st.sampled_from([born[:4], born[:7], born]))
        prefix = draw(st.sampled_from(["eq", "ge", "le", "gt", "lt"]))
        params.append(SearchParam("birthdate", (value,), prefix=prefix))
    if draw(st.booleans()) and patient.get("identifier"):
        ident = draw(st.sampled_from(patient["identifier"]))
        if "system" in ident and "value" in ident:
            params.append(SearchParam("identifier", (f"{ident['system']}|{ident['value']}",)))
    return tuple(params)


@settings(deadline=None)  # a shared machine: no time limit per example
@given(params=searches(), count=st.integers(1, 30))
def test_the_answer_is_every_match_and_only_matches(params, count):
    sandbox, patients = world()
    c = connect(sandbox)

    async def run() -> list[dict[str, Any]]:
        try:
            return await answer(c, SearchRequest("Patient", params, count=count))
        finally:
            await c.aclose()

    got = [p["id"] for p in asyncio.run(run())]
    oracle = Oracle({"up": UTC}, "http://fhir.test/fhir")
    items = [(_key(p), _raw(p)) for p in params]
    expected = [p["id"] for p in patients if oracle.matches("Patient", p, items)]
    assert got == expected


def _key(param: SearchParam) -> str:
    return f"{param.name}:{param.modifier}" if param.modifier else param.name


def _raw(param: SearchParam) -> str:
    prefix = "" if param.prefix in (None, "eq") else param.prefix
    return prefix + param.values[0]
