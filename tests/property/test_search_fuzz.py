"""Searches with anything in them, against both sandboxes: never a 5xx, never a hang, and
every answer right.

The searches are drawn from :mod:`searches`: every search parameter the
CapabilityStatement lists for a type and the result parameters every type takes, with
values of their kind and of no kind at all. Each is asked by GET and again by a POST
``_search`` form, sometimes with ``Prefer: handling=strict``. What is checked of each:

- the answer is a Bundle or a 4xx OperationOutcome: a bad value is the client's mistake
  to be told of, never the server's failure;
- GET and POST give the same status, and the same matches;
- every match meets every filter the independent R4 evaluator (:mod:`search_oracle`)
  can read, over the resource as the facade returned it (a filter with a modifier the
  evaluator does not take, or a value it cannot read, is left out of that check);
- paged to the end, the pages hold each match once, and a ``total``, where given, is
  their number.

The sandboxes are :mod:`search_world`'s: their data and clocks are those of a fixed day,
so a drawn search asks the same of the same records whenever it runs. How long the
answers take is measured by ``bench/bench_hostile.py`` over the same searches; here a
search that does not end at all fails after a generous safety net.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from search_oracle import Oracle
from search_world import ANCHOR, ZONES, search_world
from searches import known, searches

# Searches, each asked twice and paged to its end: twice the profile's count (300 by
# default; HYPOTHESIS_PROFILE=explore for thousands).
EXAMPLES = 2 * settings.default.max_examples
SAFETY_NET = 60.0  # seconds: a search still unanswered then is taken to hang
BASE = "http://fhir.test/fhir"
# Parameters that shape the answer rather than filter it.
RESULT = {
    "_count",
    "_sort",
    "_elements",
    "_summary",
    "_include",
    "_revinclude",
    "_total",
    "_format",
    "_pretty",
    "_cursor",
    "_contained",
    "_containedType",
}
# The modifiers the evaluator reads (any other leaves its filter out of the check).
READ_MODIFIERS = {"", "exact", "contains", "below"}
MAX_PAGES = 40


class World:
    """The app over both sandboxes, an event loop to drive it from hypothesis's
    synchronous examples, what searches are drawn from, and the evaluator."""

    def __init__(self, directory: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._made = search_world(directory)
        made = self.loop.run_until_complete(self._made.__aenter__())
        self.http: httpx.AsyncClient = made.http
        self.params, self.references = self.run(known(self.http))
        schedules = self.run(self.every("Schedule"))
        zones = {source: ZoneInfo(zone) for source, zone in ZONES.items()}
        self.oracle = Oracle(zones, BASE, schedules)

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(work, SAFETY_NET))

    async def every(self, resource_type: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        url: str | None = f"/fhir/{resource_type}?_count=100"
        while url is not None:
            bundle = (await self.http.get(url)).json()
            found += [e["resource"] for e in bundle.get("entry", []) if _is_match(e)]
            url = _next(bundle)
        return found

    def close(self) -> None:
        self.loop.run_until_complete(self._made.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    made = World(tmp_path_factory.mktemp("fuzz"))
    yield made
    made.close()


def _is_match(entry: dict[str, Any]) -> bool:
    return entry.get("search", {}).get("mode") == "match"


def _next(bundle: dict[str, Any]) -> str | None:
    return next((x["url"] for x in bundle.get("link", []) if x["relation"] == "next"), None)


def _matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if _is_match(e)]


def _envelope(response: httpx.Response, what: str) -> dict[str, Any]:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    body: dict[str, Any] = response.json()
    if response.status_code >= 400:
        OperationOutcome.model_validate(body)
    else:
        assert response.status_code == 200, what
        assert body["resourceType"] == "Bundle" and body["type"] == "searchset", what
    return body


def _filters(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The items the evaluator can hold a match to: filters with a modifier it reads."""
    return [
        (key, value)
        for key, value in items
        if key.partition(":")[0] not in RESULT and key.partition(":")[2] in READ_MODIFIERS
    ]


def _unmet(
    oracle: Oracle, resource_type: str, resource: dict[str, Any], filters: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The filters ``resource`` does not meet, of those the evaluator can read."""
    unmet = []
    for item in filters:
        try:
            held = oracle.matches(resource_type, resource, [item])
        except (ValueError, KeyError, IndexError):  # a parameter or value it cannot read
            event("a filter the evaluator cannot read")
            continue
        if not held:
            unmet.append(item)
    return unmet


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_every_search_is_answered_rightly(world, data):
    resource_type, items = data.draw(
        searches(world.params, world.references, ANCHOR), label="search"
    )
    headers = {"prefer": "handling=strict"} if data.draw(st.booleans(), label="strict") else {}
    what = f"{resource_type} {items!r} {headers}"
    form = {"content-type": "application/x-www-form-urlencoded", **headers}
    try:
        got = world.run(world.http.get(f"/fhir/{resource_type}", params=items, headers=headers))
        posted = world.run(
            world.http.post(
                f"/fhir/{resource_type}/_search", content=urlencode(items).encode(), headers=form
            )
        )
    except TimeoutError:
        raise AssertionError(f"{what}: no answer within {SAFETY_NET:g} s") from None
    event(f"{resource_type} {got.status_code}")  # --hypothesis-show-statistics
    body = _envelope(got, f"GET {what}")
    by_post = _envelope(posted, f"POST {what}")
    assert posted.status_code == got.status_code, f"{what}: GET and POST differ"
    if got.status_code != 200:
        return
    assert [r["id"] for r in _matches(by_post)] == [r["id"] for r in _matches(body)], what
    subsetted = any(k.partition(":")[0] in ("_elements", "_summary") for k, _ in items)
    filters = [] if subsetted else _filters(items)
    seen: list[str] = []
    pages = 0
    while True:
        for resource in _matches(body):
            unmet = _unmet(world.oracle, resource_type, resource, filters)
            assert not unmet, f"{what}: {resource['id']} does not meet {unmet}"
            seen.append(resource["id"])
        if "total" in body:
            event("a total given")
        following = _next(body)
        pages += 1
        if following is None or pages == MAX_PAGES:
            break
        page = world.run(world.http.get(following))
        body = _envelope(page, f"GET {what}, page {pages + 1}")
        assert page.status_code == 200, f"{what}, page {pages + 1}: {page.text[:300]}"
    assert len(seen) == len(set(seen)), f"{what}: a match on two pages"
    # _summary=count and _count=0 give the total without the matches.
    counted = any(k == "_summary" or (k, v.strip()) == ("_count", "0") for k, v in items)
    if following is None and "total" in body and not counted:
        assert body["total"] == len(seen), f"{what}: total {body['total']}, {len(seen)} found"
