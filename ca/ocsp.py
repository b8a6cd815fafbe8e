"""The OCSP responder (RFC 6960), answering in the RFC 5019 lightweight profile.

One request, one answer: good, revoked (time and reason) or unknown for a serial of an issuer we
run; ``unauthorized`` for any other issuer (RFC 5019 §2.2.3); ``malformedRequest`` for what does
not parse; ``tryLater`` while the key store is unreachable; ``internalError`` for our own
failures (logged, never detailed to the client).

Responses are signed by the issuer's delegated responder (``ca.ocsp_signer``) through the key
backend. cryptography's ``OCSPResponseBuilder.sign`` needs an in-memory key (matching the
responder certificate), so - as ``ca.der`` does for certificates - the response is built with a
throwaway key of the responder's algorithm and a stand-in certificate bearing the responder's
subject, the backend signs ``tbsResponseData``, and :func:`splice_signature` swaps the real
signature in. Every response is verified against the responder certificate before release.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ca.crl import reason_flag
from ca.der import _read_tlv, _throwaway_key, _tlv
from ca.errors import CAError
from ca.hierarchy import Hierarchy
from ca.keys import KeyBackend, signature_hash
from ca.ocsp_signer import OCSPSigner
from ca.serials import serial_to_hex
from ca.software_keys import SoftwarePrivateKey
from storage.repositories.revocation import CertificateStatus, status_by_serial

log = structlog.get_logger("certyard.ocsp")

Status = ocsp.OCSPResponseStatus
# BR §4.9.10: the validity interval (thisUpdate through nextUpdate inclusive) of a response is
# at least eight hours and at most ten days.
MIN_VALIDITY = timedelta(hours=8)
MAX_VALIDITY = timedelta(days=10)
# RFC 8954 §2.1: a nonce is 1 to 32 octets; longer ones are refused with malformedRequest.
MAX_NONCE_BYTES = 32
# CertID hash algorithms we match: SHA-1 (RFC 5019 §2.1.1, what nearly every client sends) and
# SHA-256 (RFC 6960 §4.1.1 lets clients choose).
ACCEPTED_HASHES: tuple[hashes.HashAlgorithm, ...] = (hashes.SHA1(), hashes.SHA256())  # noqa: S303

# DER tags of the response envelope (X.690 §8.1.2).
_SEQUENCE, _ENUMERATED, _OID, _OCTET_STRING, _BIT_STRING, _EXPLICIT_0 = (
    0x30, 0x0A, 0x06, 0x04, 0x03, 0xA0
)  # fmt: skip


@dataclass(frozen=True)
class OCSPConfig:
    """``validity``: nextUpdate - thisUpdate + 1 s of each response. ``cache_seconds``: how long
    one signed response is reused for further requests on the same serial (0 disables); a
    revocation made on another instance is visible here after at most that long."""

    validity: timedelta = timedelta(days=4)
    cache_seconds: int = 60
    max_cached: int = 10_000

    def __post_init__(self) -> None:
        if not MIN_VALIDITY <= self.validity <= MAX_VALIDITY:
            raise CAError("malformed", "OCSP validity must be between 8 hours and 10 days")
        if self.cache_seconds < 0 or self.max_cached < 0:
            raise CAError("malformed", "OCSP cache settings must not be negative")


class OCSPRefusal(Exception):
    """A request answered with an unsuccessful OCSPResponseStatus (RFC 6960 §2.3)."""

    def __init__(self, status: ocsp.OCSPResponseStatus, detail: str) -> None:
        super().__init__(f"{status.name}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class ParsedRequest:
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    hash_algorithm: hashes.HashAlgorithm
    serial: int
    nonce: bytes | None


def parse_request(der: bytes) -> ParsedRequest:
    """Parse a DER OCSPRequest (RFC 6960 §4.1.1); OCSPRefusal if we cannot answer it."""
    try:
        request = ocsp.load_der_ocsp_request(der)
        extensions = list(request.extensions)
    except NotImplementedError as exc:
        # cryptography parses only single-request OCSPRequests; RFC 5019 §2.1.1 has clients
        # send exactly one Request, so more than one is malformed for this profile.
        raise OCSPRefusal(Status.MALFORMED_REQUEST, "more than one request") from exc
    except ValueError as exc:
        raise OCSPRefusal(Status.MALFORMED_REQUEST, "not a DER OCSPRequest") from exc
    try:
        algorithm = request.hash_algorithm
    except UnsupportedAlgorithm:
        algorithm = None
    if algorithm is None or algorithm.name not in {h.name for h in ACCEPTED_HASHES}:
        # We cannot tell which CA the CertID names, so we cannot answer for it.
        raise OCSPRefusal(Status.UNAUTHORIZED, "unsupported CertID hash algorithm")
    nonce: bytes | None = None
    for extension in extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            nonce = extension.value.nonce
            if not 1 <= len(nonce) <= MAX_NONCE_BYTES:
                raise OCSPRefusal(Status.MALFORMED_REQUEST, "nonce must be 1 to 32 octets")
        elif extension.critical:
            # RFC 5280 §4.2 semantics, which RFC 6960 §4.4 extensions follow.
            raise OCSPRefusal(Status.MALFORMED_REQUEST, "unsupported critical extension")
    return ParsedRequest(
        issuer_name_hash=request.issuer_name_hash,
        issuer_key_hash=request.issuer_key_hash,
        hash_algorithm=algorithm,
        serial=request.serial_number,
        nonce=nonce,
    )


def issuer_hashes(
    certificate: x509.Certificate, algorithm: hashes.HashAlgorithm
) -> tuple[bytes, bytes]:
    """CertID's issuerNameHash and issuerKeyHash for an issuer (RFC 6960 §4.1.1): the hash of
    its DER subject, and of its subjectPublicKey BIT STRING value (no tag, length, unused bits)."""
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key_bits = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    elif isinstance(key, rsa.RSAPublicKey):
        key_bits = key.public_bytes(Encoding.DER, PublicFormat.PKCS1)
    else:
        raise CAError("internal", f"unsupported CA key type {type(key).__name__}")

    def digest(data: bytes) -> bytes:
        h = hashes.Hash(algorithm)
        h.update(data)
        return h.finalize()

    return digest(certificate.subject.public_bytes()), digest(key_bits)


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsigned OCSPResponse carrying only an error status (RFC 6960 §2.3)."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)


def splice_signature(response_der: bytes, signature: bytes) -> bytes:
    """Replace the signature of the BasicOCSPResponse inside a DER OCSPResponse.

    Hand-written for the reason ``ca.der`` gives (no stable API assembles a response from TBS
    bytes and an external signature) and smaller than rebuilding the structures with pyasn1.
    Everything but the signature BIT STRING is copied byte for byte (RFC 6960 §4.2.1):
    OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED, responseBytes [0] EXPLICIT
    SEQUENCE { responseType OID, response OCTET STRING (BasicOCSPResponse) } } and
    BasicOCSPResponse ::= SEQUENCE { tbsResponseData, signatureAlgorithm, signature BIT STRING,
    certs [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }.
    """
    der = response_der
    body, end = _read_tlv(der, 0, _SEQUENCE)
    _, status_end = _read_tlv(der, body, _ENUMERATED)
    explicit, explicit_end = _read_tlv(der, status_end, _EXPLICIT_0)
    response_bytes, response_bytes_end = _read_tlv(der, explicit, _SEQUENCE)
    _, oid_end = _read_tlv(der, response_bytes, _OID)
    basic_start, basic_end = _read_tlv(der, oid_end, _OCTET_STRING)
    if not end == len(der) == explicit_end == response_bytes_end == basic_end:
        raise CAError("malformed", "DER: unexpected data in the OCSPResponse envelope")
    basic = der[basic_start:basic_end]
    inner, inner_end = _read_tlv(basic, 0, _SEQUENCE)
    _, tbs_end = _read_tlv(basic, inner, _SEQUENCE)
    _, algorithm_end = _read_tlv(basic, tbs_end, _SEQUENCE)
    _, signature_end = _read_tlv(basic, algorithm_end, _BIT_STRING)
    if inner_end != len(basic):
        raise CAError("malformed", "DER: trailing data after the BasicOCSPResponse")
    new_basic = _tlv(
        _SEQUENCE,
        basic[inner:algorithm_end]
        + _tlv(_BIT_STRING, b"\x00" + signature)  # no unused bits: whole octets
        + basic[signature_end:inner_end],  # certs, unchanged
    )
    envelope = der[response_bytes:oid_end] + _tlv(_OCTET_STRING, new_basic)
    return _tlv(_SEQUENCE, der[body:status_end] + _tlv(_EXPLICIT_0, _tlv(_SEQUENCE, envelope)))


def verify_response(response_der: bytes, responder: x509.Certificate) -> ocsp.OCSPResponse:
    """Parse a signed response and check its signature with ``responder``'s key."""
    try:
        response = ocsp.load_der_ocsp_response(response_der)
        digest = response.signature_hash_algorithm
        key = responder.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey) and digest is not None:
            key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(digest))
        elif isinstance(key, rsa.RSAPublicKey) and digest is not None:
            key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(), digest)
        else:
            raise CAError("internal", "unsupported OCSP responder key or signature algorithm")
    except (ValueError, InvalidSignature) as exc:
        raise CAError("internal", "OCSP response signature did not verify", exc) from exc
    return response


