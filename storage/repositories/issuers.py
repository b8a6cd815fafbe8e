"""Queries on ``issuers``: the CA certificates of the hierarchy and their key references."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Certificate, Issuer

ACTIVE = "active"
RETIRED = "retired"


async def get_issuer(session: AsyncSession, issuer_id: str) -> Issuer | None:
    result = await session.execute(select(Issuer).where(Issuer.id == issuer_id))
    return result.scalar_one_or_none()


async def list_issuers(session: AsyncSession, roles: tuple[str, ...] = ()) -> list[Issuer]:
    """Every issuer row (only those of ``roles`` when given), oldest first."""
    query = select(Issuer).order_by(Issuer.created_at, Issuer.id)
    if roles:
        query = query.where(Issuer.role.in_(roles))
    result = await session.execute(query)
    return list(result.scalars())


async def insert_issuer(
    session: AsyncSession,
    *,
    id: str,
    role: str,
    parent_id: str | None,
    cert_pem: str,
    key_backend: str,
    key_ref: str,
    key_blob: bytes | None,
    created_at: dt.datetime,
    status: str = ACTIVE,
    chain: str | None = None,
    alternate_of: str | None = None,
) -> None:
    """Insert one issuer; a second insert of the same id raises ``IntegrityError`` (primary key),
    which is how concurrent first starts detect that another instance won."""
    await session.execute(
        insert(Issuer).values(
            id=id,
            role=role,
            parent_id=parent_id,
            cert_pem=cert_pem,
            key_backend=key_backend,
            key_ref=key_ref,
            key_blob=key_blob,
            created_at=created_at,
            status=status,
            chain=chain,
            alternate_of=alternate_of,
        )
    )


async def retire_issuer(session: AsyncSession, issuer_id: str, retired_at: dt.datetime) -> bool:
    """Mark an active issuer retired; False if it is unknown or no longer active.

    A conditional UPDATE, so that of two rotations of the same intermediate racing each other
    exactly one succeeds (the other rolls its transaction back)."""
    result = await session.execute(
        update(Issuer)
        .where(Issuer.id == issuer_id, Issuer.status == ACTIVE)
        .values(status=RETIRED, retired_at=retired_at)
        .returning(Issuer.id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none() is not None


async def certificate_counts(session: AsyncSession) -> dict[str, int]:
    """How many certificates (records, "signing" ones included) each issuer has signed."""
    result = await session.execute(
        select(Certificate.issuer_id, func.count()).group_by(Certificate.issuer_id)
    )
    return {issuer_id: int(count) for issuer_id, count in result.all()}
