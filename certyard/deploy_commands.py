"""``certyard deploy …``: SSH deployment targets (docs/deploy.md).

    certyard deploy target add NAME --host H --user U --key-file F --host-key KEY|SHA256:…
        --names a.example,b.example --key-path P --cert-path P --reload-command CMD
        --verify HOST:PORT[,SNI]
    certyard deploy target list [--json]
    certyard deploy target test NAME [--json]
    certyard deploy run NAME [--dry-run] [--json]
    certyard deploy history [NAME] [--json]

``target add`` never trusts a host key on first use: without ``--host-key`` (alias
``--accept-host-key``) it fetches the key the server presents, prints its fingerprint and
refuses (exit 2); the operator checks it on the host and runs the command again with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit.cli import record_in
from audit.errors import AuditError
from ca.errors import CAError
from certyard.settings import Settings
from certyard.wiring import build_services, ca_config
from deploy import repository
from deploy.errors import DeployError
from deploy.hostkeys import (
    PinnedKey,
    fetch_host_key,
    find_by_fingerprint,
    fingerprint,
    is_fingerprint,
    parse_key,
)
from deploy.service import Deployer, DeployOutcome
from deploy.targets import Target, check_names, check_target, parse_endpoint, parse_mode
from notify.events import NotificationSink, NullSink
from storage.engine import create_engine, migrate, session_factory

OK_STATUSES = ("deployed", "dry_run")


class UsageError(Exception):
    pass


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deploy = sub.add_parser("deploy", help="SSH deployment targets (add, list, test, run)")
    deploy_sub = deploy.add_subparsers(dest="deploy_command", required=True)
    target = deploy_sub.add_parser("target", help="deployment targets")
    target_sub = target.add_subparsers(dest="target_command", required=True)

    add = target_sub.add_parser("add", help="add a target (its SSH host key pinned)")
    add.add_argument("name")
    add.add_argument("--host", required=True, help="SSH host name or address")
    add.add_argument("--port", type=int, default=22, help="SSH port (default 22)")
    add.add_argument("--user", required=True, help="SSH user")
    creds = add.add_mutually_exclusive_group(required=True)
    creds.add_argument("--key-file", type=Path, help="private key file for SSH authentication")
    creds.add_argument("--agent", action="store_true", help="authenticate with the SSH agent")
    add.add_argument(
        "--host-key",
        "--accept-host-key",
        dest="host_key",
        help="the pinned host key: a public key or known_hosts line, or its SHA256: fingerprint",
    )
    add.add_argument(
        "--names",
        action="append",
        required=True,
        help="DNS names / IP addresses the certificate covers (comma-separated, repeatable)",
    )
    add.add_argument("--profile", help="certificate profile (default: [deploy] default_profile)")
    add.add_argument("--key-path", required=True, help="remote path of the private key")
    add.add_argument("--cert-path", required=True, help="remote path of the certificate")
    add.add_argument("--chain-path", help="remote path of the intermediate certificate(s)")
    add.add_argument("--fullchain-path", help="remote path of certificate + intermediates")
    add.add_argument("--key-mode", default="0600", help="mode of the key file (default 0600)")
    add.add_argument("--cert-mode", default="0644", help="mode of certificate files (0644)")
    add.add_argument("--owner", help="owner of the files (chown on the target)")
    add.add_argument("--group", help="group of the files")
    add.add_argument("--reload-command", required=True, help="run on the target after writing")
    add.add_argument(
        "--verify", required=True, help="endpoint that must serve the new certificate: "
        "HOST:PORT[,SNI] (SNI defaults to the first DNS name; 'HOST:PORT,' sends none)"
    )  # fmt: skip
    pin = target_sub.add_parser("pin", help="pin a new host key (the host was re-installed)")
    pin.add_argument("name")
    pin.add_argument("--host-key", "--accept-host-key", dest="host_key", help="as for add")
    listing = target_sub.add_parser("list", help="list targets")
    listing.add_argument("--json", action="store_true", help="a JSON array")
    test = target_sub.add_parser("test", help="log in, check host key and paths (writes nothing)")
    test.add_argument("name")
    test.add_argument("--json", action="store_true")

    run_parser = deploy_sub.add_parser("run", help="renew and deploy a target's certificate now")
    run_parser.add_argument("name")
    run_parser.add_argument("--dry-run", action="store_true", help="check only; issue nothing")
    run_parser.add_argument("--json", action="store_true")
    history = deploy_sub.add_parser("history", help="recent deployment runs")
    history.add_argument("name", nargs="?")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--json", action="store_true")
    for parser in (add, pin, listing, test, run_parser, history):
        parser.add_argument("--config", type=Path)


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.deploy_command == "target":
            if args.target_command == "add":
                return await _add(settings, args)
            if args.target_command == "pin":
                return await _repin(settings, args)
            if args.target_command == "list":
                return await _list(settings, args)
            return await _test(settings, args)
        if args.deploy_command == "run":
            return await _run_target(settings, args)
        return await _history(settings, args)
    except DeployError as exc:
        if exc.kind == "malformed":
            raise UsageError(str(exc)) from None
        print(f"certyard: {exc}", file=sys.stderr)
        return 1
    except AuditError as exc:
        print(f"certyard: {exc.detail}", file=sys.stderr)
        return 1


# -- target add --------------------------------------------------------------------------------


async def _pin(args: argparse.Namespace, seconds: float) -> PinnedKey:
    """The host key to pin: given in full, or found by its fingerprint; never learnt silently."""
    given: str | None = args.host_key
    where = f"{args.host}:{args.port}"
    if given is None:
        try:
            key = await fetch_host_key(args.host, args.port, seconds=seconds)
        except DeployError as exc:
            raise UsageError(f"--host-key is required (and {exc})") from None
        presented = fingerprint(key)
        raise UsageError(
            f"--host-key is required: {where} presents {key.get_algorithm()} {presented}; "
            "if that is the host's key (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on the "
            f"host), run again with --accept-host-key {presented}"
        )
    if not is_fingerprint(given):
        return parse_key(given)
    found = await find_by_fingerprint(args.host, args.port, given, seconds=seconds)
    if found is None:
        raise UsageError(f"{where} has no host key with fingerprint {given.strip()}")
    return found


def _profile(settings: Settings, given: str | None) -> str:
    config = ca_config(settings)
    name = given or settings.deploy.default_profile or config.default_profile
    profile = config.profile(name)
    if profile is None or not profile.is_server:
        servers = ", ".join(p.name for p in config.profiles if p.is_server)
        raise UsageError(f"--profile {name!r} is not a TLS server profile (have: {servers})")
    return name


async def _add(settings: Settings, args: argparse.Namespace) -> int:
    names = check_names([n.strip() for item in args.names for n in item.split(",") if n.strip()])
    key_file: str | None = None
    if args.key_file is not None:
        if not args.key_file.is_file():
            raise UsageError(f"--key-file {args.key_file} is not a readable file")
        key_file = str(args.key_file.resolve())
    draft = Target(
        name=args.name,
        host=args.host,
        port=args.port,
        username=args.user,
        key_file=key_file,
        host_key="",
        host_key_fingerprint="",
        names=names,
        profile=_profile(settings, args.profile),
        key_path=args.key_path,
        cert_path=args.cert_path,
        chain_path=args.chain_path,
        fullchain_path=args.fullchain_path,
        key_mode=parse_mode(args.key_mode, "--key-mode"),
        cert_mode=parse_mode(args.cert_mode, "--cert-mode"),
        owner=args.owner,
        group=args.group,
        reload_command=args.reload_command,
        verify=parse_endpoint(args.verify, names),
    )
    check_target(draft)  # every local check before the network is touched
    pin = await _pin(args, settings.deploy.connect_timeout_seconds)
    target = dataclasses.replace(draft, host_key=pin.line, host_key_fingerprint=pin.fingerprint)

    async def audit(session: AsyncSession) -> None:
        await record_in(
            session,
            action="deploy.target.add",
            target=f"deploy-target:{target.name}",
            details={"host": f"{target.host}:{target.port}", "host_key": pin.fingerprint},
        )

    async with _database(settings) as sessions:
        try:
            await repository.add_target(sessions, target, dt.datetime.now(dt.UTC), also=audit)
        except DeployError as exc:
            if exc.kind == "conflict":
                raise UsageError(str(exc)) from None
            raise
    print(
        f"added deploy target {target.name}: {target.username}@{target.host}:{target.port}, "
        f"host key {pin.algorithm} {pin.fingerprint}"
    )
    return 0


async def _repin(settings: Settings, args: argparse.Namespace) -> int:
    async with _database(settings) as sessions:
        target = await repository.get_target(sessions, args.name)
        args.host, args.port = target.host, target.port
        pin = await _pin(args, settings.deploy.connect_timeout_seconds)

        async def audit(session: AsyncSession) -> None:
            await record_in(
                session,
                action="deploy.target.pin",
                target=f"deploy-target:{target.name}",
                details={"old": target.host_key_fingerprint, "new": pin.fingerprint},
            )

        old = await repository.set_host_key(
            sessions, target.name, pin.line, pin.fingerprint, dt.datetime.now(dt.UTC), also=audit
        )
    print(
        f"deploy target {target.name}: host key {old} replaced by {pin.algorithm} {pin.fingerprint}"
    )
    return 0


# -- target list / test ------------------------------------------------------------------------


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


async def _list(settings: Settings, args: argparse.Namespace) -> int:
    async with _database(settings) as sessions:
        targets = await repository.list_targets(sessions)
    if args.json:
        print(json.dumps([t.summary() for t in targets], indent=2))
        return 0
    if not targets:
        print("no deployment targets (certyard deploy target add)")
        return 0
    rows = [["NAME", "SSH", "HOST KEY", "NAMES", "VERIFY", "LAST"]]
    for t in targets:
        s = t.summary()
        rows.append(
            [
                t.name,
                f"{t.username}@{t.host}:{t.port}",
                t.host_key_fingerprint,
                ",".join(t.names),
                s["verify"],
                t.last_status or "-",
            ]
        )
    print(_table(rows))
    return 0


async def _test(settings: Settings, args: argparse.Namespace) -> int:
    async with _database(settings) as sessions:
        # Checking needs no CA: the issuance side is never called.
        deployer = Deployer(sessions, _NoIssuer(), settings.deploy)
        checks = await deployer.check_target(args.name)
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        for check in checks:
            print(f"{'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    return 0 if all(c.ok for c in checks) else 1


class _NoIssuer:
    async def issue(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("target test issues nothing")

    async def revoke(self, cert_id: str, reason: int, *, actor: str | None = None) -> None:
        raise AssertionError("target test revokes nothing")

    def root_pem(self) -> str:
        raise AssertionError("target test records no scan")


# -- run / history -----------------------------------------------------------------------------


def _sink(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> NotificationSink:
    if not settings.notify.hooks:
        return NullSink()
    from notify.dispatcher import build_notifier
    from notify.errors import NotifyConfigError

    try:
        return build_notifier(settings.notify, sessions)
    except NotifyConfigError as exc:
        raise UsageError(str(exc)) from None


def _print_outcome(outcome: DeployOutcome, as_json: bool) -> None:
    if as_json:
        print(json.dumps(outcome.__dict__, indent=2))
        return
    serial = f" (serial {outcome.serial})" if outcome.serial else ""
    print(f"{outcome.target}: {outcome.status}{serial}: {outcome.detail}")


async def _run_target(settings: Settings, args: argparse.Namespace) -> int:
    async with _database(settings) as sessions:
        await repository.get_target(sessions, args.name)  # an unknown name before the CA opens
    try:
        services = await build_services(settings, hierarchy_mode="load")
    except CAError as exc:
        print(f"certyard: cannot open the CA: {exc}", file=sys.stderr)
        return 1
    try:
        deployer = Deployer(
            services.sessions,
            services.issuance,
            settings.deploy,
            sink=_sink(settings, services.sessions),
        )
        outcome = await deployer.renew_target(args.name, dry_run=args.dry_run)
    finally:
        await services.close()
    _print_outcome(outcome, args.json)
    return 0 if outcome.status in OK_STATUSES else 1


async def _history(settings: Settings, args: argparse.Namespace) -> int:
    if not 0 < args.limit <= 1000:
        raise UsageError("--limit must be 1 to 1000")
    async with _database(settings) as sessions:
        runs = await repository.list_runs(sessions, args.name, args.limit)
    items = [
        {
            "id": r.id,
            "target": r.target_name,
            "started": r.started_at.isoformat(timespec="seconds"),
            "status": r.status,
            "serial": r.serial_hex,
            "key_origin": r.key_origin,
            "finding": r.finding,
            "detail": r.detail,
        }
        for r in runs
    ]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    for item in items:
        print(f"{item['started']}  {item['target']}  {item['status']}  {item['detail']}")
    return 0
