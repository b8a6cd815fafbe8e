"""API tokens: created with a random value shown once, stored as its SHA-256.

A token is 256 random bits (``secrets``), so a plain SHA-256 is enough to store it: there is
nothing to brute-force, unlike a password (which would need a slow hash).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin_api.config import ROLES
from admin_api.rbac import PERMISSIONS
from storage.models_admin import ApiToken

PREFIX = "cyt_"  # recognisable in logs and secret scanners, and tells it from a JWT
NAMESPACE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class TokenError(ValueError):
    """A bad request for a token (unknown role, scope, namespace syntax, lifetime)."""


@dataclass(frozen=True)
class NewToken:
    row: ApiToken
    value: str  # shown once, never stored


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def check_namespace(namespace: str | None) -> None:
    if namespace is not None and not NAMESPACE_RE.match(namespace):
        raise TokenError("a namespace is 1-64 of a-z 0-9 . _ - starting with a letter or digit")


def parse_lifetime(text: str) -> dt.timedelta:
    """``30d``, ``12h``, ``90m``: a token's lifetime."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if len(text) < 2 or not text[:-1].isdigit() or text[-1] not in units or int(text[:-1]) < 1:
        raise TokenError(f"{text!r} is not a lifetime like 30d, 12h or 90m")
    return dt.timedelta(**{units[text[-1]]: int(text[:-1])})


async def create(
    sessions: async_sessionmaker[AsyncSession],
    *,
    role: str,
    namespace: str | None,
    scopes: Sequence[str],
    lifetime: dt.timedelta,
    max_lifetime: dt.timedelta,
    name: str,
    created_by: str,
    now: dt.datetime,
) -> NewToken:
    if role not in ROLES:
        raise TokenError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    unknown = sorted(set(scopes) - set(PERMISSIONS))
    if unknown:
        raise TokenError(f"unknown scope(s) {', '.join(unknown)}")
    check_namespace(namespace)
    if lifetime <= dt.timedelta(0) or lifetime > max_lifetime:
        raise TokenError(f"the lifetime must be at most {max_lifetime.days} days")
    if not 0 < len(name) <= 128:
        raise TokenError("the name must have 1-128 characters")
    value = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        id="tok_" + secrets.token_hex(8),
        name=name,
        token_sha256=digest(value),
        role=role,
        namespace=namespace,
        scopes=sorted(set(scopes)),
        created_at=now,
        expires_at=now + lifetime,
        revoked_at=None,
        created_by=created_by[:255],
    )
    async with sessions.begin() as session:
        session.add(row)
    return NewToken(row, value)


async def lookup(
    sessions: async_sessionmaker[AsyncSession], value: str, now: dt.datetime
) -> ApiToken | None:
    """The live token with this value: known, not revoked, not expired."""
    async with sessions() as session:
        row = (
            await session.execute(select(ApiToken).where(ApiToken.token_sha256 == digest(value)))
        ).scalar_one_or_none()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    return row


async def revoke(
    sessions: async_sessionmaker[AsyncSession], token_id: str, now: dt.datetime
) -> bool:
    async with sessions.begin() as session:
        result = await session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def state(row: ApiToken, now: dt.datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    return "expired" if row.expires_at <= now else "active"
