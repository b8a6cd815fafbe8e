"""``certyard ct …``: Certificate Transparency monitor (certyard ct watch|run|status|matches).

* ``ct watch add|remove NAME…`` / ``ct watch list``: the watch list (``example.com`` for one
  name, ``.example.com`` for a domain and all its subdomains; Unicode names are stored as
  A-labels).
* ``ct run [--once] [--logs FILE|URL]``: tail the logs of the v3 log list (``[ct] log_list`` or
  ``--logs``); ``--once`` returns when every log is caught up, exit 1 if a log failed.
* ``ct status [--json]``: per log tree size, position, verified size, lag, last error.
* ``ct matches [--json]``: the matches; with ``--json`` one JSON object a line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from certyard.settings import Settings
from ct_monitor.clients import open_client
from ct_monitor.config import CTSettings
from ct_monitor.feed import AllowList, AllowListError
from ct_monitor.loglist import LogList, LogListError, load_log_list
from ct_monitor.monitor import Monitor, status_of
from ct_monitor.state import CTStore
from ct_monitor.watchlist import WatchListError, parse_watch_item
from notify.events import NotificationSink, NullSink
from storage.engine import create_engine, migrate, session_factory
from storage.models_ct import CTMatch


class UsageError(Exception):
    pass


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ct", help="Certificate Transparency monitor")
    p.add_argument("--config", type=Path)
    ct_sub = p.add_subparsers(dest="ct_command", required=True)

    watch = ct_sub.add_parser("watch", help="edit the watch list")
    watch.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    watch_sub = watch.add_subparsers(dest="watch_command", required=True)
    add = watch_sub.add_parser("add", help="watch names (.example.com: domain + subdomains)")
    add.add_argument("names", nargs="+", metavar="NAME")
    add.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    remove = watch_sub.add_parser("remove", help="stop watching names")
    remove.add_argument("names", nargs="+", metavar="NAME")
    remove.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    lst = watch_sub.add_parser("list", help="print the watch list")
    lst.add_argument("--config", type=Path, default=argparse.SUPPRESS)

    run = ct_sub.add_parser("run", help="tail the CT logs")
    run.add_argument("--once", action="store_true", help="stop when every log is caught up")
    run.add_argument("--logs", metavar="FILE|URL", help="v3 log list (default: [ct] log_list)")
    run.add_argument("--config", type=Path, default=argparse.SUPPRESS)

    status = ct_sub.add_parser("status", help="per log: tree size, position, lag, last error")
    status.add_argument("--json", action="store_true")
    status.add_argument("--config", type=Path, default=argparse.SUPPRESS)

    matches = ct_sub.add_parser("matches", help="certificates found for watched names")
    matches.add_argument("--json", action="store_true", help="one JSON object a line")
    matches.add_argument("--config", type=Path, default=argparse.SUPPRESS)


@contextlib.asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def run(settings: Settings, args: argparse.Namespace) -> int:
    async with _database(settings) as sessions:
        store = CTStore(sessions)
        command = args.ct_command
        if command == "watch":
            return await _watch(store, args)
        if command == "run":
            return await _run(settings, store, sessions, args)
        if command == "status":
            return await _status(store, args.json)
        if command == "matches":
            return await _matches(store, args.json)
    raise UsageError(f"unknown ct command {command!r}")


async def _watch(store: CTStore, args: argparse.Namespace) -> int:
    if args.watch_command == "list":
        for item in await store.watch_items():
            print(item.pattern)
        return 0
    try:
        # All names are checked before any is stored: a bad one changes nothing.
        patterns = [parse_watch_item(name).pattern for name in args.names]
    except WatchListError as exc:
        raise UsageError(f"ct watch: {exc}") from None
    changed: list[tuple[str, bool]] = []
    for pattern in patterns:
        if args.watch_command == "add":
            changed.append(await store.watch_add(pattern))
        else:
            changed.append(await store.watch_remove(pattern))
    for pattern, did in changed:
        if args.watch_command == "add":
            print(f"{'added' if did else 'already watched'}: {pattern}")
        else:
            print(f"{'removed' if did else 'not watched'}: {pattern}")
    return 0


def _sink(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> NotificationSink:
    if not settings.notify.hooks:
        return NullSink()
    from notify.dispatcher import build_notifier
    from notify.errors import NotifyConfigError

    try:
        return build_notifier(settings.notify, sessions)
    except NotifyConfigError as exc:
        raise UsageError(f"notify: {exc}") from None


async def _run(
    settings: Settings,
    store: CTStore,
    sessions: async_sessionmaker[AsyncSession],
    args: argparse.Namespace,
) -> int:
    cfg = settings.ct
    try:
        AllowList.parse(cfg.authorized_issuers)
        loglist = await load_log_list(cfg, args.logs)
    except (AllowListError, LogListError) as exc:
        raise UsageError(str(exc)) from None
    for problem in loglist.problems:
        print(f"certyard: log list: {problem}", file=sys.stderr)
    if not loglist.logs:
        raise UsageError("the log list names no log to watch (see [ct] log_states)")
    if not await store.watch_items():
        print(
            "certyard: the watch list is empty: logs are verified, nothing matched", file=sys.stderr
        )
    sink = _sink(settings, sessions)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if args.once:
            results = await _run_monitor(store, loglist, cfg, sink, stop, None)
        else:
            results = await _run_forever(store, loglist, cfg, sink, stop, args.logs)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    failed = {url: err for url, err in results.items() if err}
    for url, err in failed.items():
        print(f"certyard: {url}: {err}", file=sys.stderr)
    return 1 if failed and args.once else 0


async def _run_monitor(
    store: CTStore,
    loglist: LogList,
    cfg: CTSettings,
    sink: NotificationSink,
    stop: asyncio.Event,
    until: asyncio.Future[None] | None,
) -> dict[str, str | None]:
    """One Monitor over ``loglist``: with ``until`` None, ``--once``; else it runs until
    ``stop`` is set or ``until`` completes (a changed log list). State is in the database, so
    a new Monitor resumes every log where this one stopped."""
    clients = [open_client(d, cfg) for d in loglist.logs]
    monitor = Monitor(store, clients, cfg, sink=sink)
    try:
        task = asyncio.create_task(monitor.run(once=until is None))
        stopper = asyncio.create_task(stop.wait())
        waiters: set[asyncio.Future[Any]] = {task, stopper}
        if until is not None:
            waiters.add(until)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        monitor.stop()  # returns after the batch in progress
        stopper.cancel()
        return await task
    finally:
        for client in clients:
            await client.aclose()


async def _run_forever(
    store: CTStore,
    loglist: LogList,
    cfg: CTSettings,
    sink: NotificationSink,
    stop: asyncio.Event,
    source: str | None,
) -> dict[str, str | None]:
    """Until SIGINT/SIGTERM, re-reading the log list every ``log_list_refresh_seconds``; a
    changed list restarts the monitor over the new logs."""
    results: dict[str, str | None] = {}
    while not stop.is_set():
        changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watcher = asyncio.create_task(_watch_log_list(loglist, cfg, source, changed, stop))
        try:
            results = await _run_monitor(store, loglist, cfg, sink, stop, changed)
        finally:
            watcher.cancel()
        if changed.done() and not changed.cancelled():
            loglist = await load_log_list(cfg, source)
    return results


async def _watch_log_list(
    current: LogList,
    cfg: CTSettings,
    source: str | None,
    changed: asyncio.Future[None],
    stop: asyncio.Event,
) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), cfg.log_list_refresh_seconds)
        if stop.is_set():
            return
        try:
            fresh = await load_log_list(cfg, source)
        except LogListError as exc:
            print(f"certyard: log list refresh failed, keeping the old one: {exc}", file=sys.stderr)
            continue
        if fresh.logs and fresh.logs != current.logs:
            changed.set_result(None)
            return


async def _status(store: CTStore, as_json: bool) -> int:
    statuses = [status_of(s) for s in await store.all_states()]
    if as_json:
        for st in statuses:
            print(
                json.dumps(
                    {
                        "log_url": st.log_url,
                        "kind": st.kind,
                        "tree_size": st.tree_size,
                        "position": st.position,
                        "verified_size": st.verified_size,
                        "lag": st.lag,
                        "last_success": st.last_success.isoformat() if st.last_success else None,
                        "last_error": st.last_error,
                    }
                )
            )
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="CT logs")
    table.add_column("log", overflow="fold")
    for column in ("kind", "tree size", "position", "verified", "lag", "last success"):
        numeric = column in ("tree size", "position", "verified", "lag")
        table.add_column(column, justify="right" if numeric else "left")
    table.add_column("last error", overflow="fold")
    for st in statuses:
        table.add_row(
            st.log_url,
            st.kind,
            str(st.tree_size),
            str(st.position),
            str(st.verified_size),
            str(st.lag),
            st.last_success.isoformat(timespec="seconds") if st.last_success else "-",
            st.last_error or "",
        )
    Console().print(table)
    if not statuses:
        print("no log state yet: run `certyard ct run --once`")
    return 0


def match_json(row: CTMatch) -> dict[str, object]:
    return {
        "log_url": row.log_url,
        "index": row.entry_index,
        "entry_type": row.entry_type,
        "names": list(row.names),
        "issuer": row.issuer,
        "not_after": row.not_after.isoformat() if row.not_after else None,
        "tbs_sha256": row.tbs_sha256,
        "finding": row.finding,
    }


async def _matches(store: CTStore, as_json: bool) -> int:
    rows = await store.matches()
    if as_json:
        for row in rows:
            print(json.dumps(match_json(row)))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="CT matches")
    for column in ("names", "issuer", "not after", "type", "log", "index", "finding"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            ", ".join(row.names),
            row.issuer,
            row.not_after.date().isoformat() if row.not_after else "-",
            row.entry_type,
            row.log_url,
            str(row.entry_index),
            row.finding or "",
        )
    Console().print(table)
    return 0
