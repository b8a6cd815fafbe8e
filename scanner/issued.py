"""Certificates certyard issued, as the scanner meets them on the network.

A leaf is certyard's when the ``certificates`` table holds its serial with the same DER (the
serial alone could collide with another CA's). The scanner links the inventory entry to that
issuance record and reports ``revoked`` when certyard revoked it (issue 5 §5).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Certificate


def serial_to_hex(serial: int) -> str:
    """The issuance records' serial form (ca.serials.serial_to_hex: lowercase hex in whole
    octets). Not imported from there: importing the ca package loads pkilint, seconds of start-up
    a scan does not need."""
    if serial <= 0:
        raise ValueError("certificate serial numbers are positive (RFC 5280 §4.1.2.2)")
    digits = format(serial, "x")
    return digits if len(digits) % 2 == 0 else "0" + digits


@dataclass(frozen=True)
class IssuedRecord:
    certificate_id: str
    status: str  # valid | revoked
    revocation_reason: int | None


class IssuedLookup:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._cache: dict[bytes, IssuedRecord | None] = {}

    async def find(self, der: bytes) -> IssuedRecord | None:
        if der in self._cache:
            return self._cache[der]
        record = await self._find(der)
        self._cache[der] = record
        return record

    async def _find(self, der: bytes) -> IssuedRecord | None:
        try:
            serial = x509.load_der_x509_certificate(der).serial_number
            serial_hex = serial_to_hex(serial)
        except ValueError:
            return None
        async with self.sessions() as session:
            row = await session.scalar(select(Certificate).where(Certificate.serial == serial_hex))
        if row is None or row.der != der:
            return None
        return IssuedRecord(row.id, row.status, row.revocation_reason)
