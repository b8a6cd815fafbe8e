"""``certyard renew …``: the risk-ranked renewal queue (certyard renew plan|run|history|mark).

``plan`` reads only. ``run`` acts on every entry that needs it and records each action;
``run --dry-run`` prints what it would do and writes nothing, sends nothing. ``mark`` sets an
operator's at-risk mark on one certificate (``--clear`` removes it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ca.errors import CAError
from ca.serials import serial_to_hex
from certyard.settings import Settings
from notify.events import NotificationSink, NullSink
from renewal.inventory import sha256_hex
from renewal.queue import QueueEntry, load_queue
from renewal.runner import (
    ActionRecord,
    ExpiryCheck,
    RenewalRunner,
    RunResult,
    TargetRenewer,
    history,
)
from storage.engine import create_engine, is_sqlite, migrate, session_factory
from storage.models import Certificate
from storage.models_renewal import RenewalItem
from storage.repositories import leases

if TYPE_CHECKING:
    from certyard.wiring import Services


class UsageError(Exception):
    pass


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("renew", help="renewal queue (certyard renew plan|run|history)")
    p.add_argument("--config", type=Path)
    renew_sub = p.add_subparsers(dest="renew_command", required=True)
    plan = renew_sub.add_parser("plan", help="show the risk-ranked queue")
    plan.add_argument("--json", action="store_true", help="one JSON document on stdout")
    plan.add_argument("--due", action="store_true", help="only entries that need action")
    plan.add_argument("--limit", type=int, default=0, help="show at most N entries")
    run = renew_sub.add_parser("run", help="act on every due or at-risk certificate")
    run.add_argument("--dry-run", action="store_true", help="print the actions, change nothing")
    run.add_argument("--json", action="store_true")
    hist = renew_sub.add_parser("history", help="past renewal runs and their actions")
    hist.add_argument("--limit", type=int, default=10, help="runs to show")
    hist.add_argument("--json", action="store_true")
    mark = renew_sub.add_parser("mark", help="mark a certificate at risk (or --clear)")
    mark.add_argument("certificate", help="SHA-256 of the DER (hex), or serial:HEX")
    group = mark.add_mutually_exclusive_group(required=True)
    group.add_argument("--reason", help="why it is at risk (shown in the plan)")
    group.add_argument("--clear", action="store_true", help="remove the operator's mark")
    for parser in (plan, run, hist, mark):
        parser.add_argument("--config", type=Path, default=argparse.SUPPRESS)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- plan ----------------------------------------------------------------------------------


def entry_json(entry: QueueEntry) -> dict[str, Any]:
    item = entry.item
    return {
        "key": item.key,
        "priority": entry.priority,
        "state": entry.state,
        "names": item.names,
        "sources": sorted(item.sources),
        "requester": item.requester,
        "certificate_id": item.certificate_id,
        "serial": item.serial,
        "issuer": item.issuer,
        "not_before": item.not_before.isoformat(),
        "not_after": item.not_after.isoformat(),
        "days_left": round(entry.days_left, 2),
        "due_at": entry.due_at.isoformat(),
        "findings": sorted(item.findings),
        "exposure": item.exposure,
        "endpoints": sorted(item.endpoints),
        "tags": sorted(item.tags),
        "at_risk_reasons": list(entry.at_risk_reasons),
        "policy": entry.policy.name,
        "method": entry.policy.method,
        # The deploy target of an "ssh" policy (None: the deployer finds it, or not ssh).
        "target": entry.policy.target,
        "needs_action": entry.needs_action,
    }


def _source_text(entry: QueueEntry) -> str:
    item = entry.item
    parts = []
    for source in sorted(item.sources):
        kind = item.requester_kind if source == "certyard" else None
        parts.append(f"{source}:{kind}" if kind else source)
    return ",".join(parts)


def _names_text(names: Sequence[str]) -> str:
    return names[0] + (f" +{len(names) - 1}" if len(names) > 1 else "") if names else "-"


def print_plan(entries: Sequence[QueueEntry], stream: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"certyard renew plan ({len(entries)} certificates)")
    for column, justify in [
        ("priority", "right"),
        ("state", "left"),
        ("names", "left"),
        ("source", "left"),
        ("not_after", "left"),
        ("days left", "right"),
        ("findings", "left"),
        ("exposure", "right"),
        ("policy", "left"),
        ("method", "left"),
    ]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    styles = {"expired": "red", "revoked": "red", "at-risk": "magenta", "renew-due": "yellow"}
    for entry in entries:
        item = entry.item
        table.add_row(
            f"{entry.priority:.1f}",
            entry.state,
            _names_text(item.names),
            _source_text(entry),
            item.not_after.strftime("%Y-%m-%d"),
            f"{entry.days_left:.0f}",
            ",".join(sorted(item.findings)) or "-",
            str(item.exposure),
            entry.policy.name,
            entry.policy.method,
            style=styles.get(entry.state),
        )
    Console(file=stream, width=160).print(table)


# --- run -----------------------------------------------------------------------------------


def _sink(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> NotificationSink:
    """The configured notifier (notify/dispatcher.py), or a sink that delivers nothing."""
    try:
        from notify.dispatcher import build_notifier
    except ImportError:
        return NullSink()
    try:
        return build_notifier(settings.notify, sessions)
    except ValueError as exc:  # NotifyConfigError and friends: one line, exit 2
        raise UsageError(f"notify: {exc}") from None


def _expiry_check(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], sink: NotificationSink
) -> ExpiryCheck | None:
    """notify/expiry.py's deduplicated expiry alerts for the queue's certificates, if present."""
    try:
        from notify.expiry import ExpiringCertificate, ExpiryAlerter
    except ImportError:
        return None
    alerter = ExpiryAlerter(sessions, sink, settings.notify.expiry_thresholds_days)

    async def check(queue: Sequence[QueueEntry]) -> int:
        certs = [
            ExpiringCertificate(
                key=e.item.key,
                names=tuple(e.item.names),
                not_after=e.item.not_after,
                owner=e.policy.owner,
                labels={"state": e.state, "policy": e.policy.name, "method": e.policy.method},
            )
            for e in queue
            if not e.item.revoked
        ]
        return len(await alerter.check(certs))

    return check


async def _deployer(
    settings: Settings,
    queue: Sequence[QueueEntry],
    sink: NotificationSink,
    running: Services | None = None,
) -> tuple[TargetRenewer | None, Services | None]:
    """deploy/service.py's Deployer with the CA it issues through; only built when an "ssh"
    entry needs it. Inside ``certyard serve`` (``running``) it uses the server's own CA;
    elsewhere it opens one (the key backend), returned as the services to close."""
    if not any(e.needs_action and e.policy.method == "ssh" for e in queue):
        return None, None
    try:
        from deploy.service import Deployer
    except ImportError:
        return None, None
    if running is not None:
        return Deployer(running.sessions, running.issuance, settings.deploy, sink=sink), None
    from certyard.wiring import build_services

    try:
        services = await build_services(settings)
    except CAError as exc:
        # The SSH entries are then recorded "skipped: deploy unavailable"; the rest proceeds.
        print(f"certyard: deployments unavailable: cannot start the CA: {exc}", file=sys.stderr)
        return None, None
    deployer = Deployer(services.sessions, services.issuance, settings.deploy, sink=sink)
    return deployer, services


def action_json(action: ActionRecord) -> dict[str, Any]:
    return {
        "certificate": action.cert_key,
        "names": list(action.names),
        "state": action.state,
        "method": action.method,
        "action": action.action,
        "outcome": action.outcome,
        "detail": action.detail,
    }


def print_run(result: RunResult, stream: TextIO) -> None:
    title = "dry run: nothing changed" if result.dry_run else f"run {result.run_id}"
    print(title, file=stream)
    for a in result.actions:
        print(
            f"  {a.outcome:<8} {a.action:<18} {a.state:<10} {_names_text(a.names):<32} {a.detail}",
            file=stream,
        )
    if not result.actions:
        print("  nothing to do", file=stream)


# One real pass at a time across processes and instances - `renew run`, the scheduler's renew
# job and the admin API alike - or two would act on the same certificates; the lease lapses by
# itself if a process dies mid-pass.
RUN_LEASE = "renewal:pass"
RUN_LEASE_TTL = dt.timedelta(hours=1)


class PassRunning(Exception):
    """Another real renewal pass holds the lease."""


async def renewal_pass(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    *,
    dry_run: bool = False,
    services: Services | None = None,
) -> RunResult:
    """One pass of the queue (what `renew run` does; the scheduler and the admin API call it
    too). Raises PassRunning when another real pass is running; a dry run never waits."""
    now = _now()
    if dry_run:
        queue = await load_queue(sessions, settings.renewal, now)
        return await RenewalRunner(sessions, settings.renewal).run(queue, now, dry_run=True)
    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    if not await leases.acquire(sessions, RUN_LEASE, owner, now, RUN_LEASE_TTL):
        raise PassRunning("another renewal pass is running; try again later")
    try:
        return await _real_pass(settings, sessions, now, services)
    finally:
        await leases.release(sessions, RUN_LEASE, owner)


async def _real_pass(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    now: dt.datetime,
    running: Services | None,
) -> RunResult:
    queue = await load_queue(sessions, settings.renewal, now)
    sink = _sink(settings, sessions)
    deployer, services = await _deployer(settings, queue, sink, running)
    try:
        runner = RenewalRunner(
            sessions,
            settings.renewal,
            sink=sink,
            deployer=deployer,
            expiry_check=_expiry_check(settings, sessions, sink),
        )
        return await runner.run(queue, now, dry_run=False)
    finally:
        if services is not None:
            await services.close()


# --- mark ----------------------------------------------------------------------------------


async def _mark(sessions: async_sessionmaker[AsyncSession], text: str, reason: str | None) -> str:
    key = text.lower()
    async with sessions.begin() as session:
        if key.startswith("serial:"):
            try:
                serial = serial_to_hex(int(key.removeprefix("serial:").replace(":", ""), 16))
            except ValueError:
                raise UsageError("serial:HEX takes a positive hexadecimal serial") from None
            cert = await session.scalar(select(Certificate).where(Certificate.serial == serial))
            if cert is None or cert.der is None:
                raise UsageError(f"no certyard certificate with serial {serial}")
            key = sha256_hex(cert.der)
        elif len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise UsageError("certificate: give the hex SHA-256 of its DER, or serial:HEX")
        row = await session.get(RenewalItem, key)
        if row is None:
            if reason is None:
                raise UsageError(f"no mark on {key}")
            # A placeholder row: the next `renew run` fills in what the inventory knows.
            row = RenewalItem(
                cert_key=key,
                certificate_id=None,
                names=[],
                sources=[],
                not_after=_now(),
                state="unknown",
                priority=0.0,
                policy="",
                method="",
                at_risk=False,
                at_risk_reasons=[],
                at_risk_since=None,
                operator_mark=None,
                ari_advanced_at=None,
                last_action=None,
                last_action_at=None,
                updated_at=_now(),
            )
            session.add(row)
        row.operator_mark = reason
    return key


# --- entry point ---------------------------------------------------------------------------


async def run(settings: Settings, args: argparse.Namespace) -> int:
    command = args.renew_command
    for name in ("limit",):
        if getattr(args, name, 0) < 0:
            raise UsageError(f"--{name} must be >= 0")
    if command == "mark" and args.reason is not None and not args.reason.strip():
        raise UsageError("--reason must not be empty")
    if is_sqlite(settings.database_url):
        settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        if command == "plan":
            queue = await load_queue(sessions, settings.renewal, _now())
            if args.due:
                queue = [e for e in queue if e.needs_action]
            if args.limit:
                queue = queue[: args.limit]
            if args.json:
                print(json.dumps({"queue": [entry_json(e) for e in queue]}, indent=2))
            else:
                print_plan(queue, sys.stdout)
            return 0
        if command == "run":
            try:
                result = await renewal_pass(settings, sessions, dry_run=args.dry_run)
            except PassRunning as exc:
                print(f"certyard: {exc}", file=sys.stderr)
                return 1
            if args.json:
                document = {
                    "run": result.run_id,
                    "dry_run": result.dry_run,
                    "summary": result.summary(),
                    "actions": [action_json(a) for a in result.actions],
                }
                print(json.dumps(document, indent=2))
            else:
                print_run(result, sys.stdout)
            return 1 if any(a.outcome == "failed" for a in result.actions) else 0
        if command == "history":
            runs = await history(sessions, args.limit or 10)
            if args.json:
                document_runs = [
                    {
                        "run": run.id,
                        "started_at": run.started_at.isoformat(),
                        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                        "status": run.status,
                        "summary": run.summary,
                        "actions": [
                            {
                                "certificate": a.cert_key,
                                "names": a.names,
                                "state": a.state,
                                "method": a.method,
                                "action": a.action,
                                "outcome": a.outcome,
                                "detail": a.detail,
                            }
                            for a in actions
                        ],
                    }
                    for run, actions in runs
                ]
                print(json.dumps({"runs": document_runs}, indent=2))
                return 0
            if not runs:
                print("no renewal runs yet")
            for run, actions in runs:
                print(
                    f"{run.started_at:%Y-%m-%d %H:%M:%S} UTC  {run.id}  {run.status}  "
                    f"{len(actions)} action(s)"
                )
                for a in actions:
                    print(
                        f"  {a.outcome:<8} {a.action:<18} {a.state:<10} "
                        f"{_names_text(a.names):<32} {a.detail}"
                    )
            return 0
        # mark
        key = await _mark(sessions, args.certificate, None if args.clear else args.reason)
        print(f"{'cleared the mark on' if args.clear else 'marked at risk:'} {key}")
        return 0
    finally:
        await engine.dispose()
