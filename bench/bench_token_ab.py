"""Two checkouts of this project, one token search at a time in process: CPU per request.

Each measurement is a fresh process that builds ``bench_facade``'s token server from one
checkout, warms it with 200 requests and times 3,000 more through httpx's ASGI transport
(no sockets, no load generator: what is left is the service's own work). The checkouts
are measured in turn, ``--pairs`` times, and the medians compared: a change is judged
against the checkout before it on the same machine at the same time.

    .venv/bin/python bench/bench_token_ab.py /tmp/before . --pairs 10
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path


def measure(requests: int) -> float:
    """µs per token search of the checkout on ``sys.path[0]``."""
    import bench_facade
    import httpx

    app = bench_facade.facade_app(auth=True)
    headers = {"Authorization": f"Bearer {bench_facade.bench_token()}"}

    async def run() -> float:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                for _ in range(200):
                    answer = await c.get(bench_facade.PATH, headers=headers)
                assert answer.status_code == 200, answer.text
                started = time.perf_counter()
                for _ in range(requests):
                    await c.get(bench_facade.PATH, headers=headers)
                return (time.perf_counter() - started) / requests * 1e6

    return asyncio.run(run())


def one(root: Path, requests: int) -> float:
    code = (
        f"import sys; sys.path[:0] = [{str(root)!r}, {str(root / 'bench')!r}]; "
        f"sys.path.append({str(Path(__file__).parent)!r}); "
        f"import bench_token_ab; print(bench_token_ab.measure({requests}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    rows = []
    for _ in range(args.pairs):
        rows.append(
            (
                one(args.baseline.resolve(), args.requests),
                one(args.candidate.resolve(), args.requests),
            )
        )
        print(f"{rows[-1][0]:.1f} µs  {rows[-1][1]:.1f} µs", flush=True)
    before = statistics.median(r[0] for r in rows)
    after = statistics.median(r[1] for r in rows)
    faster = sum(1 for b, a in rows if a < b)
    print(
        f"median: {before:.1f} µs at {args.baseline}, {after:.1f} µs at {args.candidate}; "
        f"the candidate faster in {faster} of {len(rows)} pairs"
    )


if __name__ == "__main__":
    main()
