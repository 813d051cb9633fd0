"""Facade throughput: ``GET /fhir/Patient?_count=20`` against a bare route serving the same
Bundle bytes, each under one uvicorn worker, loaded by wrk from another process.

The facade's vendor is a canned in-memory answer (a Leyr care unit of 20 patients behind
an httpx mock transport), so the figure measures the facade itself: parameter parsing,
the connector's call through the shared transport, mapping, the Bundle, the signed
cursor and the orjson serialisation. The bare route is a FastAPI route returning the
precomputed bytes of one such Bundle: the floor of the same server stack.

The canned vendor answers the same bytes every time, so the connector's memo of mapped
answers (``adapter/connectors/memo.py``) maps them once; a third server with the memo
off maps all 20 records on every request, the cost when a vendor's data keeps changing; a
fourth requires a bearer token (the default outside development), checked per request.

With ``--baseline DIR`` (another checkout of this project, say ``git worktree add DIR
REV``), each run also serves DIR's token server beside this tree's (each first in turn):
a change is judged by the two token ratios of the same runs, against the same bare
route.

    .venv/bin/python bench/bench_facade.py        # needs wrk (Debian: apt-get install wrk)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PATH = "/fhir/Patient?_count=20"


def canned_vendor() -> httpx.MockTransport:
    from adapter.sandbox.data import leyr_patients

    patients = leyr_patients(20, 1, care_units=("L0_1",), anchor=date(2026, 4, 1))
    body = orjson.dumps(patients)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    # The care unit's directory (asked once, then kept): its name, a doctor, a service.
    directory = {
        "care-units": [{"id": "L0_1", "name": "Vårdcentralen Söder"}],
        "resources": [{"id": "doctor-1", "name": "Dr. Anna Berg", "type": "practitioner"}],
        "healthcare-services": [{"id": "s-1", "name": "Läkarbesök", "duration_minutes": 30}],
    }

    async def handler(request: httpx.Request) -> httpx.Response:
        listed = directory.get(request.url.path.rsplit("/", 1)[-1])
        if listed is not None:
            return httpx.Response(200, json=listed)
        return httpx.Response(200, headers=headers, content=body)

    return httpx.MockTransport(handler)


TOKEN_KEY = b"bench-token-key-".ljust(32, b"0")


def bench_token() -> str:
    """A bearer token the "authorized" facade accepts (system/*.rs, an hour)."""
    from adapter.auth.clients import Client
    from adapter.auth.tokens import TokenService

    client = Client("bench", {"*": {"r", "s"}}, frozenset({"leyr-bench"}))
    return TokenService(TOKEN_KEY, "urn:fhir-adapter", minutes=60).issue(client, client.scopes)[0]


def facade_app(memo: bool = True, auth: bool = False):
    from adapter.app import create_app
    from adapter.connectors.memo import MappedMemo
    from adapter.settings import Settings

    source = {
        "connector": "leyr",
        "base_url": "http://leyr.canned",
        "emr": "webdoc",
        "care_units": ["L0_1"],
        "timezone": "Europe/Stockholm",
        "client_id": "bench",
        "client_secret": "bench",
    }
    if auth:
        from adapter.auth.clients import load_clients

        clients = load_clients(
            {
                "bench": {
                    "secret": "bench-secret-0123456789",
                    "scopes": ["system/*.rs"],
                    "rate_limit": {"per_minute": 10**9},  # measure the facade, not the limit
                }
            },
            ["leyr-bench"],
        )
        settings = Settings(
            sources={"leyr-bench": source},
            clients=clients,
            cursor_key=b"b" * 32,
            token_key=TOKEN_KEY,
        )
    else:
        settings = Settings(open_access=True, sources={"leyr-bench": source}, cursor_key=b"b" * 32)
    app = create_app(settings, transports={"leyr-bench": canned_vendor()})
    if not memo:  # map every answer afresh, as if the vendor's bytes changed each time
        app.state.facade.connectors["leyr-bench"].memo = MappedMemo(0)
    return app


def bare_app():
    import asyncio

    from fastapi import FastAPI
    from starlette.responses import Response

    async def one_bundle() -> bytes:
        app = facade_app()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return (await c.get(PATH)).content

    content = asyncio.run(one_bundle())
    bare = FastAPI()

    @bare.get("/fhir/Patient")
    async def patients() -> Response:
        return Response(content, media_type="application/fhir+json; charset=utf-8")

    return bare


def serve(kind: str, port: int) -> None:
    import uvicorn

    app = {
        "facade": facade_app,
        "bare": bare_app,
        "unmemoised": lambda: facade_app(False),
        "authorized": lambda: facade_app(auth=True),
    }[kind]()
    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, seconds: int, connections: int, headers: dict | None = None) -> dict[str, float]:
    extra = [arg for k, v in (headers or {}).items() for arg in ("-H", f"{k}: {v}")]
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {
        p: float(v) * _UNITS[u]
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed requests: the benchmark is void")
    return {"rps": rps, "p50": latency["50"], "p99": latency["99"]}


def measure(kind: str, seconds: int, connections: int, root: Path = ROOT) -> dict[str, float]:
    """``kind``'s server from the checkout at ``root`` (this one unless told), loaded."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(root)}
    script = root / "bench" / "bench_facade.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--serve", kind, "--port", str(port)], env=env
    )
    url = f"http://127.0.0.1:{port}{PATH}"
    headers = {"Authorization": f"Bearer {bench_token()}"} if kind == "authorized" else {}
    try:
        deadline = time.monotonic() + 60
        while True:  # wait for the server to listen (a benchmark, not a test)
            try:
                if httpx.get(url, timeout=2, headers=headers).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server did not start")
            time.sleep(0.2)
        wrk(url, 2, connections, headers)  # warm-up
        return wrk(url, seconds, connections, headers)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--serve", choices=["facade", "bare", "unmemoised", "authorized"], help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--baseline", type=Path, help="another checkout whose token server runs in each run too"
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed (Debian: apt-get install wrk)")
    print(
        f"GET {PATH}, one uvicorn worker each, wrk -t1 -c{args.connections} "
        f"-d{args.seconds}s, {args.runs} runs"
    )
    rows = []
    baselines: list[float] = []
    for run in range(1, args.runs + 1):
        facade = measure("facade", args.seconds, args.connections)
        bare = measure("bare", args.seconds, args.connections)
        fresh = measure("unmemoised", args.seconds, args.connections)
        if args.baseline is not None and run % 2 == 0:  # in turn first: no order favoured
            before = measure("authorized", args.seconds, args.connections, args.baseline)
            authorized = measure("authorized", args.seconds, args.connections)
        elif args.baseline is not None:
            authorized = measure("authorized", args.seconds, args.connections)
            before = measure("authorized", args.seconds, args.connections, args.baseline)
        else:
            authorized = measure("authorized", args.seconds, args.connections)
        if args.baseline is not None:
            baselines.append(before["rps"] / bare["rps"])
            print(
                f"run {run}: baseline with a bearer token {before['rps']:,.0f} req/s "
                f"(ratio {baselines[-1]:.2f})"
            )
        ratio = facade["rps"] / bare["rps"]
        rows.append(
            (
                facade,
                bare,
                ratio,
                fresh,
                fresh["rps"] / bare["rps"],
                authorized,
                authorized["rps"] / bare["rps"],
            )
        )
        print(
            f"run {run}: facade {facade['rps']:,.0f} req/s (p50 {facade['p50']:.1f} ms, "
            f"p99 {facade['p99']:.1f} ms); bare {bare['rps']:,.0f} req/s (p50 "
            f"{bare['p50']:.1f} ms, p99 {bare['p99']:.1f} ms); ratio {ratio:.2f}; "
            f"mapping every answer afresh {fresh['rps']:,.0f} req/s (ratio {rows[-1][4]:.2f}); "
            f"with a bearer token {authorized['rps']:,.0f} req/s (ratio {rows[-1][6]:.2f})"
        )
    med = statistics.median
    print(
        f"median: facade {med(r[0]['rps'] for r in rows):,.0f} req/s, p50 "
        f"{med(r[0]['p50'] for r in rows):.1f} ms, p99 {med(r[0]['p99'] for r in rows):.1f} ms; "
        f"bare {med(r[1]['rps'] for r in rows):,.0f} req/s, p50 "
        f"{med(r[1]['p50'] for r in rows):.1f} ms, p99 {med(r[1]['p99'] for r in rows):.1f} ms; "
        f"ratio {med(r[2] for r in rows):.2f}; mapping afresh "
        f"{med(r[3]['rps'] for r in rows):,.0f} req/s, "
        f"p50 {med(r[3]['p50'] for r in rows):.1f} ms, ratio {med(r[4] for r in rows):.2f}; "
        f"with a bearer token {med(r[5]['rps'] for r in rows):,.0f} req/s, "
        f"p50 {med(r[5]['p50'] for r in rows):.1f} ms, ratio {med(r[6] for r in rows):.2f}"
    )
    if baselines:
        print(
            f"with a bearer token: ratio {med(r[6] for r in rows):.2f} here, "
            f"{med(baselines):.2f} at {args.baseline} (medians of the same runs)"
        )


if __name__ == "__main__":
    main()
