"""``certyard scheduler jobs|history``: what is scheduled and what ran.

Kept in the scheduler package so it needs nothing from certyard/: the command line wiring passes
the loaded settings (anything with ``.database_url``) and the parsed arguments.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Protocol

from scheduler.history import format_runs, list_jobs, list_runs
from storage.engine import create_engine, migrate, session_factory


class UsageError(Exception):
    """Bad arguments: one line, exit status 2."""


class HasDatabaseUrl(Protocol):
    @property
    def database_url(self) -> str: ...


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("scheduler", help="scheduled jobs and their run history")
    p.add_argument("--config", type=Path)
    scheduler_sub = p.add_subparsers(dest="scheduler_command", required=True)
    jobs = scheduler_sub.add_parser("jobs", help="jobs in the database and when they run next")
    jobs.add_argument("--json", action="store_true", help="one JSON object a line")
    jobs.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    history = scheduler_sub.add_parser("history", help="runs, newest first")
    history.add_argument("--job")
    history.add_argument("--status")
    history.add_argument("--limit", type=int, default=50)
    history.add_argument("--json", action="store_true", help="one JSON object a line")
    history.add_argument("--config", type=Path, default=argparse.SUPPRESS)


async def run(settings: HasDatabaseUrl, args: argparse.Namespace) -> int:
    if getattr(args, "limit", 1) < 1:
        raise UsageError("--limit must be at least 1")
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        if args.scheduler_command == "jobs":
            for job in await list_jobs(sessions):
                if args.json:
                    print(
                        json.dumps(
                            {
                                "name": job.name,
                                "kind": job.kind,
                                "every_seconds": job.every_seconds,
                                "catch_up": job.catch_up,
                                "enabled": job.enabled,
                                "next_run_at": job.next_run_at.isoformat(),
                                "params": job.params,
                            }
                        )
                    )
                else:
                    state = "enabled" if job.enabled else "disabled"
                    print(
                        f"{job.name:<24} {job.kind:<8} every {job.every_seconds:g}s  {state}  "
                        f"next {job.next_run_at:%Y-%m-%d %H:%M:%S} UTC"
                    )
            return 0
        runs = await list_runs(sessions, job=args.job, status=args.status, limit=args.limit)
        if args.json:
            for record in runs:
                print(json.dumps(record.as_json()))
        else:
            print(format_runs(runs))
        return 0
    finally:
        await engine.dispose()
