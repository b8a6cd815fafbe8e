"""The certificate authority as the front ends see it: one object, several small interfaces.

It joins issuance and revocation publishing, so that a revocation from any front end (ACME
revokeCert, the CLI, later EST and the admin API) also refreshes this instance's CRL and OCSP
answers at once; other instances catch up within their CRL regeneration interval and OCSP cache
lifetime (docs/revocation.md).
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ca.crl import CRLService
from ca.errors import CAError
from ca.issuance import IssuanceService, IssuedCertificate, StoredCertificate
from ca.ocsp import OCSPResponder
from ca.serials import serial_to_hex
from storage.repositories import certificates as cert_repo


class CertificateAuthority:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        issuance: IssuanceService,
        crls: CRLService,
        ocsp: OCSPResponder,
    ) -> None:
        self._sessions = sessions
        self.issuance = issuance
        self.crls = crls
        self.ocsp = ocsp

    async def issue(self, csr: x509.CertificateSigningRequest, **kwargs: Any) -> IssuedCertificate:
        return await self.issuance.issue(csr, **kwargs)

    async def revoke(self, cert_id: str, reason: int) -> StoredCertificate:
        """Revoke, then make this instance's CRL and OCSP answers show it at once."""
        await self.issuance.revoke(cert_id, reason)
        stored = await self.issuance.get_certificate(cert_id)
        if stored is None:  # pragma: no cover - revoke() has just found it
            raise CAError("not_found", "certificate vanished after revocation")
        self.crls.invalidate(stored.issuer_id)
        self.ocsp.invalidate(stored.serial_hex)
        return stored

    async def revoke_serial(self, serial_hex: str, reason: int) -> StoredCertificate:
        try:
            canonical = serial_to_hex(int(serial_hex.replace(":", ""), 16))
        except ValueError:
            raise CAError("malformed", f"{serial_hex!r} is not a hexadecimal serial") from None
        async with self._sessions() as session:
            row = await cert_repo.get_by_serial(session, canonical)
        if row is None:
            raise CAError("not_found", f"no certificate with serial {serial_hex}")
        return await self.revoke(row.id, reason)
