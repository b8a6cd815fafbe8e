"""Queries on ``issuers``: the CA certificates of the hierarchy and their key references."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Issuer


async def get_issuer(session: AsyncSession, issuer_id: str) -> Issuer | None:
    result = await session.execute(select(Issuer).where(Issuer.id == issuer_id))
    return result.scalar_one_or_none()


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
        )
    )
