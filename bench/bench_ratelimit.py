"""Share of Nyra's rate-limit budget a long paging run achieves, and the 429s it meets.

Nyra allows each API key 12 requests per second and 60 per minute (fixed windows). Time
is scaled down here (``--scale``, default 30: a "minute" of 2 s) with the same counts, so
a run of many minute-windows takes seconds; the share of the budget is what counts. A
run pages through every Patient of an in-process sandbox (``--patients``, pages of
``--page``), from the start again at the end: one window of warm-up, then ``--minutes``
windows measured; requests are counted where the sandbox received them.

    .venv/bin/python bench/bench_ratelimit.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from adapter.connectors.registry import create_connector
from adapter.fhir.search import SearchRequest
from adapter.sandbox import NyraSandbox, RateLimits


async def one_run(keys: int, limits: RateLimits, minutes: int, patients: int, page: int):
    sandbox = NyraSandbox(seed=1, patients=patients, keys=keys, limits=limits)
    config = {"connector": "nyra", **sandbox.defaults()}
    config["keys"] = [g.credentials() for g in sandbox.api_keys()]
    connector = create_connector("nyra-bench", config, transport=sandbox.transport())
    request = SearchRequest("Patient", count=page)
    # The first window is a warm-up, not counted: a fresh key may spend a whole window's
    # budget at once, which would flatter a short run.
    start = time.monotonic()
    steady = start + limits.minute_window
    deadline = steady + minutes * limits.minute_window
    before = received = 0
    cursor = None
    while True:
        result = await connector.search(request, cursor)
        now = time.monotonic()
        if now > deadline:
            break
        received = sum(g.requests for g in sandbox.api_keys())
        if now <= steady:
            before = received
        cursor = result.next_cursor  # None at the end: from the first page again
    received -= before
    await connector.aclose()
    budget = limits.per_minute * keys * minutes
    return received / budget, sandbox.limited_total(), received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=30.0)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--page", type=int, default=50)
    parser.add_argument("--keys", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    limits = RateLimits(second_window=1 / args.scale, minute_window=60 / args.scale)
    print(
        f"Nyra limits 12/s and 60/min per key, time scaled 1/{args.scale:g} "
        f"(minute window {limits.minute_window:g} s); {args.minutes} windows a run, "
        f"{args.runs} runs; paging {args.patients} patients, {args.page} a page"
    )
    print(f"{'keys':>4} {'median share':>13} {'shares':>24} {'requests':>9} {'429s':>5}")
    for keys in args.keys:
        results = [
            asyncio.run(one_run(keys, limits, args.minutes, args.patients, args.page))
            for _ in range(args.runs)
        ]
        shares = [r[0] for r in results]
        print(
            f"{keys:>4} {statistics.median(shares):>12.1%} "
            f"{' '.join(f'{s:.1%}' for s in shares):>24} "
            f"{int(statistics.median(r[2] for r in results)):>9} {sum(r[1] for r in results):>5}"
        )


if __name__ == "__main__":
    main()
