"""Queries for revocation information: CRL entries, OCSP status and delegated OCSP signers.

Read-only over ``certificates`` (rows are written by ``storage.repositories.certificates``) and
over the ``issuers`` rows of role "ocsp" (inserted with ``storage.repositories.issuers``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Certificate, Issuer

OCSP_ROLE = "ocsp"


@dataclass(frozen=True)
class RevokedEntry:
    """One line of a CRL (RFC 5280 §5.1.2.6): serial, when, and the reason code (or None)."""

    serial_hex: str
    revoked_at: dt.datetime
    reason: int | None


@dataclass(frozen=True)
class CertificateStatus:
    """What an OCSP responder needs to know about one serial."""

    serial_hex: str
    issuer_id: str
    revoked: bool
    revoked_at: dt.datetime | None
    reason: int | None
    not_after: dt.datetime


async def revoked_unexpired(
    session: AsyncSession, issuer_id: str, now: dt.datetime
) -> list[RevokedEntry]:
    """Every revoked certificate of ``issuer_id`` that has not expired at ``now``, by serial.

    RFC 5280 §3.3 / §5.1.2.6: an entry may leave the CRL once the certificate has expired (the
    ``not_after`` index keeps the filter cheap); BR §4.9.7 forbids removing it earlier.
    """
    result = await session.execute(
        select(Certificate.serial, Certificate.revoked_at, Certificate.revocation_reason)
        .where(
            Certificate.issuer_id == issuer_id,
            Certificate.status == "revoked",
            Certificate.revoked_at.is_not(None),
            Certificate.not_after > now,
        )
        .order_by(Certificate.serial)
    )
    return [
        RevokedEntry(serial_hex=serial, revoked_at=revoked_at, reason=reason)
        for serial, revoked_at, reason in result.all()
        if revoked_at is not None
    ]


async def status_by_serial(session: AsyncSession, serial_hex: str) -> CertificateStatus | None:
    """The status of the certificate with this serial (unique across issuers), or None."""
    result = await session.execute(
        select(
            Certificate.issuer_id,
            Certificate.status,
            Certificate.revoked_at,
            Certificate.revocation_reason,
            Certificate.not_after,
        ).where(Certificate.serial == serial_hex)
    )
    row = result.one_or_none()
    if row is None:
        return None
    issuer_id, status, revoked_at, reason, not_after = row
    return CertificateStatus(
        serial_hex=serial_hex,
        issuer_id=issuer_id,
        revoked=status == "revoked",
        revoked_at=revoked_at,
        reason=reason,
        not_after=not_after,
    )


async def ocsp_signers(session: AsyncSession, parent_id: str) -> list[Issuer]:
    """The delegated OCSP signing certificates of ``parent_id``, all generations (few rows: one
    per renewal); the caller picks the newest."""
    result = await session.execute(
        select(Issuer).where(Issuer.role == OCSP_ROLE, Issuer.parent_id == parent_id)
    )
    return list(result.scalars())
