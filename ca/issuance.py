"""The issuance service: the one way certificates come out of certyard's CA.

Every certificate is checked, built by a profile, signed through the key backend, verified, and
recorded in ``certificates`` before the caller gets it (the row exists before the certificate can
reach anyone).
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ca.config import CAConfig
from ca.der import sign_certificate
from ca.errors import CAError
from ca.hierarchy import Hierarchy
from ca.keys import EC_P256, KeyBackend, spki_der
from ca.profiles import (
    TLSServerProfile,
    check_subscriber_key,
    normalize_dns_names,
    parse_ip_addresses,
)
from ca.serials import new_serial, serial_to_hex
from ca.software_keys import generate_private_key
from storage.errors import DuplicateSerialError
from storage.models import Certificate
from storage.repositories import certificates as certificate_repo

# A serial collision needs two 158-bit random draws to meet; more than one in a row means
# something is broken, so a few attempts are plenty.
MAX_SERIAL_ATTEMPTS = 3
_MAX_REVOCATION_REASON = 10
_UNUSED_REVOCATION_REASON = 7  # RFC 5280 §5.3.1: value 7 is not used


@dataclass(frozen=True)
class IssuedCertificate:
    id: str
    serial: int
    serial_hex: str
    der: bytes
    pem: str
    # Leaf + intermediate, as served with application/pem-certificate-chain (RFC 8555 §9.1).
    chain_pem: str
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class StoredCertificate:
    """A recorded certificate, as the front ends need it (download, revocation, ARI)."""

    id: str
    serial_hex: str
    issuer_id: str
    profile: str
    status: str  # "valid" | "revoked"
    account_id: str | None
    order_id: str | None
    names: list[str]
    der: bytes
    chain_pem: str
    spki_sha256: str  # hex SHA-256 of the subject's DER SubjectPublicKeyInfo
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: int | None


@dataclass(frozen=True)
class ServerCredentials:
    """certyard's own HTTPS listener credentials: write ``key_pem`` to a file and pass
    ``key_password`` to ``ssl.SSLContext.load_cert_chain``."""

    chain_pem: str
    key_pem: bytes  # encrypted PKCS#8
    key_password: bytes
    certificate_id: str
    not_after: datetime


class IssuanceService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        hierarchy: Hierarchy,
        backend: KeyBackend,
        config: CAConfig,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._hierarchy = hierarchy
        self._backend = backend
        self._clock = clock
        self._tls_server = TLSServerProfile(config)

    def root_pem(self) -> str:
        return self._hierarchy.root_pem()

    async def issue_tls_server(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        dns_names: Sequence[str],
        ip_addresses: Sequence[str] = (),
        account_id: str | None = None,
        order_id: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> IssuedCertificate:
        """Issue a TLS server certificate for ``dns_names`` and ``ip_addresses`` to the CSR's key.

        The caller has matched the CSR against its order; the CA re-checks the CSR signature and
        the key type anyway (defence in depth). The certificate is recorded before this returns:
        without ``session`` in a transaction of its own, committed on return; with ``session``
        in the caller's transaction (e.g. the ACME finalize handler, so that the certificate row
        and the order's move to "valid" commit together) - then the caller must commit before it
        hands the certificate to anyone, and a rolled-back transaction takes the row with it.
        """
        public_key = self._check_csr(csr)
        dns = normalize_dns_names(dns_names)
        ips = parse_ip_addresses(ip_addresses)
        issuer = self._hierarchy.intermediate
        window = self._tls_server.validity(
            self._clock(), issuer=issuer.certificate, not_before=not_before, not_after=not_after
        )
        names = dns + [str(address) for address in ips]
        spki_sha256 = hashlib.sha256(spki_der(public_key)).hexdigest()
        for _ in range(MAX_SERIAL_ATTEMPTS):
            builder = self._tls_server.build(
                public_key=public_key,
                dns_names=dns,
                ip_addresses=ips,
                issuer=issuer.certificate,
                serial=new_serial(),
                not_before=window[0],
                not_after=window[1],
            )
            cert = await sign_certificate(
                builder,
                backend=self._backend,
                key_ref=issuer.key_ref,
                algorithm=issuer.algorithm,
                issuer=issuer.certificate,
            )
            issued = self._issued(cert)
            try:
                await self._record(
                    issued,
                    names=names,
                    spki_sha256=spki_sha256,
                    account_id=account_id,
                    order_id=order_id,
                    session=session,
                )
            except DuplicateSerialError:
                continue  # RFC 5280 §4.1.2.2: serials are unique per issuer; draw another
            return issued
        raise CAError("internal", f"serial number collided {MAX_SERIAL_ATTEMPTS} times")

    async def issue_server_certificate(self, hostnames: Sequence[str]) -> ServerCredentials:
        """A certificate for certyard's own HTTPS listener, with a fresh software P-256 key.

        This key is the listener's TLS key, not a CA key. It is returned as PKCS#8 encrypted with
        a random password so that it is never written to disk in the clear. IP literals become
        iPAddress SANs, everything else dNSName.
        """
        dns: list[str] = []
        ips: list[str] = []
        for host in hostnames:
            bare = host.strip("[]")  # "[::1]" as written in URLs
            try:
                ipaddress.ip_address(bare)
            except ValueError:
                dns.append(host)
            else:
                ips.append(bare)
        key = generate_private_key(EC_P256)
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, hashes.SHA256())
        )
        issued = await self.issue_tls_server(csr, dns_names=dns, ip_addresses=ips)
        password = secrets.token_urlsafe(32).encode("ascii")
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )
        return ServerCredentials(
            chain_pem=issued.chain_pem,
            key_pem=key_pem,
            key_password=password,
            certificate_id=issued.id,
            not_after=issued.not_after,
        )

    async def revoke(self, cert_id: str, reason: int) -> None:
        """Revoke a valid certificate with an RFC 5280 §5.3.1 reason code."""
        if not 0 <= reason <= _MAX_REVOCATION_REASON or reason == _UNUSED_REVOCATION_REASON:
            raise CAError("malformed", f"{reason} is not an RFC 5280 revocation reason code")
        try:
            async with self._sessions() as session, session.begin():
                if await certificate_repo.mark_revoked(session, cert_id, reason, self._clock()):
                    return
                row = await certificate_repo.get_by_id(session, cert_id)
        except SQLAlchemyError as exc:
            raise CAError("internal", "revocation could not be stored", exc) from exc
        if row is None:
            raise CAError("not_found", f"no certificate {cert_id!r}")
        raise CAError("conflict", "already revoked")

    async def get_certificate(self, cert_id: str) -> StoredCertificate | None:
        try:
            async with self._sessions() as session:
                row = await certificate_repo.get_by_id(session, cert_id)
        except SQLAlchemyError as exc:
            raise CAError("internal", "certificate lookup failed", exc) from exc
        return None if row is None else _stored(row)

    async def find_by_der(self, der: bytes) -> StoredCertificate | None:
        """The recorded certificate whose DER is exactly ``der`` (e.g. an ACME revokeCert
        request, RFC 8555 §7.6), or None if this CA never issued it."""
        try:
            serial = x509.load_der_x509_certificate(der).serial_number
        except ValueError as exc:
            raise CAError("malformed", "not a DER certificate", exc) from exc
        if serial <= 0:
            return None
        try:
            async with self._sessions() as session:
                row = await certificate_repo.get_by_serial(session, serial_to_hex(serial))
        except SQLAlchemyError as exc:
            raise CAError("internal", "certificate lookup failed", exc) from exc
        return None if row is None or row.der != der else _stored(row)

    def _check_csr(self, csr: x509.CertificateSigningRequest) -> CertificatePublicKeyTypes:
        try:
            public_key = csr.public_key()
            signed = csr.is_signature_valid
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CAError("policy", "the CSR uses an unsupported key or algorithm", exc) from exc
        if not signed:  # RFC 2986 §3: the signature proves possession of the key
            raise CAError("policy", "the CSR signature is invalid")
        return check_subscriber_key(public_key)

    def _issued(self, cert: x509.Certificate) -> IssuedCertificate:
        pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        return IssuedCertificate(
            id=secrets.token_urlsafe(16),
            serial=cert.serial_number,
            serial_hex=serial_to_hex(cert.serial_number),
            der=cert.public_bytes(serialization.Encoding.DER),
            pem=pem,
            chain_pem=pem + self._hierarchy.issuing_chain_pem(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )

    async def _record(
        self,
        issued: IssuedCertificate,
        *,
        names: list[str],
        spki_sha256: str,
        account_id: str | None,
        order_id: str | None,
        session: AsyncSession | None,
    ) -> None:
        try:
            if session is not None:
                await self._insert(session, issued, names, spki_sha256, account_id, order_id)
                return
            async with self._sessions() as own, own.begin():
                await self._insert(own, issued, names, spki_sha256, account_id, order_id)
        except SQLAlchemyError as exc:
            raise CAError("internal", "the certificate could not be recorded", exc) from exc

    async def _insert(
        self,
        session: AsyncSession,
        issued: IssuedCertificate,
        names: list[str],
        spki_sha256: str,
        account_id: str | None,
        order_id: str | None,
    ) -> None:
        await certificate_repo.insert_certificate(
            session,
            id=issued.id,
            serial_hex=issued.serial_hex,
            issuer_id=self._hierarchy.intermediate.id,
            der=issued.der,
            chain_pem=issued.chain_pem,
            names=names,
            profile=TLSServerProfile.name,
            not_before=issued.not_before,
            not_after=issued.not_after,
            spki_sha256=spki_sha256,
            account_id=account_id,
            order_id=order_id,
            created_at=self._clock(),
        )


def _stored(row: Certificate) -> StoredCertificate:
    return StoredCertificate(
        id=row.id,
        serial_hex=row.serial,
        issuer_id=row.issuer_id,
        profile=row.profile,
        status=row.status,
        account_id=row.account_id,
        order_id=row.order_id,
        names=[str(name) for name in row.names],
        der=row.der,
        chain_pem=row.chain_pem,
        spki_sha256=row.spki_sha256,
        not_before=row.not_before,
        not_after=row.not_after,
        revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason,
    )
