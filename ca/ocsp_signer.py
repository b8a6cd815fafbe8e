"""The delegated OCSP responder certificate (RFC 6960 §4.2.2.2), one per issuing CA - every
intermediate of the hierarchy, retired ones included: they no longer issue, but the status of
what they issued is still asked for.

OCSP responses are signed by a dedicated key rather than by the intermediate's: the responder key
signs thousands of responses a day, the intermediate's only certificates and CRLs. The responder
key is generated in the same key backend as the CA keys (so on the HSM with PKCS#11) and its
certificate is issued by the intermediate, with id-kp-OCSPSigning and id-pkix-ocsp-nocheck.

Rows: ``issuers`` with role "ocsp", parent_id = the intermediate, id ``ocsp-{parent}-{n}`` for
generation n = 1, 2, ... - every renewal is a new row and the highest generation is used. The
certificate is also recorded in ``certificates`` like everything the CA signs. Creation is
race-safe across instances the way ``ca.hierarchy`` is: both build generation n, the primary key
on ``issuers.id`` lets exactly one commit, the loser destroys its key and loads the winner's.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ca.der import sign_certificate
from ca.errors import CAError
from ca.hierarchy import Hierarchy, IssuerHandle
from ca.keys import GeneratedKey, KeyBackend, algorithm_of, spki_der
from ca.profiles import check_ca_key
from ca.serials import new_serial, serial_to_hex
from storage.errors import StorageError
from storage.models import Issuer
from storage.repositories.certificates import insert_certificate
from storage.repositories.issuers import insert_issuer
from storage.repositories.revocation import OCSP_ROLE, ocsp_signers

# RFC 5280 Appendix A: ub-common-name.
_MAX_COMMON_NAME = 64


@dataclass(frozen=True)
class OCSPSignerConfig:
    """Lifetime of responder certificates. Short-lived because id-pkix-ocsp-nocheck means a
    relying party never checks whether the responder certificate was revoked (RFC 6960
    §4.2.2.2.1: "CAs ... should issue the OCSP responder a certificate with a short lifetime")."""

    validity: timedelta = timedelta(days=90)
    renew_before: timedelta = timedelta(days=30)
    backdate: timedelta = timedelta(minutes=1)

    def __post_init__(self) -> None:
        if not timedelta(0) < self.renew_before < self.validity:
            raise CAError("malformed", "OCSP signer renewal must be positive and before expiry")


@dataclass(frozen=True)
class OCSPSigner:
    """A responder certificate plus the backend reference of its key (never the key)."""

    id: str
    issuer_id: str
    generation: int
    certificate: x509.Certificate
    key_ref: str
    algorithm: str


class OCSPSignerProvider:
    """Hands out the current delegated responder of an issuing CA, creating or renewing it."""

    profile: ClassVar[str] = "ocsp-signing"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        hierarchy: Hierarchy,
        backend: KeyBackend,
        clock: Callable[[], datetime],
        config: OCSPSignerConfig | None = None,
    ) -> None:
        self._sessions = sessions
        self._backend = backend
        self._clock = clock
        self._config = config or OCSPSignerConfig()
        # Only intermediates issue end-entity certificates and answer OCSP; the root's
        # subordinates are covered by the root's CRL (the root key stays out of online signing).
        self._issuers = {handle.id: handle for handle in hierarchy.intermediates}
        self._current: dict[str, OCSPSigner] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def issuer_ids(self) -> tuple[str, ...]:
        return tuple(self._issuers)

    async def signer_for(self, issuer_id: str) -> OCSPSigner:
        """The responder of ``issuer_id``; created on first use, renewed when it has less than
        ``renew_before`` left."""
        issuer = self._issuers.get(issuer_id)
        if issuer is None:
            raise CAError("not_found", f"no OCSP responder for issuer {issuer_id!r}")
        current = self._current.get(issuer_id)
        if current is not None and not self._due(current, issuer):
            return current
        async with self._locks.setdefault(issuer_id, asyncio.Lock()):
            current = self._current.get(issuer_id)
            if current is None or self._due(current, issuer):
                current = await self._load_or_create(issuer)
                self._current[issuer_id] = current
            return current

    def _due(self, signer: OCSPSigner, issuer: IssuerHandle) -> bool:
        """Time to renew: little time left, and a new certificate would actually last longer
        (it cannot outlive the intermediate, RFC 5280 §6.1)."""
        expires = signer.certificate.not_valid_after_utc
        left = expires - self._clock()
        return left < self._config.renew_before and issuer.certificate.not_valid_after_utc > expires

    async def _load_or_create(self, issuer: IssuerHandle) -> OCSPSigner:
        try:
            newest = await self._load_newest(issuer)
            if newest is not None and not self._due(newest, issuer):
                return newest
            generation = 1 if newest is None else newest.generation + 1
            created = await self._create(issuer, generation)
            if created is not None:
                return created
            # Another instance committed this generation first: use its certificate.
            winner = await self._load_newest(issuer)
        except (SQLAlchemyError, StorageError) as exc:
            # StorageError: a serial collision (2^-158); the next request simply tries again.
            raise CAError("internal", "cannot read or store the OCSP signer", exc) from exc
        if winner is None or winner.generation < generation:
            raise CAError("internal", "OCSP signer insert conflicted but none is stored")
        return winner

    async def _load_newest(self, issuer: IssuerHandle) -> OCSPSigner | None:
        async with self._sessions() as session:
            rows = await ocsp_signers(session, issuer.id)
        numbered = [(_generation(row.id, issuer.id), row) for row in rows]
        usable = [(n, row) for n, row in numbered if n is not None]
        if not usable:
            return None
        generation, row = max(usable, key=lambda item: item[0])
        return await self._open(row, generation, issuer)

    async def _open(self, row: Issuer, generation: int, issuer: IssuerHandle) -> OCSPSigner:
        if row.key_backend != self._backend.name:
            raise CAError(
                "internal", f"OCSP signer {row.id}'s key is in backend {row.key_backend!r}"
            )
        await self._backend.load(row.key_ref, row.key_blob)
        certificate = x509.load_pem_x509_certificate(row.cert_pem.encode("ascii"))
        if spki_der(self._backend.public_key(row.key_ref)) != spki_der(certificate.public_key()):
            raise CAError("internal", f"OCSP signer {row.id}'s key does not match its certificate")
        return OCSPSigner(
            id=row.id,
            issuer_id=issuer.id,
            generation=generation,
            certificate=certificate,
            key_ref=row.key_ref,
            algorithm=algorithm_of(certificate.public_key()),
        )

    async def _create(self, issuer: IssuerHandle, generation: int) -> OCSPSigner | None:
        """Create generation ``generation``; None if another instance stored it first."""
        signer_id = signer_id_for(issuer.id, generation)
        # The responder key has the intermediate's algorithm: same strength, same signatures.
        key = await self._backend.generate(f"{signer_id}-{secrets.token_hex(4)}", issuer.algorithm)
        try:
            now = self._clock()
            certificate = await sign_certificate(
                self._build(issuer, key, now),
                backend=self._backend,
                key_ref=issuer.key_ref,
                algorithm=issuer.algorithm,
                issuer=issuer.certificate,
            )
            await self._store(signer_id, issuer, key, certificate, now)
        except IntegrityError:
            await self._backend.destroy(key.key_ref)
            return None
        except BaseException:
            await self._backend.destroy(key.key_ref)  # never leave an unused key on the token
            raise
        return OCSPSigner(
            id=signer_id,
            issuer_id=issuer.id,
            generation=generation,
            certificate=certificate,
            key_ref=key.key_ref,
            algorithm=issuer.algorithm,
        )

    def _build(
        self, issuer: IssuerHandle, key: GeneratedKey, now: datetime
    ) -> x509.CertificateBuilder:
        """BR §7.1.2.8 (OCSP responder certificate profile)."""
        not_before = now.astimezone(UTC).replace(microsecond=0) - self._config.backdate
        not_after = min(
            not_before + self._config.validity - timedelta(seconds=1),
            issuer.certificate.not_valid_after_utc,
        )
        public_key = check_ca_key(key.public_key)
        try:
            ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            raise CAError(
                "internal", "issuing CA certificate has no subjectKeyIdentifier"
            ) from None
        return (
            x509.CertificateBuilder()
            .subject_name(_subject(issuer))
            .issuer_name(issuer.certificate.subject)
            .public_key(public_key)
            .serial_number(new_serial())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # BR §7.1.2.8: digitalSignature only, critical.
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            # RFC 6960 §4.2.2.2: the delegation is id-kp-OCSPSigning in the EKU (and only it,
            # BR §7.1.2.8).
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
            )
            # RFC 6960 §4.2.2.2.1: clients need not check this certificate's revocation.
            .add_extension(x509.OCSPNoCheck(), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value),
                critical=False,
            )
        )

    async def _store(
        self,
        signer_id: str,
        issuer: IssuerHandle,
        key: GeneratedKey,
        certificate: x509.Certificate,
        now: datetime,
    ) -> None:
        pem = certificate.public_bytes(Encoding.PEM).decode("ascii")
        # One transaction: the issuers row and its certificates row, or neither.
        async with self._sessions() as session, session.begin():
            await insert_issuer(
                session,
                id=signer_id,
                role=OCSP_ROLE,
                parent_id=issuer.id,
                cert_pem=pem,
                key_backend=self._backend.name,
                key_ref=key.key_ref,
                key_blob=key.key_blob,
                created_at=now,
            )
            await insert_certificate(
                session,
                id=secrets.token_urlsafe(16),
                serial_hex=serial_to_hex(certificate.serial_number),
                issuer_id=issuer.id,
                der=certificate.public_bytes(Encoding.DER),
                chain_pem=pem + issuer.pem,
                names=[],
                profile=self.profile,
                not_before=certificate.not_valid_before_utc,
                not_after=certificate.not_valid_after_utc,
                spki_sha256=hashlib.sha256(spki_der(key.public_key)).hexdigest(),
                account_id=None,
                order_id=None,
                created_at=now,
            )


def signer_id_for(issuer_id: str, generation: int) -> str:
    return f"ocsp-{issuer_id}-{generation}"


def _generation(row_id: str, issuer_id: str) -> int | None:
    prefix = f"ocsp-{issuer_id}-"
    suffix = row_id[len(prefix) :] if row_id.startswith(prefix) else ""
    return int(suffix) if suffix.isdigit() else None


def _subject(issuer: IssuerHandle) -> x509.Name:
    # BR §7.1.2.8 applies the CA naming rules (§7.1.2.10.2: countryName, organizationName,
    # commonName): the issuer's attributes, with a CN naming the CA this responder answers for.
    attributes = [a for a in issuer.certificate.subject if a.oid != NameOID.COMMON_NAME]
    issuer_cn = issuer.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    base = str(issuer_cn[0].value) if issuer_cn else issuer.id
    suffix = " OCSP"
    common_name = base[: _MAX_COMMON_NAME - len(suffix)] + suffix
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)
