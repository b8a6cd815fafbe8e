"""The ``certyard`` command line: the parser and the dispatch (commands live in their modules,
e.g. ``certyard.ca_commands``).

Only the module of the command being run is imported (all of them for ``--help``): the CA
modules pull in pkilint and the PKCS#11 stack, which take seconds to import, and a scan or a
report should not pay for them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from certyard.logs import configure_logging
from certyard.settings import Settings, SettingsError, load_settings

EXIT_CONFIG = 2

# Command name → its module. Each module has add_parsers(sub) (va_agent: add_parser), an async
# run(settings, args) (va_agent: a plain one; ca_commands: run(args, settings)) and a
# UsageError for bad arguments (exit status 2).
COMMANDS: dict[str, str] = {
    "ca": "certyard.ca_commands",
    "acme": "certyard.acme_commands",
    "est": "certyard.est_commands",
    "scan": "certyard.scan_commands",
    "report": "certyard.report_commands",
    "ct": "certyard.ct_commands",
    "renew": "certyard.renew_commands",
    "deploy": "certyard.deploy_commands",
    "admin": "certyard.admin_commands",
    "audit": "certyard.audit_commands",
    "notify": "notify.commands",
    "scheduler": "scheduler.commands",
    "va-agent": "certyard.va_agent",
}
# What these print is their output, not interleaved logs.
QUIET_COMMANDS = (
    "ca", "acme", "est", "admin", "audit", "deploy", "renew", "notify", "scheduler",
)  # fmt: skip


def _wanted(argv: Sequence[str]) -> list[str]:
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return [first] if first in COMMANDS else list(COMMANDS)


def _parser(modules: dict[str, ModuleType]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="certyard", description="certyard certificate platform")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the ACME server")
    serve.add_argument("--config", type=Path, help="TOML file layered over conf/default.toml")
    for name, module in modules.items():
        if name == "va-agent":
            module.add_parser(sub)
        else:
            module.add_parsers(sub)
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


def _run_command(
    module: ModuleType, name: str, settings: Settings, args: argparse.Namespace
) -> int:
    try:
        if name == "ca":
            return int(asyncio.run(module.run(args, settings)))
        if name == "va-agent":
            return int(module.run(settings, args))
        return int(asyncio.run(module.run(settings, args)))
    except module.UsageError as exc:
        print(f"certyard: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    modules = {name: importlib.import_module(COMMANDS[name]) for name in _wanted(argv)}
    args = _parser(modules).parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"certyard: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    level = settings.log.level
    if args.command in QUIET_COMMANDS and level == "info":
        level = "warning"
    configure_logging(level, settings.log.format)
    if args.command == "serve":
        from ca.errors import CAError
        from certyard.server import serve
        from notify.errors import NotifyConfigError
        from scheduler.runner import SchedulerConfigError

        try:
            return asyncio.run(serve(settings))
        except (CAError, NotifyConfigError, SchedulerConfigError) as exc:
            # A CA that cannot start (no token, bad PIN file, a profile the linter refuses),
            # an unreadable webhook secret or an unknown job kind is one clear line.
            print(f"certyard: cannot start: {exc}", file=sys.stderr)
            return 1
    if args.command in modules:
        return _run_command(modules[args.command], args.command, settings, args)
    if args.command == "db":
        return asyncio.run(_db_upgrade(settings))
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
