"""``certyard acme ...``: EAB keys (RFC 8555 §7.3.4) and renewal windows (RFC 9773).

``eab create`` prints the key id and the HMAC key alone on stdout (the only time the key is
shown); nothing secret is ever logged.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import secrets
import sys
from pathlib import Path

from sqlalchemy import select, update

from audit.cli import record_in
from audit.errors import AuditError
from ca.serials import serial_to_hex
from certyard.settings import Settings
from storage.engine import create_engine, migrate, session_factory
from storage.models import Certificate, EabKey


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    acme = sub.add_parser("acme", help="ACME administration: EAB keys, renewal windows")
    acme_sub = acme.add_subparsers(dest="acme_command", required=True)
    eab = acme_sub.add_parser("eab", help="external account binding keys")
    eab_sub = eab.add_subparsers(dest="eab_command", required=True)
    create = eab_sub.add_parser("create", help="create a key; prints KID and HMAC key")
    create.add_argument("--profile", action="append", default=[], help="allowed profile")
    create.add_argument(
        "--allow-domain",
        action="append",
        default=[],
        metavar="D",
        help="allowed name, or *.example.com for all names below it",
    )
    create.add_argument("--expires", help="lifetime like 30d, 12h, or an ISO 8601 time")
    create.add_argument("--max-validity-days", type=int)
    create.add_argument("--description", default="")
    create.add_argument("--json", action="store_true")
    for name in ("list", "revoke"):
        p = eab_sub.add_parser(name)
        if name == "revoke":
            p.add_argument("kid")
        p.add_argument("--config", type=Path)
    create.add_argument("--config", type=Path)
    ari = acme_sub.add_parser("ari", help="renewal information")
    ari_sub = ari.add_subparsers(dest="ari_command", required=True)
    advance = ari_sub.add_parser("advance", help="move renewal windows earlier")
    target = advance.add_mutually_exclusive_group(required=True)
    target.add_argument("--serial", action="append", help="certificate serial (hex)")
    target.add_argument("--issuer", help="every unexpired certificate of this issuer id")
    advance.add_argument("--start", default="now", help="window start (ISO 8601 or 'now')")
    advance.add_argument("--hours", type=float, default=24.0, help="window length in hours")
    advance.add_argument("--config", type=Path)


def parse_when(text: str, now: dt.datetime) -> dt.datetime:
    if text == "now":
        return now
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if text[:-1].isdigit() and text[-1] in units:
        return now + dt.timedelta(**{units[text[-1]]: int(text[:-1])})
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} needs a time zone")
    return parsed


class UsageError(Exception):
    pass


async def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return await _run(settings, args)
    except AuditError as exc:
        print(f"certyard: {exc.detail}", file=sys.stderr)
        return 1


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        now = dt.datetime.now(dt.UTC)
        if args.acme_command == "eab":
            if args.eab_command == "create":
                try:
                    expires = parse_when(args.expires, now) if args.expires else None
                except ValueError as exc:
                    raise UsageError(f"--expires: {exc}") from None
                kid = "kid-" + secrets.token_urlsafe(12)
                key = secrets.token_bytes(32)
                async with sessions.begin() as session:
                    session.add(
                        EabKey(
                            kid=kid,
                            hmac_key=key,
                            created_at=now,
                            expires_at=expires,
                            revoked_at=None,
                            account_id=None,
                            allowed_domains=[d.lower() for d in args.allow_domain],
                            allowed_profiles=list(args.profile),
                            max_validity_days=args.max_validity_days,
                            description=args.description,
                        )
                    )
                    # The HMAC key is a secret: never in the audit trail.
                    await record_in(
                        session,
                        action="acme.eab.create",
                        target=f"eab:{kid}",
                        details={
                            "allowed_domains": [d.lower() for d in args.allow_domain],
                            "allowed_profiles": list(args.profile),
                            "expires": expires.isoformat() if expires else None,
                            "max_validity_days": args.max_validity_days,
                        },
                    )
                hmac_b64 = base64.urlsafe_b64encode(key).decode().rstrip("=")
                if args.json:
                    print(json.dumps({"kid": kid, "hmac_key": hmac_b64}))
                else:
                    print(kid)
                    print(hmac_b64)
                return 0
            if args.eab_command == "list":
                async with sessions() as session:
                    keys = (
                        await session.execute(select(EabKey).order_by(EabKey.created_at))
                    ).scalars()
                    for k in keys:
                        state = (
                            "revoked" if k.revoked_at else ("bound" if k.account_id else "unused")
                        )
                        print(
                            json.dumps(
                                {
                                    "kid": k.kid,
                                    "state": state,
                                    "account": k.account_id,
                                    "allowed_domains": k.allowed_domains,
                                    "allowed_profiles": k.allowed_profiles,
                                    "max_validity_days": k.max_validity_days,
                                    "expires": k.expires_at.isoformat() if k.expires_at else None,
                                }
                            )
                        )
                return 0
            async with sessions.begin() as session:
                result = await session.execute(
                    update(EabKey)
                    .where(EabKey.kid == args.kid, EabKey.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    await record_in(session, action="acme.eab.revoke", target=f"eab:{args.kid}")
            if result.rowcount != 1:  # type: ignore[attr-defined]
                print(f"certyard: no active EAB key {args.kid}", file=sys.stderr)
                return 1
            print(f"revoked {args.kid}")
            return 0
        # ari advance
        try:
            start = parse_when(args.start, now)
        except ValueError as exc:
            raise UsageError(f"--start: {exc}") from None
        end = start + dt.timedelta(hours=args.hours)
        query = update(Certificate).where(Certificate.not_after > now)
        if args.serial:
            try:
                serials = [serial_to_hex(int(s.replace(":", ""), 16)) for s in args.serial]
            except ValueError:
                raise UsageError("--serial takes hexadecimal serial numbers") from None
            query = query.where(Certificate.serial.in_(serials))
        else:
            query = query.where(Certificate.issuer_id == args.issuer)
        async with sessions.begin() as session:
            result = await session.execute(query.values(ari_window_start=start, ari_window_end=end))
            changed = int(result.rowcount)  # type: ignore[attr-defined]
            if changed:
                await record_in(
                    session,
                    action="acme.ari.advance",
                    target=f"issuer:{args.issuer}" if args.issuer else "serials",
                    details={
                        "serials": list(args.serial or []),
                        "issuer": args.issuer,
                        "window_start": start.isoformat(),
                        "window_end": end.isoformat(),
                        "certificates": changed,
                    },
                )
        count = changed
        print(
            f"advanced the renewal window of {count} certificate(s) to "
            f"{start.isoformat()} .. {end.isoformat()}"
        )
        return 0 if count else 1
    finally:
        await engine.dispose()
