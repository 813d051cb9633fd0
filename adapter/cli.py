"""The ``fhir-adapter`` command.

    fhir-adapter serve [--config FILE] [--host 127.0.0.1] [--port 8080] [--workers 1]
    fhir-adapter check-config [FILE] [--probe]
    fhir-adapter sandbox nyra --port 5001 --seed 7 --patients 500
    fhir-adapter sandbox leyr --port 5002
    fhir-adapter export [--config FILE] --source S --type Patient,Appointment [--since T]
                        [--storage s3://bucket/prefix] --out DIR [--resume]
    fhir-adapter version

``fhir-adapter --help`` and each command's ``--help`` give its purpose and examples.
``serve`` and ``sandbox`` bind their address before they print anything: a busy port is
one line on standard error and exit code 1. ``serve --port 0`` takes a port the system
picks; the first line it prints names the address it got.

A configuration mistake, in ``serve`` or ``check-config``, is one line on standard error
per mistake (``configuration error: ...``) and exit code 2, never a traceback. ``serve``
on an address other than loopback also needs ``[server] public_base_url`` or
``trusted_hosts`` (:func:`_origin_checks`).
``check-config --probe`` also makes one cheap call per source and says what the vendor
answered (exit code 1 when a source fails it).

``export`` writes every resource of the types from the sources into NDJSON files and a
Bulk Data ``manifest.json`` in ``DIR`` (or the files on object storage, with
``--storage``), straight from the connectors (no server); see
:mod:`adapter.export_command` for its exit codes and ``--resume``.

A sandbox prints the credentials it accepts (its own, generated from the seed: they are
not secrets of anyone's) and a source configuration that reaches it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from adapter import package_version

__all__ = ["main"]


_EPILOG = """\
examples:
  fhir-adapter serve                            the embedded demo at http://127.0.0.1:8080/fhir
  fhir-adapter serve --config adapter.toml --port 9090
  fhir-adapter check-config adapter.toml --probe
  fhir-adapter export --type Patient --out ./export
  fhir-adapter sandbox nyra --port 5001 --keys 3
  fhir-adapter version

Each command's --help says more. Configuration: README.md, "Configuration"."""


