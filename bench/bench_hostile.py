"""How long hostile input takes to be answered, and how long a search holds the event loop.

The tests check what hostile input is answered with (``tests/unit/api/test_hostile_input.py``,
``tests/property/test_search_fuzz.py``): a refusal naming what is wrong, made where the
input is read, and never a server error. How long that takes is a figure of the machine as
much as of the code, so it is measured here, on the same inputs, over the same in-process
app (both sandboxes behind the open facade, :mod:`hostile`):

- **Refusals**: each input the hostile-input tests send, answered ``--runs`` times; the
  median and the slowest answer.
- **The largest search allowed** (every bound at once, text that folds long): a ticker
  measures the longest the event loop went without turning while the search is matched
  in memory; the collector is held off and the best of ``--runs`` is kept, so that it is
  the request's own work that shows, not a shared machine's other work.
- **Fuzzed searches**: ``--examples`` searches drawn, derandomized, from the fuzz test's
  strategies (:mod:`searches`), each by GET; the median, the 99th percentile and the
  slowest, with what it was.

    .venv/bin/python bench/bench_hostile.py                 # --runs 5 --examples 2000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "tests", ROOT / "tests" / "unit" / "api", ROOT / "tests" / "property"):
    sys.path.insert(0, str(folder))

from hostile import (  # noqa: E402
    JSON,
    LARGE_PREFER,
    LARGEST_SEARCH,
    MEGABYTE_OF_NESTING,
    client,
    open_app,
    sandboxes,
)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from searches import known, searches  # noqa: E402

from adapter.api.fhir import MAX_FORM  # noqa: E402
from adapter.api.writes import MAX_DEPTH  # noqa: E402
from adapter.fhir.params import MAX_VALUE, MAX_VALUES  # noqa: E402

FORM = {"content-type": "application/x-www-form-urlencoded"}

Ask = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


def _deep(levels: int) -> bytes:
    inner: dict = {"url": "http://example.org/x", "valueString": "x"}
    for _ in range(levels):
        inner = {"url": "http://example.org/x", "extension": [inner]}
    return json.dumps({"resourceType": "Patient", "extension": [inner]}).encode()


async def _streamed(chunks: int) -> AsyncIterator[bytes]:
    for _ in range(chunks):
        yield b"a" * (64 << 10)


def _get(params: object, headers: dict[str, str] | None = None) -> Ask:
    return lambda http: http.get("/fhir/Patient", params=params, headers=headers)


def _post(path: str, body: Callable[[], object], headers: dict[str, str]) -> Ask:
    return lambda http: http.post(path, content=body(), headers=headers)  # type: ignore[arg-type]


CASES: dict[str, Ask] = {
    "_count of 4,300 digits": _get({"_count": "9" * 4300}),
    "_count of a non-ASCII digit": _get({"_count": "٣"}),
    "a value past its bound": _get({"name": "a" * (MAX_VALUE + 1)}),
    "_id past its number of values": _get(
        {"_id": ",".join(f"x{i}" for i in range(MAX_VALUES + 1))}
    ),
    "name:contains folding into 540": _get({"name:contains": "\ufdfa" * 30}),
    "a 5 MB form (Content-Length)": _post(
        "/fhir/Patient/_search", lambda: b"name=" + b"a" * (5 << 20), FORM
    ),
    "a 5 MB form (streamed)": _post("/fhir/Patient/_search", lambda: _streamed(80), FORM),
    f"a form of {MAX_FORM} bytes": _post(
        "/fhir/Patient/_search", lambda: b"name=" + b"a" * MAX_FORM, FORM
    ),
    "an extension nested 120 deep": _post("/fhir/Patient", lambda: _deep(120), JSON),
    "arrays nested 2,000 deep": _post("/fhir/Patient", lambda: b"[" * 2000 + b"]" * 2000, JSON),
    f"arrays nested {MAX_DEPTH} deep": _post(
        "/fhir/Patient",
        lambda: b'{"resourceType": "Patient", "x": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}",
        JSON,
    ),
    "a megabyte of nesting": _post("/fhir/Patient", lambda: MEGABYTE_OF_NESTING, JSON),
    "a Prefer header of 1,000 items": _get({"gender": "male"}, {"prefer": LARGE_PREFER}),
}


async def timed(http: httpx.AsyncClient, ask: Ask) -> tuple[float, int]:
    started = time.perf_counter()
    response = await ask(http)
    return time.perf_counter() - started, response.status_code


async def refusals(runs: int) -> None:
    print(f"Refusals ({runs} runs each): median and slowest, ms")
    print(f"  {'input':<36} {'status':>6} {'median':>8} {'slowest':>8}")
    async with client(open_app(sandboxes())) as http:
        for name, ask in CASES.items():
            results = [await timed(http, ask) for _ in range(runs)]
            seconds = [s for s, _ in results]
            status = results[0][1]
            print(
                f"  {name:<36} {status:>6} {statistics.median(seconds) * 1000:>8.1f}"
                f" {max(seconds) * 1000:>8.1f}"
            )


async def loop_gap(runs: int) -> None:
    async with client(open_app(sandboxes())) as http:

        async def one() -> tuple[float, float]:
            gaps: list[float] = []

            async def ticker() -> None:
                last = time.perf_counter()
                while True:
                    await asyncio.sleep(0.001)
                    now = time.perf_counter()
                    gaps.append(now - last)
                    last = now

            ticking = asyncio.create_task(ticker())
            await asyncio.sleep(0.01)
            try:
                seconds, status = await timed(http, _get(LARGEST_SEARCH))
            finally:
                ticking.cancel()
            assert status == 200, status
            return max(gaps), seconds

        gc.disable()
        try:
            measured = [await one() for _ in range(runs)]
        finally:
            gc.enable()
    gap, seconds = min(measured)
    print(
        f"The largest search allowed: longest loop gap {gap * 1000:.1f} ms "
        f"(best of {runs}), answered in {seconds * 1000:.1f} ms"
    )


def fuzzed(examples: int) -> None:
    loop = asyncio.new_event_loop()
    http = client(open_app(sandboxes()))

    params, references = loop.run_until_complete(known(http))
    answered: list[tuple[float, str]] = []

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        resource_type, items = data.draw(searches(params, references, date.today()))
        ask = lambda h: h.get(f"/fhir/{resource_type}", params=items)  # noqa: E731
        seconds, status = loop.run_until_complete(timed(http, ask))
        answered.append((seconds, f"{status} GET {resource_type} {items!r}"[:160]))

    one()
    loop.run_until_complete(http.aclose())
    loop.close()
    times = sorted(s for s, _ in answered)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(
        f"Fuzzed searches ({len(times)}): median {statistics.median(times) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, slowest {times[-1] * 1000:.1f} ms:"
    )
    for seconds, what in sorted(answered, reverse=True)[:3]:
        print(f"  {seconds * 1000:>8.1f} ms  {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--examples", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(refusals(args.runs))
    asyncio.run(loop_gap(args.runs))
    fuzzed(args.examples)


if __name__ == "__main__":
    main()
