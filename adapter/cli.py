"""The ``fhir-adapter`` command.

    fhir-adapter serve [--config FILE] [--host 127.0.0.1] [--port 8080] [--workers 1]
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

    serve = commands.add_parser("serve", help="run the FHIR facade")
    serve.add_argument(
        "--config",
        help="TOML configuration (default: $FHIR_ADAPTER_CONFIG, "
        "else the embedded sandbox default)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)

    commands.add_parser("openapi", help="print the facade's OpenAPI document (JSON)")

    check = commands.add_parser(
        "check-config", help="say what is missing or wrong in a configuration (never a value)"
    )
    check.add_argument("config", nargs="?", help="TOML file (default: $FHIR_ADAPTER_CONFIG)")

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
    if args.command == "serve":
        return _serve(args)
    if args.command == "sandbox":
        return _sandbox(args)
    if args.command == "check-config":
        return _check_config(args)
    if args.command == "openapi":
        from adapter.openapi import openapi_json

        sys.stdout.write(openapi_json())
        return 0
    return 2  # argparse refuses unknown commands before this


def _serve(args: argparse.Namespace) -> int:
    import base64
    import os
    import secrets

    import uvicorn

    from adapter.settings import (
        CONFIG_ENV,
        CURSOR_KEY_ENV,
        DEMO_SECRET_ENV,
        TOKEN_KEY_ENV,
        SettingsError,
        load_settings,
    )

    if args.config:
        os.environ[CONFIG_ENV] = args.config
    # Workers must sign cursors and tokens alike: one key each for all, unless configured.
    for name in (CURSOR_KEY_ENV, TOKEN_KEY_ENV):
        os.environ.setdefault(name, base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
    embedded = not os.environ.get(CONFIG_ENV)
    if embedded:
        os.environ.setdefault(DEMO_SECRET_ENV, secrets.token_urlsafe(24))
    from adapter.app import configure_audit_log, create_app

    try:
        settings = load_settings()
        app = create_app(settings)  # a bad source fails here, before any worker starts
    except (SettingsError, ValueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    where = f"http://{args.host}:{args.port}/fhir"
    print(f"fhir-adapter serving {', '.join(settings.sources)} ({settings.origin}) at {where}")
    if embedded:
        token_url = f"http://{args.host}:{args.port}/auth/token"
        print(
            "\nA demo client (all sources, system/*.cruds) for this run. Get a token:\n\n"
            f"  TOKEN=$(curl -s -u demo:{os.environ[DEMO_SECRET_ENV]} "
            f"-d grant_type=client_credentials {token_url} | jq -r .access_token)\n\n"
            "and use it:\n\n"
            f'  curl -s -H "Authorization: Bearer $TOKEN" "{where}/Patient?_count=2"\n',
            flush=True,
        )
    # One worker serves the app built here; more build their own, from the same
    # environment (configuration, keys, demo secret).
    configure_audit_log()
    target = app if args.workers == 1 else "adapter.app:app_from_env"
    uvicorn.run(
        target,
        factory=args.workers != 1,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
        access_log=False,
    )
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from adapter.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config)
        from adapter.app import create_app

        create_app(settings)  # builds every connector: a wrong source key fails here
    except (SettingsError, ValueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    print(f"configuration {settings.origin}: OK")
    for name, source in settings.sources.items():
        where = "in-process sandbox" if source.get("sandbox") is not None else "vendor"
        print(f"  source {name}: connector {source['connector']}, {where}")
    for name, client in settings.clients.items():
        print(f"  client {name}: sources {', '.join(sorted(client.sources))}")
    if settings.open_access:
        print("  open access: no token is needed (development only)")
    return 0


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