def _command(
    commands: Any, name: str, purpose: str, examples: Sequence[str]
) -> argparse.ArgumentParser:
    """A subcommand whose --help gives its purpose and examples."""
    lines = "\n".join(f"  {e}" for e in examples)
    return commands.add_parser(  # type: ignore[no-any-return]
        name,
        help=purpose,
        description=purpose[0].upper() + purpose[1:] + ".",
        epilog=f"examples:\n{lines}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fhir-adapter",
        description="One FHIR R4 REST facade in front of vendor healthcare APIs (Leyr, Nyra).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fhir-adapter {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _command(
        commands,
        "serve",
        "run the FHIR facade (with no configuration: two in-process sandbox sources and a "
        "demo client whose token command it prints)",
        [
            "fhir-adapter serve",
            "fhir-adapter serve --port 9090",
            "fhir-adapter serve --config adapter.toml --host 0.0.0.0 --workers 4",
        ],
    )
    serve.add_argument(
        "--config",
        help="TOML configuration (default: $FHIR_ADAPTER_CONFIG, "
        "else the embedded sandbox default)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (8080)")
    serve.add_argument(
        "--workers", type=int, default=1, help="processes serving (1; more want [server] redis_url)"
    )

    _command(
        commands,
        "openapi",
        "print the facade's OpenAPI document (JSON)",
        ["fhir-adapter openapi > openapi.json"],
    )

    check = _command(
        commands,
        "check-config",
        "say what is missing or wrong in a configuration (never a value)",
        ["fhir-adapter check-config adapter.toml", "fhir-adapter check-config --probe"],
    )
    check.add_argument("config", nargs="?", help="TOML file (default: $FHIR_ADAPTER_CONFIG)")
    check.add_argument(
        "--probe",
        action="store_true",
        help="also make one cheap call per source and say what its vendor answered",
    )

    export = _command(
        commands,
        "export",
        "export resources to NDJSON files and a Bulk Data manifest (no server)",
        [
            "fhir-adapter export --out ./export",
            "fhir-adapter export --config adapter.toml --source nyra-city --type Patient "
            "--since 2026-01-01T00:00:00Z --out ./export",
            "fhir-adapter export --out ./export --resume",
            "fhir-adapter export --config adapter.toml --storage s3://exports/nightly "
            "--out ./state",
        ],
    )
    export.add_argument("--config", help="TOML configuration (as for serve)")
    export.add_argument("--source", help="source names, comma-separated (default: every one)")
    export.add_argument("--type", help="resource types, comma-separated (default: every one)")
    export.add_argument("--since", help="only what changed after this instant")
    export.add_argument(
        "--type-filter",
        action="append",
        help="keep only a type's records that meet this search, Type?name=value "
        "(repeatable; as _typeFilter: ANDed within one, ORed across one type's)",
    )
    export.add_argument(
        "--elements",
        help="keep only these elements (Type.element or element, comma-separated; as "
        "_elements: what R4 requires is kept, and the records are tagged SUBSETTED)",
    )
    export.add_argument(
        "--out",
        required=True,
        help="the directory to write into (with object storage: its state and manifest)",
    )
    export.add_argument(
        "--storage",
        help="write the files to object storage, s3://bucket/prefix (default: [export] "
        "storage when the configuration sets it)",
    )
    export.add_argument(
        "--resume", action="store_true", help="continue the export stopped in --out"
    )

    sandbox = _command(
        commands,
        "sandbox",
        "run a vendor simulator on a port, and print its credentials and a source "
        "configuration that reaches it",
        [
            "fhir-adapter sandbox nyra --port 5001 --seed 7 --patients 500 --keys 3",
            "fhir-adapter sandbox leyr --port 5002",
        ],
    )
    sandbox.add_argument("vendor", choices=["leyr", "nyra"], help="the vendor simulated")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sandbox.add_argument("--port", type=int, default=5001, help="port to listen on (5001)")
    sandbox.add_argument("--seed", type=int, default=7, help="the generated data's seed (7)")
    sandbox.add_argument("--patients", type=int, default=200, help="patients generated (200)")
    sandbox.add_argument("--data", help="vendor-shaped JSON file instead of generated data")
    sandbox.add_argument("--keys", type=int, default=1, help="Nyra: API keys to issue")
    sandbox.add_argument("--timezone", help="the hospital's or EHR's IANA time zone")

    _command(
        commands,
        "hash-password",
        "read a console operator's password from standard input and print its "
        "[operators.NAME] password_hash (scrypt)",
        ["fhir-adapter hash-password < password.txt"],
    )
    _command(commands, "version", "print the version", ["fhir-adapter version"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "sandbox":
        return _sandbox(args)
    if args.command == "check-config":
        return _check_config(args)
    if args.command == "export":
        from adapter.export_command import export_command

        return export_command(
            args.config,
            args.source,
            args.type,
            args.since,
            args.out,
            args.resume,
            type_filters=args.type_filter,
            elements=args.elements,
            storage=args.storage,
        )
    if args.command == "version":
        print(f"fhir-adapter {package_version()}")
        return 0
    if args.command == "hash-password":
        from adapter.auth.operators import hash_password

        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            print("fhir-adapter: no password on standard input", file=sys.stderr)
            return 2
        print(hash_password(password))
        return 0
    if args.command == "openapi":
        from adapter.openapi import openapi_json

        sys.stdout.write(openapi_json())
        return 0
    return 2  # argparse refuses unknown commands before this


def _config_error(exc: BaseException) -> int:
    """Each mistake in ``exc`` on its own line of standard error; exit code 2."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    for line in lines or [type(exc).__name__]:
        print(f"configuration error: {line}", file=sys.stderr)
    return 2


def _unforeseen(exc: Exception) -> int:
    # A mistake no check foresaw still ends in one line, not a traceback; by its type
    # only, since its message may quote a value (a secret among them).
    where = exc.__traceback__
    while where is not None and where.tb_next is not None:
        where = where.tb_next
    place = ""
    if where is not None:
        place = f" at {Path(where.tb_frame.f_code.co_filename).name}:{where.tb_lineno}"
    print(
        f"configuration error: the service cannot be built ({type(exc).__name__}{place})",
        file=sys.stderr,
    )
    return 2


def _network_checks(settings: Any, workers: int = 1) -> None:
    """What holds only where the service really runs, checked before anything is built:
    a vendor reached over the network is reached over https (or on this machine), and
    an in-process sandbox is served by one worker."""
    from adapter.connectors.config import url_problems
    from adapter.settings import SettingsError

    problems = [
        problem
        for name, source in settings.sources.items()
        if source.get("sandbox") is None
        for problem in url_problems(name, source)
    ]
    sandboxed = [n for n, source in settings.sources.items() if source.get("sandbox") is not None]
    if workers < 1:
        problems.append("--workers must be at least 1")
    elif workers > 1 and sandboxed:
        problems.append(
            f"--workers {workers} with in-process sandbox source(s) {', '.join(sandboxed)}: "
            "each worker would hold its own sandbox, so a record created through one worker "
            "is not found through another; serve them with one worker, or run each sandbox "
            "on a port (fhir-adapter sandbox) and give its source that base_url"
        )
    if problems:
        raise SettingsError(problems)


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _origin_checks(settings: Any, host: str) -> None:
    """Without ``public_base_url`` the links the service gives out (Bundle links,
    ``Location``, the SMART token endpoint) are made from each request's Host header, which
    any client chooses. On a loopback address only loopback Hosts are taken (the guard's
    rule, :func:`adapter.api.guard.host_policy`); anywhere else the operator must say
    which Hosts are this server's, or where it is published."""
    from adapter.settings import SettingsError

    if settings.public_base_url or settings.trusted_hosts or _loopback(host):
        return
    raise SettingsError(
        f"serving on {host} (not a loopback address) needs [server] public_base_url or "
        "trusted_hosts: the links it gives out would otherwise be made from whatever Host "
        "header a client sends"
    )


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
        WORKERS_ENV,
        SettingsError,
        load_settings,
    )

    # The workers read their configuration from the environment. What they need is made
    # here, and exported only once the configuration is known to be good: a refusal
    # leaves the environment as it was.
    exported: dict[str, str] = {}
    if args.config:
        exported[CONFIG_ENV] = args.config
    # Workers must sign cursors and tokens alike: one key each for all, unless configured.
    for name in (CURSOR_KEY_ENV, TOKEN_KEY_ENV):
        if name not in os.environ:
            exported[name] = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    exported[WORKERS_ENV] = str(args.workers)  # without Redis, each takes 1/N of a budget
    env = {**os.environ, **exported}
    embedded = not env.get(CONFIG_ENV)
    if embedded and DEMO_SECRET_ENV not in env:
        exported[DEMO_SECRET_ENV] = env[DEMO_SECRET_ENV] = secrets.token_urlsafe(24)
    from adapter.app import create_app
    from adapter.ops import logs
    from adapter.ops.memory import limit_arenas

    limit_arenas()  # before the first thread and worker: see adapter/ops/memory.py
    try:
        settings = load_settings(env=env)
        _network_checks(settings, args.workers)
        _origin_checks(settings, args.host)
        # A bad source fails here, before any worker starts; the budget share is said here.
        app = create_app(settings, workers=args.workers)
    except (SettingsError, ValueError, OSError) as exc:
        return _config_error(exc)
    except Exception as exc:
        return _unforeseen(exc)
    # Bind first: a busy port is one line and nothing else, not a fresh secret and a token
    # command for a server that never started.
    sock = _bound(args.host, args.port)
    if sock is None:
        return 1
    port = sock.getsockname()[1]
    os.environ.update(exported)
    where = f"http://{args.host}:{port}/fhir"
    # The port bound, which --port 0 leaves to the system: flushed at once, since a
    # process that started this one may be waiting to read it from a pipe.
    print(
        f"fhir-adapter serving {', '.join(settings.sources)} ({settings.origin}) at {where}",
        flush=True,
    )
    if embedded:
        token_url = f"http://{args.host}:{port}/auth/token"
        print(
            "\nA demo client (all sources, system/*.cruds) for this run. Get a token:\n\n"
            f"  TOKEN=$(curl -s -u demo:{os.environ[DEMO_SECRET_ENV]} "
            f"-d grant_type=client_credentials {token_url} | jq -r .access_token)\n\n"
            "and use it:\n\n"
            f'  curl -s -H "Authorization: Bearer $TOKEN" "{where}/Patient?_count=2"\n',
            flush=True,
        )
    logs.configure(settings)
    if args.workers == 1:
        return _serve_one(app, args, settings.shutdown_seconds, sock)
    # More workers build their own app from the same environment (configuration, keys,
    # demo secret); uvicorn's SIGHUP starts fresh ones, which read the configuration anew.
    # They share the socket bound above (its descriptor, inherited).
    sock.set_inheritable(True)
    with _metrics_directory():
        uvicorn.run(
            "adapter.app:app_from_env",
            factory=True,
            fd=sock.fileno(),
            workers=args.workers,
            log_level="info",
            access_log=False,
            **_forwarding(settings),
            timeout_graceful_shutdown=int(settings.shutdown_seconds),
        )
    return 0


def _forwarding(settings: Any) -> dict[str, Any]:
    """uvicorn's trust in X-Forwarded-For and X-Forwarded-Proto: only from the proxies
    ``[server] forwarded_allow_ips`` names (none by default; uvicorn would otherwise
    believe any process on this machine). The address a request came from is what the
    login throttle counts, so it must not be a header a client wrote."""
    allowed = list(settings.forwarded_allow_ips)
    return {"proxy_headers": bool(allowed), "forwarded_allow_ips": allowed or ""}


def _bound(host: str, port: int) -> socket.socket | None:
    """A socket bound to ``host:port`` and listening; None, said on standard error, when
    the address cannot be had (a busy port, say)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        print(f"cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return None
    return sock


def _serve_one(app: Any, args: argparse.Namespace, grace: float, sock: socket.socket) -> int:
    """One worker: the app built here, replaced on SIGHUP by one built from the
    configuration as it is then (:class:`adapter.ops.reload.Reloadable`); one SIGTERM
    stops it after the requests in flight finish, or after ``grace`` seconds."""
    import signal

    import uvicorn

    from adapter.app import create_app
    from adapter.ops.reload import Reloadable
    from adapter.settings import load_settings

    def rebuild() -> Any:
        settings = load_settings()
        _origin_checks(settings, args.host)  # a reload is held to what start-up was
        return create_app(settings, workers=1)

    served = Reloadable(app, rebuild)
    config = uvicorn.Config(
        served,
        log_level="info",
        access_log=False,
        lifespan="on",
        **_forwarding(app.state.settings),
        timeout_graceful_shutdown=int(grace),
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, served.reload)
        await server.serve(sockets=[sock])

    asyncio.run(run())
    return 0


@contextlib.contextmanager
def _metrics_directory() -> Iterator[None]:
    """Several workers write their metrics to files one scrape adds up (prometheus-client's
    multiprocess mode): a fresh directory for this run unless the operator named one."""
    import os
    import tempfile

    from adapter.ops.metrics import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    with tempfile.TemporaryDirectory(prefix="fhir-adapter-metrics-") as made:
        os.environ[MULTIPROC_ENV] = made
        try:
            yield
        finally:
            os.environ.pop(MULTIPROC_ENV, None)


def _check_config(args: argparse.Namespace) -> int:
    from adapter.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config)
        _network_checks(settings)
        from adapter.app import create_app

        create_app(settings)  # builds every connector: a wrong source key fails here
    except (SettingsError, ValueError, OSError) as exc:
        return _config_error(exc)
    except Exception as exc:
        return _unforeseen(exc)
    print(f"configuration {settings.origin}: OK")
    for name, source in settings.sources.items():
        where = "in-process sandbox" if source.get("sandbox") is not None else "vendor"
        print(f"  source {name}: connector {source['connector']}, {where}")
    for name, client in settings.clients.items():
        print(f"  client {name}: sources {', '.join(sorted(client.sources))}")
    if settings.open_access:
        print("  open access: no token is needed (development only)")
    if not args.probe:
        return 0
    results = asyncio.run(_probe_all(settings.sources))
    print("probe (one call per source):")
    for name, (_, said) in results.items():
        print(f"  source {name}: {said}")
    return 0 if all(ok for ok, _ in results.values()) else 1


PROBE_SECONDS = 60.0  # a vendor that has not answered by then is reported as timed out


async def _probe_all(sources: Any) -> dict[str, tuple[bool, str]]:
    """Each source's probe, all at once: (passed, what to say)."""
    from adapter.assembly import connector_for

    async def one(name: str, config: Any) -> tuple[bool, str]:
        connector = connector_for(name, config)
        try:
            await asyncio.wait_for(connector.probe(), PROBE_SECONDS)
            return True, "ok"
        except Exception as exc:
            return False, _probe_failure(exc)
        finally:
            await connector.aclose()

    names = list(sources)
    said = await asyncio.gather(*(one(name, sources[name]) for name in names))
    return dict(zip(names, said, strict=True))


def _probe_failure(exc: Exception) -> str:
    """What a failed probe says: the kind of failure and the vendor's status, or the
    permission it names; never the message (the vendor's words may quote anything)."""
    from adapter.transport import errors

    status = f" ({exc.status})" if isinstance(exc, errors.VendorError) and exc.status else ""
    if isinstance(exc, errors.AuthenticationRejected):
        return "credentials refused" + status
    if isinstance(exc, errors.PermissionMissing):
        return f"permission missing: {exc.permission or 'one the vendor does not name'}"
    if isinstance(exc, errors.VendorTimeout | TimeoutError):
        return "timed out"
    if isinstance(exc, errors.RateLimited):
        return "rate limited" + status
    if isinstance(exc, errors.VendorUnavailable):
        return f"unavailable{status}" if status else "unreachable"
    if isinstance(exc, errors.NotFound):
        return "not found (404): the vendor knows no such route; check base_url"
    if isinstance(exc, errors.MalformedResponse):
        return "answered in a shape the connector does not know" + status
    if isinstance(exc, errors.VendorError):
        return "refused" + status
    return f"failed ({type(exc).__name__})"


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
    sock = _bound(args.host, args.port)
    if sock is None:
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
