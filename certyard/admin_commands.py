"""``certyard admin token create|list|revoke``: admin API tokens.

``token create`` prints the new token alone on stdout (the only time it is shown); that is how
the first administrator is bootstrapped: ``certyard admin token create --role admin``. Only the
token's SHA-256 is stored; nothing secret is logged.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from admin_api import tokens
from admin_api.config import ROLES
from admin_api.rbac import PERMISSIONS
from certyard.settings import Settings
from storage.engine import create_engine, is_sqlite, migrate, session_factory
from storage.models_admin import ApiToken


class UsageError(Exception):
    pass


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = sub.add_parser("admin", help="admin API tokens (certyard admin token create)")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    token = admin_sub.add_parser("token", help="API tokens for the admin API")
    token_sub = token.add_subparsers(dest="action", required=True)
    create = token_sub.add_parser("create", help="create a token; prints it alone on stdout")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--namespace", help="bind the token to one namespace")
    create.add_argument("--expires", help="lifetime like 30d, 12h or 90m (default admin setting)")
    create.add_argument("--name", default="cli", help="a label to recognise the token by")
    create.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="PERMISSION",
        help="restrict the token to this permission (repeatable; default: the role's)",
    )
    listing = token_sub.add_parser("list", help="list tokens (one JSON object a line)")
    revoke = token_sub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id")
    for parser in (create, listing, revoke):
        parser.add_argument("--config", type=Path)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    admin = settings.admin
    lifetime = dt.timedelta(days=admin.token_default_days)
    if args.action == "create":
        try:
            if args.expires:
                lifetime = tokens.parse_lifetime(args.expires)
            unknown = sorted(set(args.scope) - set(PERMISSIONS))
            if unknown:
                raise tokens.TokenError(f"unknown scope(s) {', '.join(unknown)}")
            tokens.check_namespace(args.namespace)
        except tokens.TokenError as exc:
            raise UsageError(str(exc)) from None
        if lifetime > dt.timedelta(days=admin.token_max_days):
            raise UsageError(f"--expires: at most {admin.token_max_days}d (admin.token_max_days)")
    if is_sqlite(settings.database_url):
        # The default database lives in data_dir, which may not exist before the first serve.
        settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url)
    try:
        return await _run(settings, args, engine, lifetime, now)
    except SQLAlchemyError as exc:
        print(f"certyard: the database is unavailable ({type(exc).__name__})", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()


async def _run(
    settings: Settings,
    args: argparse.Namespace,
    engine: AsyncEngine,
    lifetime: dt.timedelta,
    now: dt.datetime,
) -> int:
    admin = settings.admin
    await migrate(engine)
    sessions = session_factory(engine)
    if args.action == "create":
        try:
            new = await tokens.create(
                sessions,
                role=args.role,
                namespace=args.namespace,
                scopes=args.scope,
                lifetime=lifetime,
                max_lifetime=dt.timedelta(days=admin.token_max_days),
                name=args.name,
                created_by="cli",
                now=now,
            )
        except tokens.TokenError as exc:
            raise UsageError(str(exc)) from None
        print(new.value)
        print(
            f"created API token {new.row.id} (role {new.row.role}, "
            f"expires {new.row.expires_at.isoformat(timespec='seconds')})",
            file=sys.stderr,
        )
        return 0
    if args.action == "list":
        async with sessions() as session:
            rows = (await session.execute(select(ApiToken).order_by(ApiToken.created_at))).scalars()
            for row in rows:
                print(
                    json.dumps(
                        {
                            "id": row.id,
                            "name": row.name,
                            "role": row.role,
                            "namespace": row.namespace,
                            "scopes": row.scopes,
                            "state": tokens.state(row, now),
                            "created": row.created_at.isoformat(),
                            "expires": row.expires_at.isoformat(),
                        }
                    )
                )
        return 0
    if not await tokens.revoke(sessions, args.id, now):
        print(f"certyard: no active API token {args.id}", file=sys.stderr)
        return 1
    print(f"revoked API token {args.id}")
    return 0
