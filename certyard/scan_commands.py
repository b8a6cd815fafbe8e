"""``certyard scan TARGETS…``: sweep TLS endpoints, record them in the inventory, write a report.

The report (JSON or SARIF) goes to ``--out`` or, without it, to stdout; the summary table goes to
stderr when the report takes stdout. Exit status 0 when the scan ran (findings are data, not
failures), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from certyard.settings import Settings
from scanner.config import ScanSettings
from scanner.diff import diff_streams
from scanner.jobs import ProbeJob, ProbeResult
from scanner.reports import FORMATS, write
from scanner.runner import ScanOptions
from scanner.scan import ScanOutcome, ScanRequest, scan
from scanner.syn import SynUnavailable
from scanner.targets import TargetError, parse_ports, read_targets_file

# The database stack (SQLAlchemy, Alembic, the models) is imported only when the scan writes to
# the inventory: ``--no-inventory`` scans start faster and hold less memory without it.
if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")


class UsageError(Exception):
    pass


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("scan", help="scan TLS endpoints into the inventory and write a report")
    p.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="name, IP, CIDR, a-b range or name@ip, each with optional :port "
        "and a protocol prefix (tls smtp imap pop3 ftp ldap postgres ://)",
    )
    p.add_argument("--targets-file", action="append", default=[], type=Path, metavar="F")
    # Defaults of None: the [scan] settings fill them (scanner/config.py).
    p.add_argument("--ports", help="443,8443,1000-1010 (default: scan.ports)")
    p.add_argument("--exclude", action="append", default=[], metavar="NET")
    p.add_argument("--trust", action="append", default=[], type=Path, metavar="ROOTS.pem")
    p.add_argument("--format", choices=FORMATS, default="json")
    p.add_argument("--out", type=Path)
    p.add_argument("--timeout", type=float, help="seconds per phase (default 5)")
    p.add_argument("--retries", type=int)
    p.add_argument("--concurrency", type=int)
    p.add_argument("--per-host", type=int)
    p.add_argument("--expiring-days", type=float)
    p.add_argument(
        "--no-legacy-probe",
        action="store_true",
        help="skip the TLS 1.1 handshake behind deprecated_tls_version",
    )
    p.add_argument(
        "--syn",
        action="store_true",
        help="raw SYN pre-scan (root): TLS only on ports that answer SYN-ACK",
    )
    p.add_argument("--rate", type=int, metavar="PPS", help="--syn packets per second, at most")
    p.add_argument(
        "--no-ocsp-stapling",
        action="store_true",
        help="skip the handshake that asks for a stapled OCSP response",
    )
    p.add_argument(
        "--no-known-names",
        action="store_true",
        help="do not add SNI names the inventory and CT matches know for each address",
    )
    p.add_argument("--seed", type=int, help="seed of the sweep order (default: random)")
    p.add_argument("--no-inventory", action="store_true", help="do not write to the database")
    p.add_argument(
        "--resume",
        metavar="ID",
        help="continue the interrupted scan ID with its own targets and options",
    )
    p.add_argument("--config", type=Path)


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


def request_from_args(
    args: argparse.Namespace, defaults: ScanSettings | None = None
) -> ScanRequest:
    conf = defaults or ScanSettings()
    targets = list(args.targets)
    for path in args.targets_file:
        try:
            targets += read_targets_file(path.read_text().splitlines())
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if not targets:
        raise UsageError("no targets (give TARGET arguments or --targets-file)")
    trust = [*conf.trust, *args.trust]
    for path in trust:
        if not path.is_file():
            raise UsageError(f"--trust {path}: no such file")
    timeout = _or(args.timeout, conf.timeout_seconds)
    retries = _or(args.retries, conf.retries)
    concurrency = _or(args.concurrency, conf.concurrency)
    per_host = _or(args.per_host, conf.per_host)
    if timeout <= 0 or concurrency < 1 or per_host < 1 or retries < 0:
        raise UsageError("--timeout, --concurrency and --per-host must be positive")
    try:
        ports = parse_ports(_or(args.ports, conf.ports))
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    return ScanRequest(
        targets=targets,
        ports=ports,
        excludes=[*conf.exclude, *args.exclude],
        trust=trust,
        options=ScanOptions(
            timeout=timeout,
            retries=retries,
            concurrency=concurrency,
            per_host=per_host,
            expiring_days=_or(args.expiring_days, conf.expiring_days),
            legacy_probe=conf.legacy_probe and not args.no_legacy_probe,
            ocsp_stapling=conf.ocsp_stapling and not args.no_ocsp_stapling,
        ),
        seed=args.seed,
        syn=args.syn,
        known_names=conf.known_names and not args.no_known_names,
        syn_rate=_or(args.rate, conf.syn_rate),
    )


class ProgressBar:
    """scanner.jobs.Observer as a rich progress bar on stderr: endpoints done, rate, time left."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("scanning"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}/s"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.task = self.progress.add_task("endpoints", total=None, rate="-")

    def scan_started(self, endpoints: int) -> None:
        self.progress.update(self.task, total=endpoints)
        self.progress.start()

    def job_started(self, job: ProbeJob) -> None:
        return None

    def job_finished(self, result: ProbeResult) -> None:
        return None

    def endpoint_finished(self, ip: str, port: int) -> None:
        self.progress.advance(self.task)
        speed = self.progress.tasks[0].speed
        self.progress.update(self.task, rate=f"{speed:.0f}" if speed else "-")

    def stop(self) -> None:
        self.progress.stop()


