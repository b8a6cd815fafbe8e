"""Queries for ACME orders, authorizations, challenges and validation jobs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Authorization, Challenge, Order, OrderAuthorization, ValidationJob


async def order_authorizations(session: AsyncSession, order_id: str) -> list[Authorization]:
    result = await session.execute(
        select(Authorization)
        .join(OrderAuthorization, OrderAuthorization.authorization_id == Authorization.id)
        .where(OrderAuthorization.order_id == order_id)
        .order_by(OrderAuthorization.position)
    )
    return list(result.scalars())


async def authz_challenges(session: AsyncSession, authz_id: str) -> list[Challenge]:
    result = await session.execute(
        select(Challenge).where(Challenge.authorization_id == authz_id).order_by(Challenge.type)
    )
    return list(result.scalars())


async def reusable_authorization(
    session: AsyncSession,
    *,
    account_id: str,
    identifier_type: str = "dns",
    identifier_value: str,
    wildcard: bool,
    now: dt.datetime,
    created_after: dt.datetime,
    valid_until_at_least: dt.datetime,
) -> Authorization | None:
    """A valid authorization of this account for this identifier, recent enough to reuse."""
    result = await session.execute(
        select(Authorization)
        .where(
            Authorization.account_id == account_id,
            Authorization.identifier_type == identifier_type,
            Authorization.identifier_value == identifier_value,
            Authorization.wildcard == wildcard,
            Authorization.status == "valid",
            Authorization.created_at >= created_after,
            Authorization.expires_at > max(now, valid_until_at_least),
        )
        .order_by(Authorization.expires_at.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def set_order_status(
    session: AsyncSession,
    order_id: str,
    expected: Sequence[str],
    new: str,
    now: dt.datetime,
    *,
    expected_updated_at: dt.datetime | None = None,
    **values: object,
) -> bool:
    """Compare-and-set: move the order only from one of ``expected`` (and, when given, only if
    ``updated_at`` still is ``expected_updated_at``: a finalize's ownership token); True when
    it moved."""
    conditions = [Order.id == order_id, Order.status.in_(list(expected))]
    if expected_updated_at is not None:
        conditions.append(Order.updated_at == expected_updated_at)
    result = await session.execute(
        update(Order).where(*conditions).values(status=new, updated_at=now, **values)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def account_orders_page(
    session: AsyncSession, account_id: str, *, after: tuple[dt.datetime, str] | None, limit: int
) -> list[Order]:
    query = select(Order).where(Order.account_id == account_id)
    if after is not None:
        created, order_id = after
        query = query.where(
            or_(Order.created_at > created, and_(Order.created_at == created, Order.id > order_id))
        )
    result = await session.execute(query.order_by(Order.created_at, Order.id).limit(limit + 1))
    return list(result.scalars())


async def claim_validation_jobs(
    session: AsyncSession, owner: str, now: dt.datetime, lease: dt.timedelta, limit: int
) -> list[str]:
    """Lease up to ``limit`` queued (or abandoned) jobs to ``owner``; returns challenge ids.

    Each claim is a conditional UPDATE on the row it read, so when two instances race for one
    job exactly one UPDATE matches.
    """
    candidates = await session.execute(
        select(ValidationJob.challenge_id, ValidationJob.lease_until, ValidationJob.state)
        .where(
            or_(
                ValidationJob.state == "queued",
                and_(ValidationJob.state == "running", ValidationJob.lease_until < now),
            )
        )
        .order_by(ValidationJob.created_at)
        .limit(limit)
    )
    claimed: list[str] = []
    for challenge_id, lease_until, state in candidates.all():
        cond = [ValidationJob.challenge_id == challenge_id, ValidationJob.state == state]
        cond.append(
            ValidationJob.lease_until.is_(None)
            if lease_until is None
            else ValidationJob.lease_until == lease_until
        )
        result = await session.execute(
            update(ValidationJob)
            .where(*cond)
            .values(
                state="running",
                lease_owner=owner,
                lease_until=now + lease,
                attempts=ValidationJob.attempts + 1,
            )
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(challenge_id)
    return claimed
