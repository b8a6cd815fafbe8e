"""Queries on ``certificates``: every certificate the CA signed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import DuplicateSerialError
from storage.models import Certificate


async def insert_certificate(
    session: AsyncSession,
    *,
    id: str,
    serial_hex: str,
    issuer_id: str,
    der: bytes,
    chain_pem: str,
    names: Sequence[str],
    profile: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
    spki_sha256: str,
    account_id: str | None,
    order_id: str | None,
    created_at: dt.datetime,
) -> None:
    """Record a certificate in the caller's transaction (status "valid").

    Raises :class:`DuplicateSerialError` when the serial UNIQUE constraint rejects the row, and
    leaves the caller's transaction usable so that it can retry with another serial: SQLite rolls
    back only the failing statement (ON CONFLICT ABORT), while PostgreSQL aborts the whole
    transaction, so there the INSERT runs inside a SAVEPOINT. (No SAVEPOINT on SQLite: the
    sqlite3 driver does not open its transaction before a SAVEPOINT, so a savepoint that is the
    first statement would commit on release.) After an IntegrityError, the cause is identified by
    looking the serial up rather than by parsing driver-specific messages.
    """
    statement = insert(Certificate).values(
        id=id,
        serial=serial_hex,
        issuer_id=issuer_id,
        der=der,
        chain_pem=chain_pem,
        names=list(names),
        profile=profile,
        not_before=not_before,
        not_after=not_after,
        spki_sha256=spki_sha256,
        account_id=account_id,
        order_id=order_id,
        status="valid",
        created_at=created_at,
    )
    try:
        if session.get_bind().dialect.name == "sqlite":
            await session.execute(statement)
        else:
            async with session.begin_nested():
                await session.execute(statement)
    except IntegrityError as exc:
        taken = await session.scalar(select(Certificate.id).where(Certificate.serial == serial_hex))
        if taken is not None:
            raise DuplicateSerialError(serial_hex) from exc
        raise


async def get_by_id(session: AsyncSession, cert_id: str) -> Certificate | None:
    result = await session.execute(
        select(Certificate)
        .where(Certificate.id == cert_id)
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def get_by_serial(session: AsyncSession, serial_hex: str) -> Certificate | None:
    result = await session.execute(
        select(Certificate)
        .where(Certificate.serial == serial_hex)
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def mark_revoked(
    session: AsyncSession, cert_id: str, reason: int, revoked_at: dt.datetime
) -> bool:
    """Revoke a valid certificate; False if it is unknown or already revoked.

    A conditional UPDATE (``WHERE status = 'valid'``), so two concurrent revocations cannot both
    succeed and the first reason and time stick (RFC 5280 §5.3.1 reasons are not re-stated).
    """
    result = await session.execute(
        update(Certificate)
        .where(Certificate.id == cert_id, Certificate.status == "valid")
        .values(status="revoked", revoked_at=revoked_at, revocation_reason=reason)
        .returning(Certificate.id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none() is not None