def print_summary(outcome: ScanOutcome, stream: TextIO) -> None:
    rows: list[tuple[str, str]] = [("scan", outcome.scan_id or "(not recorded)")]
    rows += [(f"status {k}", str(v)) for k, v in sorted(outcome.summary.by_status.items())]
    rows += [(f"finding {k}", str(v)) for k, v in sorted(outcome.summary.by_code.items())]
    rows += [("unresolved", name) for name in outcome.unresolved]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency; plain text otherwise
        for key, value in rows:
            print(f"{key:<28} {value}", file=stream)
        return
    table = Table(title="certyard scan", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in rows:
        table.add_row(key, value)
    Console(file=stream, width=100).print(table)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.targets[:1] == ["diff"]:
        # ``certyard scan diff A B``: "diff" is not a target (a host named "diff" is scanned as
        # "tls://diff" or "diff:443").
        from certyard.report_commands import UsageError as ReportUsageError
        from certyard.report_commands import run_diff

        if len(args.targets) != 3:
            raise UsageError("usage: certyard scan diff SCAN_A SCAN_B")
        try:
            return await run_diff(settings, args.targets[1], args.targets[2])
        except ReportUsageError as exc:
            raise UsageError(str(exc)) from None
    if args.resume is not None:
        if args.targets or args.targets_file or args.no_inventory:
            raise UsageError("--resume takes no targets and needs the inventory")
        request = None
    else:
        request = request_from_args(args, settings.scan)
    root = settings.server.data_dir / "ca" / "root.pem"
    anchors = [root] if root.is_file() else []
    progress = ProgressBar() if sys.stderr.isatty() else None
    engine = None
    if not args.no_inventory:
        from storage.engine import create_engine, is_sqlite

        if is_sqlite(settings.database_url):
            # The default database lives in data_dir, which a first scan may have to create.
            settings.server.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.database_url)
    try:
        sessions = None
        if engine is not None:
            from storage.engine import migrate, session_factory

            await migrate(engine)
            sessions = session_factory(engine)
        try:
            if request is None:
                assert sessions is not None
                request = await _recorded_request(sessions, args.resume)
            outcome = await scan(
                request,
                sessions=sessions,
                extra_anchors=anchors,
                observer=progress,
                resume_id=args.resume,
            )
        except (TargetError, SynUnavailable) as exc:
            raise UsageError(str(exc)) from None
        finally:
            if progress is not None:
                progress.stop()
        changes = await _changes_since_previous(sessions, outcome) if sessions else None
    finally:
        if engine is not None:
            await engine.dispose()
    try:
        # The report is written endpoint by endpoint from the scan's spool, never built whole.
        if args.out is not None:
            with args.out.open("w") as stream:
                write(args.format, stream, outcome.header, outcome.summary, changes)
            print_summary(outcome, sys.stdout)
        else:
            write(args.format, sys.stdout, outcome.header, outcome.summary, changes)
            print_summary(outcome, sys.stderr)
    finally:
        if outcome.summary.spool is not None:
            outcome.summary.spool.close()
    return 0


async def _changes_since_previous(
    sessions: async_sessionmaker[AsyncSession], outcome: ScanOutcome
) -> dict[str, Any] | None:
    """Issue 5 §7: every report carries the diff against the scan before it."""
    if outcome.scan_id is None:
        return None
    from scanner.stored_scan import load_scan, previous_scan_id

    before_id = await previous_scan_id(sessions, outcome.scan_id)
    if before_id is None:
        return None
    before = await load_scan(sessions, before_id)
    try:
        return diff_streams(
            before.header(),
            before.summary.endpoints(),
            outcome.header,
            outcome.summary.endpoints(),
        )
    finally:
        if before.summary.spool is not None:
            before.summary.spool.close()


async def _recorded_request(
    sessions: async_sessionmaker[AsyncSession], scan_id: str
) -> ScanRequest:
    from storage.models import ScanRun

    async with sessions() as session:
        run = await session.get(ScanRun, scan_id)
    if run is None:
        raise UsageError(f"no scan {scan_id} in the inventory")
    if run.status == "done":
        raise UsageError(f"scan {scan_id} is finished; nothing to resume")
    return ScanRequest.from_parameters(run.parameters)
