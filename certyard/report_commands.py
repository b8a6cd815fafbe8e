"""``certyard report --scan ID``: a report of a recorded scan, in any format, read from the
inventory; every report carries the diff against the scan before it (JSON: a ``diff`` key)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from certyard.settings import Settings
from scanner.diff import diff_streams
from scanner.reports import FORMATS, write
from scanner.stored_scan import UnknownScan, load_scan, previous_scan_id
from storage.engine import create_engine, migrate, session_factory


class UsageError(Exception):
    pass


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="write the report of a recorded scan")
    p.add_argument("--scan", required=True, metavar="ID", help="scan id (certyard scan prints it)")
    p.add_argument("--format", choices=FORMATS, default="json")
    p.add_argument("--out", type=Path, help="file to write (default: standard output)")
    p.add_argument("--config", type=Path)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        try:
            stored = await load_scan(sessions, args.scan)
            before_id = await previous_scan_id(sessions, args.scan)
            before = await load_scan(sessions, before_id) if before_id else None
        except UnknownScan as exc:
            raise UsageError(f"no scan {exc} in the inventory") from None
    finally:
        await engine.dispose()
    header = stored.header()
    changes = None
    if before is not None:
        changes = diff_streams(
            before.header(), before.summary.endpoints(), header, stored.summary.endpoints()
        )
    # Written endpoint by endpoint from the spool load_scan filled, never built whole.
    if args.out is not None:
        with args.out.open("w") as stream:
            write(args.format, stream, header, stored.summary, changes)
    else:
        write(args.format, sys.stdout, header, stored.summary, changes)
    return 0


async def run_diff(settings: Settings, first: str, second: str) -> int:
    """``certyard scan diff A B``: the changes from scan A to scan B, as JSON."""
    import json

    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        try:
            old, new = await load_scan(sessions, first), await load_scan(sessions, second)
        except UnknownScan as exc:
            raise UsageError(f"no scan {exc} in the inventory") from None
    finally:
        await engine.dispose()
    changes = diff_streams(
        old.header(), old.summary.endpoints(), new.header(), new.summary.endpoints()
    )
    sys.stdout.write(json.dumps(changes, indent=2) + "\n")
    return 0
