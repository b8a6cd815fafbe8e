"""``certyard notify ...``: the delivery ledger, dead letters, re-drive and a test message.

Kept in the notify package so it needs nothing from certyard/: the command line wiring passes
the loaded settings (anything with ``.notify`` and ``.database_url``) and the parsed arguments.

    certyard notify deliveries [--status S] [--hook NAME] [--limit N] [--json]
    certyard notify dead-letters [--hook NAME] [--json]
    certyard notify redrive (ID... | --all) [--hook NAME]
    certyard notify test HOOK
"""

from __future__ import annotations

import argparse
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notify import ledger
from notify.config import NotifySettings
from notify.dispatcher import ConfiguredHook, HookFilter, Notifier, build_notifier
from notify.errors import NotifyConfigError
from notify.events import Notification
from storage.engine import create_engine, migrate, session_factory


class UsageError(Exception):
    """Bad arguments or configuration: one line, exit status 2."""


class HasNotifySettings(Protocol):
    @property
    def notify(self) -> NotifySettings: ...
    @property
    def database_url(self) -> str: ...


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("notify", help="notification deliveries, dead letters, re-drive, test")
    p.add_argument("--config", type=Path)
    notify_sub = p.add_subparsers(dest="notify_command", required=True)

    deliveries = notify_sub.add_parser("deliveries", help="the delivery ledger, newest first")
    deliveries.add_argument("--status", choices=["sending", "delivered", "dead"])
    deliveries.add_argument("--hook")
    deliveries.add_argument("--limit", type=int, default=50)
    deliveries.add_argument("--json", action="store_true", help="one JSON object a line")
    deliveries.add_argument("--config", type=Path, default=argparse.SUPPRESS)

    dead = notify_sub.add_parser("dead-letters", help="deliveries that failed every attempt")
    dead.add_argument("--hook")
    dead.add_argument("--limit", type=int, default=50)
    dead.add_argument("--json", action="store_true", help="one JSON object a line")
    dead.add_argument("--config", type=Path, default=argparse.SUPPRESS)

    redrive = notify_sub.add_parser("redrive", help="send dead letters again")
    redrive.add_argument("ids", nargs="*", metavar="ID")
    redrive.add_argument("--all", action="store_true", help="every dead letter (of --hook)")
    redrive.add_argument("--hook")
    redrive.add_argument("--config", type=Path, default=argparse.SUPPRESS)

    test = notify_sub.add_parser("test", help="send a test event to one hook (filters ignored)")
    test.add_argument("hook", metavar="HOOK")
    test.add_argument("--config", type=Path, default=argparse.SUPPRESS)


@asynccontextmanager
async def _sessions(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(url)
    try:
        await migrate(engine)
        yield session_factory(engine)
    finally:
        await engine.dispose()


def _notifier(settings: HasNotifySettings, sessions: async_sessionmaker[AsyncSession]) -> Notifier:
    try:
        return build_notifier(settings.notify, sessions)
    except NotifyConfigError as exc:
        raise UsageError(f"notify: {exc}") from None


def _print(records: list[ledger.DeliveryRecord], as_json: bool) -> None:
    for r in records:
        if as_json:
            print(
                json.dumps(
                    {
                        "id": r.id,
                        "hook": r.hook,
                        "idempotency_key": r.idempotency_key,
                        "kind": r.kind,
                        "severity": r.severity,
                        "subject": r.subject,
                        "status": r.status,
                        "attempts": r.attempts,
                        "last_error": r.last_error,
                        "created_at": r.created_at.isoformat(),
                        "delivered_at": None
                        if r.delivered_at is None
                        else r.delivered_at.isoformat(),
                    }
                )
            )
        else:
            error = f"  {r.last_error}" if r.last_error else ""
            print(
                f"{r.id}  {r.created_at:%Y-%m-%d %H:%M:%S}  {r.hook}  {r.status}  "
                f"attempts={r.attempts}  {r.idempotency_key}  {r.subject[:60]}{error}"
            )


async def run(settings: HasNotifySettings, args: argparse.Namespace) -> int:
    command = args.notify_command
    if command == "redrive" and not args.ids and not args.all:
        raise UsageError("notify redrive: give delivery ids or --all")
    if command == "test":
        names = [h.name for h in settings.notify.hooks]
        if args.hook not in names:
            raise UsageError(f"notify test: no hook named {args.hook!r} (hooks: {names})")
    if getattr(args, "limit", 1) < 1:
        raise UsageError("--limit must be at least 1")
    async with _sessions(settings.database_url) as sessions:
        if command == "deliveries":
            records = await ledger.list_deliveries(
                sessions, status=args.status, hook=args.hook, limit=args.limit
            )
            _print(records, args.json)
            return 0
        if command == "dead-letters":
            _print(
                await ledger.list_dead_letters(sessions, hook=args.hook, limit=args.limit),
                args.json,
            )
            return 0
        notifier = _notifier(settings, sessions)
        if command == "redrive":
            if args.all:
                results = await notifier.redrive_all(hook=args.hook)
            else:
                results = {i: await notifier.redrive(i) for i in args.ids}
            for delivery_id, ok in results.items():
                print(f"{delivery_id}: {'delivered' if ok else 'not delivered'}")
            return 0 if all(results.values()) else 1
        # test: this hook only, whatever its filters say.
        [chosen] = [c for c in notifier.hooks if c.hook.name == args.hook]
        single = Notifier(
            sessions,
            [ConfiguredHook(chosen.hook, HookFilter(), chosen.timeout)],
            notifier.retry,
        )
        event = Notification(
            kind="test",
            severity="info",
            subject=f"certyard test notification for hook {args.hook}",
            idempotency_key=f"test:{secrets.token_hex(8)}",
            details={"hook": args.hook},
        )
        await single.notify(event)
        [record] = await ledger.list_deliveries(sessions, hook=args.hook, limit=1)
        _print([record], False)
        return 0 if record.status == "delivered" else 1
