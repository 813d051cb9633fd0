"""The ``fhir-adapter`` command.

    fhir-adapter sandbox nyra --port 5001 --seed 7 --patients 500
    fhir-adapter sandbox leyr --port 5002

A sandbox prints the credentials it accepts (its own, generated from the seed: they are
not secrets of anyone's) and a source configuration that reaches it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fhir-adapter", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    sandbox = commands.add_parser("sandbox", help="run a vendor simulator on a port")
    sandbox.add_argument("vendor", choices=["leyr", "nyra"])
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=5001)
    sandbox.add_argument("--seed", type=int, default=7)
    sandbox.add_argument("--patients", type=int, default=200)
    sandbox.add_argument("--data", help="vendor-shaped JSON file instead of generated data")
    sandbox.add_argument("--keys", type=int, default=1, help="Nyra: API keys to issue")
    sandbox.add_argument("--timezone", help="the hospital's or EHR's IANA time zone")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "sandbox":
        return _sandbox(args)
    return 2  # argparse refuses unknown commands before this


def _sandbox(args: argparse.Namespace) -> int:
    import uvicorn

    from adapter.sandbox import sandbox_for

    if not 0 < args.patients <= 1_000_000:
        print("--patients must be between 1 and 1000000", file=sys.stderr)
        return 2
    spec: dict[str, Any] = {"seed": args.seed, "patients": args.patients}
    if args.data:
        spec = {"data": args.data}
    if args.vendor == "nyra":
        spec["keys"] = args.keys
    source = {"timezone": args.timezone} if args.timezone else {}
    try:
        sandbox = sandbox_for(args.vendor, spec, source)
    except (ValueError, OSError) as exc:
        print(f"cannot start the sandbox: {exc}", file=sys.stderr)
        return 2
    # Bind first, so the address is known (and taken) before anything is printed.
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    base = f"http://{host}:{port}"
    print(_banner(args.vendor, sandbox, base), flush=True)
    config = uvicorn.Config(sandbox.app, log_level="warning", access_log=False)
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
    return 0


def _banner(vendor: str, sandbox: Any, base: str) -> str:
    d = sandbox.defaults()
    if vendor == "leyr":
        lines = [
            f"Leyr sandbox at {base} (EHR {d['emr']}, care units {', '.join(d['care_units'])})",
            f"  x-leyr-client-id:     {d['client_id']}",
            f"  x-leyr-client-secret: {d['client_secret']}",
            "",
            "Source configuration:",
            "  [sources.leyr-sandbox]",
            '  connector = "leyr"',
            f'  base_url = "{base}"',
            f'  emr = "{d["emr"]}"',
            f"  care_units = {json.dumps(d['care_units'])}",
            f'  timezone = "{d["timezone"]}"',
            f'  client_id = "{d["client_id"]}"',
            f'  client_secret = "{d["client_secret"]}"',
        ]
    else:
        lines = [f"Nyra sandbox at {base} (time zone {d['timezone']})"]
        for n, grant in enumerate(sandbox.api_keys(), 1):
            lines += [
                f"  key {n}: x-api-key:     {grant.key}",
                f"         x-api-secret:  {grant.secret}",
                f"         Authorization: Bearer {grant.token}",
            ]
        keys = ", ".join(
            f'{{ key = "{g.key}", secret = "{g.secret}", token = "{g.token}" }}'
            for g in sandbox.api_keys()
        )
        lines += [
            "",
            "Source configuration:",
            "  [sources.nyra-sandbox]",
            '  connector = "nyra"',
            f'  base_url = "{base}"',
            f'  timezone = "{d["timezone"]}"',
            f"  keys = [{keys}]",
        ]
    lines.append(f"Ready: {base}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
