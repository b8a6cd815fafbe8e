"""The issuance service: the one way certificates come out of certyard's CA.

Each certificate goes through the same steps (docs/ca.md, "Issuance"):

1. the CSR signature and key are checked, the profile builds the certificate with a fresh serial
   and the *lint certificate* (the builder signed by a throwaway key) is linted (ca.lint);
2. the issuance record - serial, TBS hash, names, requester, state "signing" - is committed in a
   transaction of its own; the UNIQUE serial constraint decides collisions (a new serial, a new
   lint certificate, another try);
3. the key backend signs exactly the linted TBS bytes;
4. the signature is spliced in, the result must carry the linted TBS byte for byte and verify
   against the issuer;
5. the record becomes "issued" with the DER and chain, in the caller's session when one is given.

A record whose signing fails stays "signing": it names a serial that may exist, so it can be
revoked and revocation services treat it as issued.

Audit (docs/audit.md): before step 2 an entry "certificate.issue" with outcome "intent" (names,
serial, TBS hash) is appended to the audit trail, and before step 5 one with outcome "success"
(the certificate's SHA-256). If either cannot be written the issuance stops with
``CAError("internal")``: without its intent nothing is recorded or signed; without its success
entry the certificate is never released (the record stays "signing", see above). A revocation
is recorded as "certificate.revoke" after it commits; it is not undone when that entry fails
(refusing to revoke would leave a compromised key trusted), the failure is logged instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit.recorder import AuditRecorder, NullRecorder
from ca.ceremony import check_name_constraints
from ca.config import CAConfig
from ca.der import replace_signature
from ca.errors import CAError
from ca.hierarchy import Hierarchy, IssuerHandle
from ca.keys import EC_P256, KeyBackend, spki_der
from ca.lint import Linter
from ca.profiles import (
    LeafProfile,
    normalize_dns_names,
    parse_ip_addresses,
    subscriber_key_type,
)
from ca.serials import new_serial, serial_to_hex
from ca.software_keys import generate_private_key
from certyard.metrics import issuance_timer
from storage.errors import ConflictError, DuplicateSerialError
from storage.models import Certificate
from storage.repositories import certificates as certificate_repo

log = structlog.get_logger("certyard.ca")

# A serial collision needs two 158-bit random draws to meet; more than one in a row means
# something is broken, so a few attempts are plenty.
MAX_SERIAL_ATTEMPTS = 3
MAX_REQUESTER = 128
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
    profile: str
    lint_warnings: tuple[str, ...] = ()
    issuer_id: str = ""


@dataclass(frozen=True)
class StoredCertificate:
    """A recorded certificate, as the front ends need it (download, revocation, ARI).

    ``der`` and ``chain_pem`` are None while ``state`` is "signing" (never released)."""

    id: str
    serial_hex: str
    issuer_id: str
    profile: str
    status: str  # "valid" | "revoked"
    account_id: str | None
    order_id: str | None
    names: list[str]
    der: bytes | None
    chain_pem: str | None
    spki_sha256: str  # hex SHA-256 of the subject's DER SubjectPublicKeyInfo
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: int | None
    state: str  # "signing" | "issued"
    tbs_sha256: str  # hex SHA-256 of the DER TBSCertificate that was (to be) signed
    requester: str
    lint_warnings: list[str]


@dataclass(frozen=True)
class ServerCredentials:
    """certyard's own HTTPS listener credentials: write ``key_pem`` to a file and pass
    ``key_password`` to ``ssl.SSLContext.load_cert_chain``."""

    chain_pem: str
    key_pem: bytes  # encrypted PKCS#8
    key_password: bytes
    certificate_id: str
    not_after: datetime


@dataclass(frozen=True)
class _Request:
    """What one issuance records, whatever serial it ends up with."""

    profile: LeafProfile
    requester: str
    names: list[str]
    spki_sha256: str
    account_id: str | None
    order_id: str | None


class IssuanceService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        hierarchy: Hierarchy,
        backend: KeyBackend,
        config: CAConfig,
        clock: Callable[[], datetime],
        *,
        audit: AuditRecorder | None = None,
    ) -> None:
        self._sessions = sessions
        self._audit: AuditRecorder = audit if audit is not None else NullRecorder()
        self._hierarchy = hierarchy
        self._backend = backend
        self._clock = clock
        self._config = config
        self._linter = Linter(config)
        self._profiles = {profile.name: LeafProfile(profile, config) for profile in config.profiles}

    def root_pem(self) -> str:
        return self._hierarchy.root_pem()

    async def issue(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        profile: str,
        dns_names: Sequence[str],
        ip_addresses: Sequence[str] = (),
        common_name: str | None = None,
        requester: str,
        account_id: str | None = None,
        order_id: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> IssuedCertificate:
        """Issue a certificate of ``profile`` to the CSR's key for the given names.

        Only the CSR's public key is used (after checking its signature, RFC 2986 §3): names
        come from the caller, who has authorized them; the CSR's subject and requested
        extensions are ignored. ``requester`` says who asked ("acme:<account>", "est:<label>",
        "server-tls", "cli"). The record is committed (state "signing") before the key signs;
        it is completed in ``session`` when given - the caller then commits before releasing
        the certificate - else in a transaction of its own. On SQLite, ``session`` must not
        have written yet: the record's own transaction would wait for its lock.
        """
        # certyard_issuances_total / certyard_issuance_duration_seconds (docs/metrics.md); an
        # unknown profile name is one label value, so a client cannot create time series.
        label = profile if profile in self._profiles else "unknown"
        with issuance_timer(requester, label):
            leaf = self._profiles.get(profile)
            if leaf is None:
                raise CAError("policy", f"unknown certificate profile {profile!r}")
            if not 0 < len(requester) <= MAX_REQUESTER:
                raise CAError("malformed", f"requester must be 1 to {MAX_REQUESTER} characters")
            public_key = leaf.check_key(self._check_csr(csr))
            dns = normalize_dns_names(dns_names)
            ips = parse_ip_addresses(ip_addresses)
            # The active intermediate of the key's chain: EC keys get the ECDSA chain, RSA keys the
            # RSA chain (the default chain's when the hierarchy has no such chain).
            issuer = self._hierarchy.active_for(subscriber_key_type(public_key))
            window = leaf.validity(
                self._clock(), issuer=issuer.certificate, not_before=not_before, not_after=not_after
            )
            request = _Request(
                profile=leaf,
                requester=requester,
                names=dns + [str(address) for address in ips],
                spki_sha256=hashlib.sha256(spki_der(public_key)).hexdigest(),
                account_id=account_id,
                order_id=order_id,
            )
            for _ in range(MAX_SERIAL_ATTEMPTS):
                builder = leaf.build(
                    public_key=public_key,
                    dns_names=dns,
                    ip_addresses=ips,
                    common_name=common_name,
                    issuer=issuer.certificate,
                    issuer_id=issuer.id,
                    serial=new_serial(),
                    not_before=window[0],
                    not_after=window[1],
                )
                draft, warnings = await self._draft(builder, issuer, leaf)
                # RFC 5280 §4.2.1.10: a constrained issuer never signs a name outside its subtrees.
                check_name_constraints(issuer.certificate, draft)
                cert_id = secrets.token_urlsafe(16)
                await self._audit_issue(cert_id, draft, request, issuer, outcome="intent")
                try:
                    await self._insert_record(cert_id, draft, request, warnings, issuer)
                except DuplicateSerialError:
                    continue  # RFC 5280 §4.1.2.2: serials are unique per issuer; draw another
                break
            else:
                raise CAError("internal", f"serial number collided {MAX_SERIAL_ATTEMPTS} times")
            try:
                cert = await self._sign(draft, issuer)
            except CAError as exc:
                await self._audit_failure(cert_id, draft, request, exc)
                raise
            issued = self._issued(cert_id, cert, leaf.name, warnings, issuer)
            await self._audit_issue(cert_id, draft, request, issuer, outcome="success", cert=issued)
            await self._complete(issued, _tbs_sha256(draft), session)
            log.info("certificate_issued", id=cert_id, serial=issued.serial_hex, profile=leaf.name)
            return issued

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
        """:meth:`issue` with the default TLS server profile (``CAConfig.default_profile``);
        the requester is "acme:<account_id>" (the ACME finalize handler's call)."""
        return await self.issue(
            csr,
            profile=self._config.default_profile,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            requester="unspecified" if account_id is None else f"acme:{account_id}",
            account_id=account_id,
            order_id=order_id,
            not_before=not_before,
            not_after=not_after,
            session=session,
        )

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
        issued = await self.issue(
            csr,
            profile=self._config.default_profile,
            dns_names=dns,
            ip_addresses=ips,
            requester="server-tls",
        )
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

    async def revoke(self, cert_id: str, reason: int, *, actor: str | None = None) -> None:
        """Revoke a valid certificate with an RFC 5280 §5.3.1 reason code. Works on any
        record, including one still "signing" (its serial may exist: a failed completion).
        ``actor`` (who asked) goes into the audit entry; default "unspecified"."""
        if not 0 <= reason <= _MAX_REVOCATION_REASON or reason == _UNUSED_REVOCATION_REASON:
            raise CAError("malformed", f"{reason} is not an RFC 5280 revocation reason code")
        try:
            async with self._sessions() as session, session.begin():
                if await certificate_repo.mark_revoked(session, cert_id, reason, self._clock()):
                    row = await certificate_repo.get_by_id(session, cert_id)
                    serial = row.serial if row is not None else ""
                    revoked = True
                else:
                    revoked = False
                    row = await certificate_repo.get_by_id(session, cert_id)
        except SQLAlchemyError as exc:
            raise CAError("internal", "revocation could not be stored", exc) from exc
        if revoked:
            await self._audit_revoke(cert_id, serial, reason, actor or "unspecified")
            return
        if row is None:
            raise CAError("not_found", f"no certificate {cert_id!r}")
        raise CAError("conflict", "already revoked")

    async def _audit_revoke(self, cert_id: str, serial: str, reason: int, actor: str) -> None:
        try:
            await self._audit.record(
                actor=actor,
                action="certificate.revoke",
                target=f"serial:{serial}",
                details={"certificate_id": cert_id, "serial": serial, "reason": reason},
            )
        except Exception:  # see the module docstring: the revocation stands
            log.error("revocation_audit_failed", certificate=cert_id, serial=serial)

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
        return public_key

    async def _draft(
        self, builder: x509.CertificateBuilder, issuer: IssuerHandle, leaf: LeafProfile
    ) -> tuple[x509.Certificate, tuple[str, ...]]:
        """Step 1: the lint certificate, linted off the event loop; refuses on lint errors."""
        draft, report = await asyncio.to_thread(
            self._linter.draft_and_lint, builder, issuer.algorithm, leaf.profile.kind, leaf.profile
        )
        if report is None:
            return draft, ()
        report.enforce(profile=leaf.name, serial=serial_to_hex(draft.serial_number))
        return draft, tuple(str(warning) for warning in report.warnings)

    async def _audit_issue(
        self,
        cert_id: str,
        draft: x509.Certificate,
        request: _Request,
        issuer: IssuerHandle,
        *,
        outcome: str,
        cert: IssuedCertificate | None = None,
    ) -> None:
        """The "certificate.issue" audit entry; CAError when it cannot be written."""
        serial = serial_to_hex(draft.serial_number)
        details: dict[str, object] = {
            "certificate_id": cert_id,
            "requester": request.requester,
            "profile": request.profile.name,
            "names": request.names,
            "serial": serial,
            "issuer": issuer.id,
            "tbs_sha256": _tbs_sha256(draft),
            "spki_sha256": request.spki_sha256,
            "account_id": request.account_id,
            "order_id": request.order_id,
        }
        if cert is not None:
            details["certificate_sha256"] = hashlib.sha256(cert.der).hexdigest()
            details["not_after"] = cert.not_after.isoformat()
        try:
            await self._audit.record(
                actor=request.requester,
                action="certificate.issue",
                target=f"serial:{serial}",
                outcome=outcome,
                details=details,
            )
        except Exception as exc:  # any recorder failure: AuditRecorder documents "raises"
            log.error("issuance_audit_failed", serial=serial, outcome=outcome)
            raise CAError(
                "internal", "the audit entry could not be written; issuance refused", exc
            ) from exc

    async def _audit_failure(
        self, cert_id: str, draft: x509.Certificate, request: _Request, error: CAError
    ) -> None:
        """Best effort: signing failed, the record stays "signing"; the error is the caller's."""
        serial = serial_to_hex(draft.serial_number)
        try:
            await self._audit.record(
                actor=request.requester,
                action="certificate.issue",
                target=f"serial:{serial}",
                outcome="failure",
                details={"certificate_id": cert_id, "serial": serial, "error": error.kind},
            )
        except Exception:  # the signing error matters more than its audit entry
            log.error("issuance_audit_failed", serial=serial, outcome="failure")

    async def _insert_record(
        self,
        cert_id: str,
        draft: x509.Certificate,
        request: _Request,
        warnings: tuple[str, ...],
        issuer: IssuerHandle,
    ) -> None:
        """Step 2: the "signing" record, committed on its own. Raises DuplicateSerialError."""
        try:
            async with self._sessions() as session, session.begin():
                await certificate_repo.insert_signing_record(
                    session,
                    id=cert_id,
                    serial_hex=serial_to_hex(draft.serial_number),
                    issuer_id=issuer.id,
                    tbs_sha256=_tbs_sha256(draft),
                    names=request.names,
                    profile=request.profile.name,
                    not_before=draft.not_valid_before_utc,
                    not_after=draft.not_valid_after_utc,
                    spki_sha256=request.spki_sha256,
                    requester=request.requester,
                    account_id=request.account_id,
                    order_id=request.order_id,
                    created_at=self._clock(),
                    lint_warnings=warnings,
                )
        except SQLAlchemyError as exc:
            raise CAError("internal", "the issuance record could not be written", exc) from exc

    async def _sign(self, draft: x509.Certificate, issuer: IssuerHandle) -> x509.Certificate:
        """Steps 3 and 4: the backend signs the linted TBS; the spliced certificate must carry
        that TBS byte for byte and verify against the issuer before anyone sees it."""
        tbs = draft.tbs_certificate_bytes
        try:
            signature = await self._backend.sign(issuer.key_ref, tbs)
        except CAError:
            raise
        except Exception as exc:
            detail = f"key backend failed to sign with {issuer.key_ref!r}"
            raise CAError("internal", detail, exc) from exc
        der = replace_signature(draft.public_bytes(serialization.Encoding.DER), signature)
        try:
            cert = x509.load_der_x509_certificate(der)
            same_tbs = cert.tbs_certificate_bytes == tbs
            if same_tbs:
                cert.verify_directly_issued_by(issuer.certificate)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise CAError(
                "internal", f"key backend signature for {issuer.key_ref!r} did not verify", exc
            ) from exc
        if not same_tbs:
            raise CAError("internal", "the signed certificate's TBS differs from the linted TBS")
        return cert

    async def _complete(
        self, issued: IssuedCertificate, tbs_sha256: str, session: AsyncSession | None
    ) -> None:
        """Step 5: the record becomes "issued", in the caller's transaction when given."""
        try:
            if session is not None:
                await certificate_repo.complete_record(
                    session, issued.id, issued.der, issued.chain_pem, tbs_sha256=tbs_sha256
                )
                return
            async with self._sessions() as own, own.begin():
                await certificate_repo.complete_record(
                    own, issued.id, issued.der, issued.chain_pem, tbs_sha256=tbs_sha256
                )
        except ConflictError as exc:
            raise CAError("conflict", "the issuance record was revoked while signing", exc) from exc
        except SQLAlchemyError as exc:
            raise CAError("internal", "the certificate could not be recorded", exc) from exc

    def _issued(
        self,
        cert_id: str,
        cert: x509.Certificate,
        profile: str,
        warnings: tuple[str, ...],
        issuer: IssuerHandle,
    ) -> IssuedCertificate:
        pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        return IssuedCertificate(
            id=cert_id,
            serial=cert.serial_number,
            serial_hex=serial_to_hex(cert.serial_number),
            der=cert.public_bytes(serialization.Encoding.DER),
            pem=pem,
            chain_pem=pem + issuer.pem,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            profile=profile,
            lint_warnings=warnings,
            issuer_id=issuer.id,
        )


def _tbs_sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.tbs_certificate_bytes).hexdigest()


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
        state=row.state,
        tbs_sha256=row.tbs_sha256,
        requester=row.requester,
        lint_warnings=[str(item) for item in row.lint_warnings or []],
    )
