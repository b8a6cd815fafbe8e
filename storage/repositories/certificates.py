"""Queries on ``certificates``: every certificate the CA signs, recorded before it is signed.

An issuance writes its record in two steps: :func:`insert_signing_record` (state "signing",
committed before the CA key signs) and :func:`complete_record` (state "issued", with the DER).
CA certificates created with the hierarchy are recorded in one step by
:func:`insert_certificate`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import ConflictError, DuplicateSerialError
from storage.models import Certificate

SIGNING = "signing"
ISSUED = "issued"


async def insert_signing_record(
    session: AsyncSession,
    *,
    id: str,
    serial_hex: str,
    issuer_id: str,
    tbs_sha256: str,
    names: Sequence[str],
    profile: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
    spki_sha256: str,
    requester: str,
    account_id: str | None,
    order_id: str | None,
    created_at: dt.datetime,
    lint_warnings: Sequence[str] = (),
) -> None:
    """Record an issuance about to be signed (state "signing", status "valid", no DER yet).

    Raises :class:`DuplicateSerialError` when the serial is taken (see :func:`_insert`)."""
    await _insert(
        session,
        serial_hex,
        id=id,
        serial=serial_hex,
        issuer_id=issuer_id,
        der=None,
        chain_pem=None,
        names=list(names),
        profile=profile,
        not_before=not_before,
        not_after=not_after,
        spki_sha256=spki_sha256,
        account_id=account_id,
        order_id=order_id,
        status="valid",
        created_at=created_at,
        state=SIGNING,
        tbs_sha256=tbs_sha256,
        requester=requester,
        lint_warnings=list(lint_warnings) or None,
    )


async def complete_record(
    session: AsyncSession,
    cert_id: str,
    der: bytes,
    chain_pem: str,
    *,
    tbs_sha256: str | None = None,
) -> None:
    """Turn a "signing" record into "issued" with its DER and chain.

    A conditional UPDATE: the record must still be "signing" and not revoked (a certificate
    revoked while it was being signed is never released) and, when ``tbs_sha256`` is given, its
    recorded TBS hash must be that one. Raises :class:`ConflictError` otherwise.
    """
    conditions = [
        Certificate.id == cert_id,
        Certificate.state == SIGNING,
        Certificate.status == "valid",
    ]
    if tbs_sha256 is not None:
        conditions.append(Certificate.tbs_sha256 == tbs_sha256)
    result = await session.execute(
        update(Certificate)
        .where(*conditions)
        .values(state=ISSUED, der=der, chain_pem=chain_pem)
        .returning(Certificate.id)
        .execution_options(synchronize_session=False)
    )
    if result.scalar_one_or_none() is None:
        raise ConflictError(f"certificate record {cert_id} is not a valid signing record")


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
    requester: str = "hierarchy",
) -> None:
    """Record an already signed certificate in the caller's transaction (state "issued",
    status "valid"): the CA certificates, which the hierarchy signs and stores in one
    transaction. Raises :class:`DuplicateSerialError` like :func:`insert_signing_record`."""
    tbs = x509.load_der_x509_certificate(der).tbs_certificate_bytes
    await _insert(
        session,
        serial_hex,
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
        state=ISSUED,
        tbs_sha256=hashlib.sha256(tbs).hexdigest(),
        requester=requester,
        lint_warnings=None,
    )


async def _insert(session: AsyncSession, serial_hex: str, **values: Any) -> None:
    """INSERT one row, turning a serial UNIQUE violation into :class:`DuplicateSerialError`.

    The caller's transaction stays usable so that it can retry with another serial: SQLite rolls
    back only the failing statement (ON CONFLICT ABORT), while PostgreSQL aborts the whole
    transaction, so there the INSERT runs inside a SAVEPOINT. (No SAVEPOINT on SQLite: the
    sqlite3 driver does not open its transaction before a SAVEPOINT, so a savepoint that is the
    first statement would commit on release.) After an IntegrityError, the cause is identified by
    looking the serial up rather than by parsing driver-specific messages.
    """
    statement = insert(Certificate).values(**values)
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

    Any record can be revoked, a "signing" one included: its serial may exist even though its
    completion failed. A conditional UPDATE (``WHERE status = 'valid'``), so two concurrent
    revocations cannot both succeed and the first reason and time stick (RFC 5280 §5.3.1
    reasons are not re-stated).
    """
    result = await session.execute(
        update(Certificate)
        .where(Certificate.id == cert_id, Certificate.status == "valid")
        .values(status="revoked", revoked_at=revoked_at, revocation_reason=reason)
        .returning(Certificate.id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none() is not None