class SignerSource(Protocol):
    """What the responder needs from ``ca.ocsp_signer.OCSPSignerProvider``."""

    async def signer_for(self, issuer_id: str) -> OCSPSigner: ...


@dataclass(frozen=True)
class _Cached:
    der: bytes
    expires: datetime


class OCSPResponder:
    """Answers OCSP requests for the issuing CAs of ``hierarchy``, each through its own
    delegated responder."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        hierarchy: Hierarchy,
        backend: KeyBackend,
        clock: Callable[[], datetime],
        signers: SignerSource,
        config: OCSPConfig | None = None,
    ) -> None:
        self._sessions = sessions
        self._backend = backend
        self._clock = clock
        self._signers = signers
        self._config = config or OCSPConfig()
        # The root signs no OCSP (its key stays offline-like); the intermediates' status is on
        # the root's CRL. So the CertIDs we answer for name an intermediate - any of them,
        # retired ones included (a CertID names a key and subject, so it also matches the
        # leaves' alternate chains, whose cross-signed certificates carry both).
        self._issuers: dict[tuple[str, bytes, bytes], str] = {}
        for issuer in hierarchy.intermediates:
            for algorithm in ACCEPTED_HASHES:
                name_hash, key_hash = issuer_hashes(issuer.certificate, algorithm)
                self._issuers[(algorithm.name, name_hash, key_hash)] = issuer.id
        self._cache: OrderedDict[tuple[str, str, str], _Cached] = OrderedDict()
        # Bumped by invalidate(): a response whose status was read before is not cached.
        self._revision = 0
        self._stand_ins: dict[str, tuple[SoftwarePrivateKey, x509.Certificate]] = {}

    async def respond(self, request_der: bytes) -> bytes:
        """A DER OCSPResponse for a DER OCSPRequest; never raises for a bad request."""
        try:
            request = parse_request(request_der)
            issuer_id = self._issuers.get(
                (request.hash_algorithm.name, request.issuer_name_hash, request.issuer_key_hash)
            )
            if issuer_id is None:
                raise OCSPRefusal(Status.UNAUTHORIZED, "not an issuer of this responder")
            return await self._answer(issuer_id, request)
        except OCSPRefusal as refusal:
            log.info("ocsp_refused", status=refusal.status.name, detail=refusal.detail)
            return unsuccessful(refusal.status)
        except Exception as exc:
            if isinstance(exc, CAError) and exc.kind == "unavailable":
                # RFC 6960 §2.3 tryLater: the key store (HSM) is unreachable for now.
                log.warning("ocsp_key_unavailable", detail=exc.detail)
                return unsuccessful(Status.TRY_LATER)
            log.exception("ocsp_internal_error")  # the detail stays in the log
            return unsuccessful(Status.INTERNAL_ERROR)

    def invalidate(self, serial_hex: str) -> None:
        """Forget cached responses for a serial: call on every revocation."""
        self._revision += 1
        serial_hex = serial_hex.lower()
        for key in [key for key in self._cache if key[0] == serial_hex]:
            del self._cache[key]

    async def _answer(self, issuer_id: str, request: ParsedRequest) -> bytes:
        if request.serial <= 0:  # RFC 5280 §4.1.2.2: we never issue such serials
            return await self._sign(issuer_id, request, None)
        serial_hex = serial_to_hex(request.serial)
        key = (serial_hex, issuer_id, request.hash_algorithm.name)
        # A response with a nonce is unique to its request (RFC 8954 §2.1): never cached.
        cacheable = request.nonce is None and self._config.cache_seconds > 0
        now = self._clock()
        cached = self._cache.get(key) if cacheable else None
        if cached is not None and now < cached.expires:
            self._cache.move_to_end(key)
            return cached.der
        revision = self._revision
        async with self._sessions() as session:
            status = await status_by_serial(session, serial_hex)
        if status is not None and status.issuer_id != issuer_id:
            status = None  # serials are unique across issuers; this one is another CA's
        der = await self._sign(issuer_id, request, status)
        # Unknown serials are not cached: the serial may be issued a moment later.
        if cacheable and status is not None and revision == self._revision:
            self._cache[key] = _Cached(der, now + timedelta(seconds=self._config.cache_seconds))
            self._cache.move_to_end(key)
            while len(self._cache) > self._config.max_cached:
                self._cache.popitem(last=False)
        return der

    async def _sign(
        self, issuer_id: str, request: ParsedRequest, status: CertificateStatus | None
    ) -> bytes:
        signer = await self._signers.signer_for(issuer_id)
        this_update = self._clock().astimezone(UTC).replace(microsecond=0)
        revocation_time: datetime | None = None
        reason: x509.ReasonFlags | None = None
        if status is None:
            # RFC 6960 §2.2 "unknown"; BR §4.9.10: never "good" for a serial we did not issue.
            cert_status = ocsp.OCSPCertStatus.UNKNOWN
        elif status.revoked:
            if status.revoked_at is None:
                raise CAError("internal", f"revoked certificate {status.serial_hex} has no time")
            cert_status = ocsp.OCSPCertStatus.REVOKED
            revocation_time = status.revoked_at.astimezone(UTC).replace(microsecond=0)
            # BR §7.3: the reason matches the CRL's (none for unspecified, RFC 5280 §5.3.1).
            reason = reason_flag(status.reason)
        else:
            cert_status = ocsp.OCSPCertStatus.GOOD
        builder = (
            ocsp.OCSPResponseBuilder()
            # RFC 6960 §4.2.1: the CertID is echoed as the client sent it (same hash algorithm).
            .add_response_by_hash(
                issuer_name_hash=request.issuer_name_hash,
                issuer_key_hash=request.issuer_key_hash,
                serial_number=request.serial,
                algorithm=request.hash_algorithm,
                cert_status=cert_status,
                this_update=this_update,
                # Validity counted inclusively (BR §4.9.10), hence the second off.
                next_update=this_update + self._config.validity - timedelta(seconds=1),
                revocation_time=revocation_time,
                revocation_reason=reason,
            )
            # RFC 5019 §2.2.2: a delegated responder's certificate goes into certs, so that
            # clients can check the delegation.
            .certificates([signer.certificate])
        )
        if request.nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(request.nonce), critical=False)
        return await self._sign_through_backend(builder, signer)

    async def _sign_through_backend(
        self, builder: ocsp.OCSPResponseBuilder, signer: OCSPSigner
    ) -> bytes:
        key, stand_in = await self._stand_in(signer)
        # RFC 6960 §4.2.1: ResponderID byName - the stand-in carries the responder's subject,
        # so the tbsResponseData built here is exactly the one the real responder signs.
        draft = builder.responder_id(ocsp.OCSPResponderEncoding.NAME, stand_in).sign(
            key, signature_hash(signer.algorithm)
        )
        signature = await self._backend.sign(signer.key_ref, draft.tbs_response_bytes)
        der = splice_signature(draft.public_bytes(Encoding.DER), signature)
        verify_response(der, signer.certificate)  # a broken backend signature never leaves
        return der

    async def _stand_in(self, signer: OCSPSigner) -> tuple[SoftwarePrivateKey, x509.Certificate]:
        """A throwaway key and a certificate for it bearing the responder's subject.

        ``OCSPResponseBuilder.sign`` refuses a key that does not match the responder
        certificate, and the real key never leaves the backend. The stand-in satisfies that
        check; only its subject reaches the response (ResponderID byName), its key only makes the
        draft signature that is replaced. Never released; one per responder certificate.
        """
        cached = self._stand_ins.get(signer.id)
        if cached is not None:
            return cached
        key = await _throwaway_key(signer.algorithm)
        real = signer.certificate
        stand_in = (
            x509.CertificateBuilder()
            .subject_name(real.subject)
            .issuer_name(real.subject)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(real.not_valid_before_utc)
            .not_valid_after(real.not_valid_after_utc)
            .sign(key, signature_hash(signer.algorithm))
        )
        self._stand_ins[signer.id] = (key, stand_in)
        return key, stand_in
