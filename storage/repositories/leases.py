"""Named leases in the database: one holder at a time, taken over when it lapses.

Every instance calls :func:`acquire` before a periodic job; the UPDATE only matches when the
lease is free, lapsed or already ours, so of several instances exactly one holds it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Lease


async def acquire(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    owner: str,
    now: dt.datetime,
    ttl: dt.timedelta,
) -> bool:
    """Take or renew the lease ``name`` for ``owner`` until now + ttl; True if we hold it."""
    async with sessions.begin() as session:
        result = await session.execute(
            update(Lease)
            .where(Lease.name == name, or_(Lease.owner == owner, Lease.expires_at <= now))
            .values(owner=owner, expires_at=now + ttl)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return True
    try:
        async with sessions.begin() as session:
            session.add(Lease(name=name, owner=owner, expires_at=now + ttl))
        return True
    except IntegrityError:
        return False  # someone else holds it


async def release(sessions: async_sessionmaker[AsyncSession], name: str, owner: str) -> None:
    async with sessions.begin() as session:
        await session.execute(
            update(Lease)
            .where(Lease.name == name, Lease.owner == owner)
            .values(expires_at=dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
        )
