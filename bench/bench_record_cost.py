"""A record's cost inside the facade against its cost in the mapping alone, in one process.

The facade's canned Leyr care unit of 20 patients (``bench_facade``) is asked through the
app's ASGI interface (no sockets, no load generator), once with the connector's memo of
mapped answers and once with it off, so that every request maps all 20 records afresh.
The difference, per record, is what a record costs inside the facade: mapping, its
version digest, its JSON, its journal stamp, its Bundle entry. Beside it, the same 20
vendor records are mapped and serialised alone, as ``bench_mappings`` does (the mapping
function, then ``orjson.dumps``). The three are measured in turn, ``--rounds`` times, and
the medians compared.

    .venv/bin/python bench/bench_record_cost.py [--rounds 7] [--requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]

import bench_facade  # noqa: E402

from mappings import LeyrContext, leyr  # noqa: E402

HEADERS = [(b"host", b"127.0.0.1:8080"), (b"accept", b"application/fhir+json")]


def asgi_client(app):
    """A function making one ``bench_facade.PATH`` request of ``app``, checked 200."""
    path, _, query = bench_facade.PATH.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": HEADERS,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }

    async def one() -> None:
        statuses: list[int] = []
        given = False

        async def receive():
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()  # the client stays: no disconnect

        async def send(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(dict(scope), receive, send)
        assert statuses == [200], statuses

    return one


async def per_request(app, requests: int) -> float:
    one = asgi_client(app)
    for _ in range(100):
        await one()
    started = time.perf_counter()
    for _ in range(requests):
        await one()
    return (time.perf_counter() - started) / requests


def mapping_alone(requests: int) -> float:
    """Seconds to map and serialise the 20 records, as bench_mappings does."""
    from adapter.sandbox.data import leyr_patients

    records = leyr_patients(20, 1, care_units=("L0_1",), anchor=date(2026, 4, 1))
    ctx = LeyrContext("leyr-bench", "Europe/Stockholm")
    dumps, to_fhir = orjson.dumps, leyr.to_fhir_patient
    for record in records:
        dumps(to_fhir(record, ctx))
    started = time.perf_counter()
    for _ in range(requests):
        for record in records:
            dumps(to_fhir(record, ctx))
    return (time.perf_counter() - started) / requests


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    memo = bench_facade.facade_app()
    afresh = bench_facade.facade_app(memo=False)
    rows = []
    async with memo.router.lifespan_context(memo), afresh.router.lifespan_context(afresh):
        for _ in range(args.rounds):
            kept = await per_request(memo, args.requests)
            fresh = await per_request(afresh, args.requests)
            alone = mapping_alone(args.requests)
            rows.append((kept, fresh, (fresh - kept) / 20, alone / 20))
    print(f"{args.rounds} rounds of {args.requests} requests, python {sys.version.split()[0]}")
    print("round  memo µs/req  afresh µs/req  record in facade µs  record mapped alone µs  ratio")
    for n, (kept, fresh, inside, alone) in enumerate(rows, 1):
        print(
            f"{n:>5}  {kept * 1e6:>11.1f}  {fresh * 1e6:>13.1f}  {inside * 1e6:>19.2f}"
            f"  {alone * 1e6:>22.2f}  {inside / alone:>5.2f}"
        )
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    ratios = statistics.median(r[2] / r[3] for r in rows)
    print(
        f"median: memo {med[0] * 1e6:.1f} µs/request, afresh {med[1] * 1e6:.1f} µs/request; "
        f"a record {med[2] * 1e6:.2f} µs in the facade, {med[3] * 1e6:.2f} µs mapped alone; "
        f"ratio {ratios:.2f} (median of rounds)"
    )


if __name__ == "__main__":
    asyncio.run(main())
