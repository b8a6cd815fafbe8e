"""``certyard est ...``: the users EST clients authenticate as with HTTP Basic (RFC 7030 §3.2.3),
and the enrollments held for approval (``pending [--json]``, ``approve ID``, ``reject ID``).

``user add`` reads the password from stdin when it is not a terminal (one line), else asks
twice without echo. Only its scrypt hash is stored (est_server/auth.py); nothing secret is
printed or logged.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit.cli import record_in
from audit.errors import AuditError
from certyard.settings import Settings
from est_server.auth import hash_password
from storage.engine import create_engine, migrate, session_factory
from storage.models import EstPending, EstUser

MIN_PASSWORD = 8


class UsageError(Exception):
    pass


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    est = sub.add_parser("est", help="EST administration: Basic-auth users, approvals")
    est_sub = est.add_subparsers(dest="est_command", required=True)
    user = est_sub.add_parser("user", help="EST users (HTTP Basic)")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="add a user; password from stdin or the terminal")
    add.add_argument("name")
    add.add_argument("--label", help="the only EST label this user may enroll under")
    remove = user_sub.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    listing = user_sub.add_parser("list", help="list users (one JSON object a line)")
    # RFC 7030 §4.2.3: enrollments held by labels with approval = true.
    pending = est_sub.add_parser("pending", help="list enrollments waiting for approval")
    pending.add_argument("--json", action="store_true", help="one JSON object a line")
    approve = est_sub.add_parser("approve", help="approve a held enrollment")
    approve.add_argument("id")
    reject = est_sub.add_parser("reject", help="reject a held enrollment (the device gets 403)")
    reject.add_argument("id")
    for parser in (add, remove, listing, pending, approve, reject):
        parser.add_argument("--config", type=Path)


def read_password() -> str:
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the passwords differ")
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the password must have at least {MIN_PASSWORD} characters")
    return password


def _pending_json(row: EstPending) -> str:
    return json.dumps(
        {
            "id": row.id,
            "label": row.label,
            "subject": row.subject,
            "identity": row.identity,
            "source_address": row.source_address,
            "csr_sha256": row.csr_sha256,
            "created": row.created_at.isoformat(),
        }
    )


async def _approvals(sessions: async_sessionmaker[AsyncSession], args: argparse.Namespace) -> int:
    if args.est_command == "pending":
        async with sessions() as session:
            rows = (
                await session.execute(
                    select(EstPending)
                    .where(EstPending.state == "pending")
                    .order_by(EstPending.created_at)
                )
            ).scalars()
            for row in rows:
                if args.json:
                    print(_pending_json(row))
                else:
                    print(
                        f"{row.id}  {row.label}  {row.subject or '(empty subject)'}  "
                        f"{row.identity}  {row.created_at.isoformat(timespec='seconds')}"
                    )
        return 0
    state = "approved" if args.est_command == "approve" else "rejected"
    async with sessions.begin() as session:
        result = await session.execute(
            update(EstPending)
            .where(EstPending.id == args.id, EstPending.state == "pending")
            .values(state=state, decided_at=dt.datetime.now(dt.UTC))
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            await record_in(
                session,
                action=f"est.enrollment.{args.est_command}",
                target=f"est-pending:{args.id}",
            )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        print(f"certyard: no pending EST enrollment {args.id}", file=sys.stderr)
        return 1
    print(f"{state} EST enrollment {args.id}")
    return 0


async def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return await _run(settings, args)
    except AuditError as exc:
        print(f"certyard: {exc.detail}", file=sys.stderr)
        return 1


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    if args.est_command != "user":
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
            return await _approvals(session_factory(engine), args)
        finally:
            await engine.dispose()
    if args.user_command == "add":
        if not 0 < len(args.name) <= 128 or ":" in args.name:
            # RFC 7617 §2: the user-id cannot contain a colon.
            raise UsageError("the user name must be 1-128 characters without ':'")
        if args.label is not None and args.label not in settings.est.labels:
            raise UsageError(f"--label: no EST label {args.label!r} in the settings")
        password_hash = hash_password(read_password())
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        if args.user_command == "add":
            try:
                async with sessions.begin() as session:
                    session.add(
                        EstUser(
                            name=args.name,
                            label=args.label,
                            password_hash=password_hash,
                            created_at=dt.datetime.now(dt.UTC),
                        )
                    )
                    await record_in(
                        session,
                        action="est.user.add",
                        target=f"est-user:{args.name}",
                        details={"label": args.label},
                    )
            except IntegrityError:
                print(f"certyard: EST user {args.name} already exists", file=sys.stderr)
                return 1
            print(f"added EST user {args.name}")
            return 0
        if args.user_command == "remove":
            async with sessions.begin() as session:
                result = await session.execute(delete(EstUser).where(EstUser.name == args.name))
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    await record_in(
                        session, action="est.user.remove", target=f"est-user:{args.name}"
                    )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                print(f"certyard: no EST user {args.name}", file=sys.stderr)
                return 1
            print(f"removed EST user {args.name}")
            return 0
        async with sessions() as session:
            users = (await session.execute(select(EstUser).order_by(EstUser.name))).scalars()
            for user in users:
                print(
                    json.dumps(
                        {
                            "name": user.name,
                            "label": user.label,
                            "created": user.created_at.isoformat(),
                        }
                    )
                )
        return 0
    finally:
        await engine.dispose()
