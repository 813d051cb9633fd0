"""Writes with ``Idempotency-Key`` while the store already holds 100,000 keys.

An in-process app over an in-process Leyr sandbox takes Patient creates, each with a new
key, first with an empty store, then after 100,000 other keys were written to it: in
memory (bounded, so only the newest are held) and in Redis (every key held, with its
expiry). The figure is the median time of one create through the whole app, so what the
store costs shows as the difference between the two.

    .venv/bin/python bench/bench_idempotency.py            # needs Redis at 127.0.0.1:6379
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REDIS = "redis://127.0.0.1:6379/14"


def app_with(store_kind: str):
    from adapter.app import create_app
    from adapter.idempotency import RedisStore
    from adapter.sandbox import LeyrSandbox
    from adapter.settings import Settings

    sandbox = LeyrSandbox(seed=1, patients=10)
    source = {"connector": "leyr", "timezone": "Europe/Stockholm", **sandbox.defaults()}
    settings = Settings(open_access=True, sources={"leyr-b": source}, cursor_key=b"b" * 32)
    app = create_app(settings, transports={"leyr-b": sandbox.transport()})
    if store_kind == "redis":
        app.state.idempotency = RedisStore(REDIS, prefix=f"bench-idem-{uuid.uuid4().hex}:")
    return app


async def fill(store, keys: int) -> None:
    from adapter.idempotency import Outcome

    body = b"x" * 400
    for n in range(keys):
        key = f"bench\0k{n}"
        await store.claim(key, "p")
        await store.finish(key, Outcome("p", 201, (("location", f"/fhir/Patient/{n}"),), body))


async def creates(app, count: int) -> list[float]:
    patient = {
        "resourceType": "Patient",
        "name": [{"given": ["Bench"], "family": "Marker"}],
        "gender": "female",
        "birthDate": "1990-01-01",
    }
    times = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        for n in range(count):
            body = orjson.dumps({**patient, "name": [{"given": [f"B{n}"], "family": "Marker"}]})
            headers = {
                "content-type": "application/fhir+json",
                "idempotency-key": uuid.uuid4().hex,
            }
            started = time.perf_counter()
            r = await c.post("/fhir/Patient", content=body, headers=headers)
            times.append(time.perf_counter() - started)
            assert r.status_code in (200, 201), r.text
    return times


async def measure(kind: str, held: int, count: int) -> tuple[float, int]:
    app = app_with(kind)
    store = app.state.idempotency
    await fill(store, held)
    times = await creates(app, count)
    size = len(store) if hasattr(store, "__len__") else held
    if kind == "redis":
        await store.aclose()
    return statistics.median(times) * 1000, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--creates", type=int, default=300)
    args = parser.parse_args()
    print(f"Patient creates with a new Idempotency-Key each, median of {args.creates}")
    for kind in ("memory", "redis"):
        for held in (0, args.keys):
            p50, size = asyncio.run(measure(kind, held, args.creates))
            print(
                f"{kind:6} store, {held:>7,} keys written before: p50 {p50:.2f} ms ({size:,} held)"
            )


if __name__ == "__main__":
    main()
