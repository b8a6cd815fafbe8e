"""The ``certyard`` command line: the parser and the dispatch (commands live in their modules,
e.g. ``certyard.ca_commands``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from certyard import (
    acme_commands,
    admin_commands,
    audit_commands,
    ca_commands,
    ct_commands,
    deploy_commands,
    est_commands,
    renew_commands,
    report_commands,
    scan_commands,
    va_agent,
)
from certyard.logs import configure_logging
from certyard.settings import Settings, SettingsError, load_settings

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="certyard", description="certyard certificate platform")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the ACME server")
    serve.add_argument("--config", type=Path, help="TOML file layered over conf/default.toml")
    ca_commands.add_parsers(sub)
    acme_commands.add_parsers(sub)
    est_commands.add_parsers(sub)
    scan_commands.add_parsers(sub)
    report_commands.add_parsers(sub)
    ct_commands.add_parsers(sub)
    renew_commands.add_parsers(sub)
    deploy_commands.add_parsers(sub)
    admin_commands.add_parsers(sub)
    audit_commands.add_parsers(sub)
    va_agent.add_parser(sub)
    db = sub.add_parser("db", help="database commands")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply pending migrations")
    upgrade.add_argument("--config", type=Path)
    return parser


async def _db_upgrade(settings: Settings) -> int:
    from storage.engine import create_engine, migrate

    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"certyard: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    level = settings.log.level
    quiet_commands = ("ca", "acme", "est", "admin", "audit", "deploy", "renew")
    if args.command in quiet_commands and level == "info":
        level = "warning"  # what a CA command prints is its output, not interleaved logs
    configure_logging(level, settings.log.format)
    if args.command == "serve":
        from ca.errors import CAError
        from certyard.server import serve

        try:
            return asyncio.run(serve(settings))
        except CAError as exc:
            # A CA that cannot start (no token, bad PIN file, a profile the linter refuses)
            # is one clear line, not a traceback.
            print(f"certyard: cannot start: {exc}", file=sys.stderr)
            return 1
    if args.command == "ca":
        return asyncio.run(ca_commands.run(args, settings))
    # Each command module raises its own UsageError for bad arguments: exit status 2.
    runners: dict[str, tuple[Callable[[], int], type[Exception]]] = {
        "acme": (lambda: asyncio.run(acme_commands.run(settings, args)), acme_commands.UsageError),
        "est": (lambda: asyncio.run(est_commands.run(settings, args)), est_commands.UsageError),
        "scan": (lambda: asyncio.run(scan_commands.run(settings, args)), scan_commands.UsageError),
        "va-agent": (lambda: va_agent.run(settings, args), va_agent.UsageError),
        "report": (
            lambda: asyncio.run(report_commands.run(settings, args)),
            report_commands.UsageError,
        ),
        "ct": (lambda: asyncio.run(ct_commands.run(settings, args)), ct_commands.UsageError),
        "renew": (
            lambda: asyncio.run(renew_commands.run(settings, args)),
            renew_commands.UsageError,
        ),
        "deploy": (
            lambda: asyncio.run(deploy_commands.run(settings, args)),
            deploy_commands.UsageError,
        ),
        "admin": (
            lambda: asyncio.run(admin_commands.run(settings, args)),
            admin_commands.UsageError,
        ),
        "audit": (
            lambda: asyncio.run(audit_commands.run(settings, args)),
            audit_commands.UsageError,
        ),
    }
    if args.command in runners:
        run, usage_error = runners[args.command]
        try:
            return run()
        except usage_error as exc:
            print(f"certyard: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    if args.command == "db":
        return asyncio.run(_db_upgrade(settings))
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
