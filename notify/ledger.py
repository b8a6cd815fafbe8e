"""The delivery ledger: one row per (hook, idempotency key), so an event reaches a hook once.

An instance *claims* a delivery by inserting its row (status "sending", held until
``claimed_until``); the unique (hook, idempotency_key) makes exactly one of several instances
win. A claim whose holder died lapses and may be taken over. Rows end "delivered" or "dead" (the
dead-letter list); a re-drive claims a dead row again.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notify.events import Notification
from notify.payloads import event_to_dict
from storage.models_notify import NotifyDelivery

_ERROR_LIMIT = 2000


@dataclass(frozen=True)
class DeliveryRecord:
    id: str
    hook: str
    idempotency_key: str
    kind: str
    severity: str
    subject: str
    event: dict[str, Any]
    status: str
    attempts: int
    last_error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    delivered_at: dt.datetime | None


def _record(row: NotifyDelivery) -> DeliveryRecord:
    return DeliveryRecord(
        id=row.id,
        hook=row.hook,
        idempotency_key=row.idempotency_key,
        kind=row.kind,
        severity=row.severity,
        subject=row.subject,
        event=row.event,
        status=row.status,
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        delivered_at=row.delivered_at,
    )


async def claim(
    sessions: async_sessionmaker[AsyncSession],
    hook: str,
    event: Notification,
    now: dt.datetime,
    hold: dt.timedelta,
) -> str | None:
    """The delivery id if this instance is to deliver ``event`` to ``hook``; None when it was
    delivered, dead-lettered, or is being delivered by someone else."""
    key = event.idempotency_key[:255]
    try:
        async with sessions.begin() as session:
            delivery_id = secrets.token_urlsafe(16)
            session.add(
                NotifyDelivery(
                    id=delivery_id,
                    hook=hook,
                    idempotency_key=key,
                    kind=event.kind[:64],
                    severity=event.severity,
                    subject=event.subject,
                    event=event_to_dict(event),
                    status="sending",
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                    claimed_until=now + hold,
                )
            )
        return delivery_id
    except IntegrityError:
        pass
    # Already there: only a lapsed claim (its holder died mid-delivery) may be taken over.
    async with sessions.begin() as session:
        row = (
            await session.execute(
                select(
                    NotifyDelivery.id, NotifyDelivery.status, NotifyDelivery.claimed_until
                ).where(NotifyDelivery.hook == hook, NotifyDelivery.idempotency_key == key)
            )
        ).one_or_none()
        if row is None or row.status != "sending" or row.claimed_until is None:
            return None
        if row.claimed_until > now:
            return None
        result = await session.execute(
            update(NotifyDelivery)
            .where(
                NotifyDelivery.id == row.id,
                NotifyDelivery.status == "sending",
                NotifyDelivery.claimed_until == row.claimed_until,
            )
            .values(claimed_until=now + hold, updated_at=now)
        )
        return str(row.id) if result.rowcount == 1 else None  # type: ignore[attr-defined]


async def claim_dead(
    sessions: async_sessionmaker[AsyncSession],
    delivery_id: str,
    now: dt.datetime,
    hold: dt.timedelta,
) -> DeliveryRecord | None:
    """Take a dead letter back for a re-drive; None if it is not (or no longer) dead."""
    async with sessions.begin() as session:
        result = await session.execute(
            update(NotifyDelivery)
            .where(NotifyDelivery.id == delivery_id, NotifyDelivery.status == "dead")
            .values(status="sending", claimed_until=now + hold, updated_at=now)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        row = await session.get(NotifyDelivery, delivery_id)
        assert row is not None
        return _record(row)


async def attempt_failed(
    sessions: async_sessionmaker[AsyncSession],
    delivery_id: str,
    attempts: int,
    error: str,
    now: dt.datetime,
    hold: dt.timedelta,
) -> None:
    async with sessions.begin() as session:
        await session.execute(
            update(NotifyDelivery)
            .where(NotifyDelivery.id == delivery_id)
            .values(
                attempts=attempts,
                last_error=error[:_ERROR_LIMIT],
                updated_at=now,
                claimed_until=now + hold,
            )
        )


async def finish(
    sessions: async_sessionmaker[AsyncSession],
    delivery_id: str,
    *,
    delivered: bool,
    attempts: int,
    error: str | None,
    now: dt.datetime,
) -> None:
    async with sessions.begin() as session:
        await session.execute(
            update(NotifyDelivery)
            .where(NotifyDelivery.id == delivery_id)
            .values(
                status="delivered" if delivered else "dead",
                attempts=attempts,
                last_error=None if error is None else error[:_ERROR_LIMIT],
                updated_at=now,
                claimed_until=None,
                delivered_at=now if delivered else None,
            )
        )


async def list_deliveries(
    sessions: async_sessionmaker[AsyncSession],
    *,
    status: str | None = None,
    hook: str | None = None,
    limit: int = 100,
) -> list[DeliveryRecord]:
    """Newest first. ``status="dead"`` is the dead-letter list."""
    query = select(NotifyDelivery).order_by(NotifyDelivery.created_at.desc()).limit(limit)
    if status is not None:
        query = query.where(NotifyDelivery.status == status)
    if hook is not None:
        query = query.where(NotifyDelivery.hook == hook)
    async with sessions() as session:
        return [_record(row) for row in (await session.scalars(query)).all()]


async def list_dead_letters(
    sessions: async_sessionmaker[AsyncSession], *, hook: str | None = None, limit: int = 100
) -> list[DeliveryRecord]:
    return await list_deliveries(sessions, status="dead", hook=hook, limit=limit)
