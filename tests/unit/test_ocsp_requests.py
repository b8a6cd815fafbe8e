"""OCSP request parsing, CertID matching, the signature splice and the GET encoding (no I/O)."""

from __future__ import annotations

import base64
import datetime as dt
import urllib.parse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from ca.crl import crl_url, reason_flag, shard_of
from ca.der import _tlv
from ca.errors import CAError
from ca.keys import EC_P256, EC_P384, RSA_2048
from ca.ocsp import (
    MAX_NONCE_BYTES,
    OCSPConfig,
    OCSPRefusal,
    issuer_hashes,
    parse_request,
    splice_signature,
    unsuccessful,
    verify_response,
)
from ca.software_keys import SoftwarePrivateKey, generate_private_key, sign_with
from revocation_server.ocsp_handlers import decode_get_request

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
Status = ocsp.OCSPResponseStatus
SHA1 = hashes.SHA1()


def _cert(
    key: SoftwarePrivateKey, name: str, issuer_key: SoftwarePrivateKey | None = None
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer_key is None else x509.Name([]))
        .public_key(key.public_key())
        .serial_number(0x1234)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(issuer_key or key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def issuer() -> tuple[SoftwarePrivateKey, x509.Certificate]:
    key = generate_private_key(EC_P256)
    return key, _cert(key, "unit issuer")


def _request_der(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    digest: hashes.HashAlgorithm = SHA1,
    extensions: tuple[tuple[x509.ExtensionType, bool], ...] = (),
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, digest)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return builder.build().public_bytes(Encoding.DER)


def _status_of(refusal: pytest.ExceptionInfo[OCSPRefusal]) -> ocsp.OCSPResponseStatus:
    return refusal.value.status


@pytest.mark.parametrize("digest", [SHA1, hashes.SHA256()])
def test_parses_one_request_and_matches_issuer_hashes(
    issuer: tuple[SoftwarePrivateKey, x509.Certificate], digest: hashes.HashAlgorithm
) -> None:
    _, cert = issuer
    parsed = parse_request(_request_der(cert, cert, digest))
    assert parsed.serial == 0x1234
    assert parsed.nonce is None
    assert parsed.hash_algorithm.name == digest.name
    assert (parsed.issuer_name_hash, parsed.issuer_key_hash) == issuer_hashes(cert, digest)


@pytest.mark.parametrize("algorithm", [EC_P384, RSA_2048])
def test_issuer_key_hash_for_other_key_types(algorithm: str) -> None:
    key = generate_private_key(algorithm)
    cert = _cert(key, "other issuer")
    parsed = parse_request(_request_der(cert, cert))
    assert (parsed.issuer_name_hash, parsed.issuer_key_hash) == issuer_hashes(cert, SHA1)


@pytest.mark.parametrize("body", [b"", b"garbage", b"\x30\x03\x02\x01\x01", b"\x30\x80\x00\x00"])
def test_garbage_is_malformed(body: bytes) -> None:
    with pytest.raises(OCSPRefusal) as refusal:
        parse_request(body)
    assert _status_of(refusal) == Status.MALFORMED_REQUEST


def test_more_than_one_request_is_malformed(
    issuer: tuple[SoftwarePrivateKey, x509.Certificate],
) -> None:
    # OCSPRequest { TBSRequest { requestList { Request, Request } } } (RFC 6960 §4.1.1),
    # made by doubling the single Request of a request cryptography built.
    _, cert = issuer
    single = _request_der(cert, cert)
    request = single[6:]  # past three SEQUENCE headers of two octets each (short lengths)
    assert request[0] == 0x30
    double = _tlv(0x30, _tlv(0x30, _tlv(0x30, request + request)))
    with pytest.raises(OCSPRefusal) as refusal:
        parse_request(double)
    assert _status_of(refusal) == Status.MALFORMED_REQUEST
    assert "more than one" in refusal.value.detail


def test_nonce_is_kept_and_bounded(issuer: tuple[SoftwarePrivateKey, x509.Certificate]) -> None:
    _, cert = issuer
    for nonce in (b"\x01", b"n" * 16, b"n" * MAX_NONCE_BYTES):
        der = _request_der(cert, cert, extensions=((x509.OCSPNonce(nonce), False),))
        assert parse_request(der).nonce == nonce
    for nonce in (b"", b"n" * (MAX_NONCE_BYTES + 1)):  # RFC 8954 §2.1
        der = _request_der(cert, cert, extensions=((x509.OCSPNonce(nonce), False),))
        with pytest.raises(OCSPRefusal) as refusal:
            parse_request(der)
        assert _status_of(refusal) == Status.MALFORMED_REQUEST


def test_unknown_extensions(issuer: tuple[SoftwarePrivateKey, x509.Certificate]) -> None:
    _, cert = issuer
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    assert parse_request(_request_der(cert, cert, extensions=((unknown, False),))).nonce is None
    with pytest.raises(OCSPRefusal) as refusal:
        parse_request(_request_der(cert, cert, extensions=((unknown, True),)))
    assert _status_of(refusal) == Status.MALFORMED_REQUEST


def test_unsupported_certid_hash_is_unauthorized(
    issuer: tuple[SoftwarePrivateKey, x509.Certificate],
) -> None:
    _, cert = issuer
    with pytest.raises(OCSPRefusal) as refusal:
        parse_request(_request_der(cert, cert, hashes.SHA512()))
    assert _status_of(refusal) == Status.UNAUTHORIZED


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _draft_response(
    responder: x509.Certificate, throwaway: SoftwarePrivateKey, subject: x509.Certificate
) -> ocsp.OCSPResponse:
    return (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=subject,
            issuer=subject,
            algorithm=SHA1,
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=NOW,
            next_update=NOW + dt.timedelta(days=1),
            revocation_time=None,
            revocation_reason=None,
        )
        # As ca.ocsp does: a stand-in certificate of the throwaway key with the real subject.
        .responder_id(ocsp.OCSPResponderEncoding.NAME, _cert(throwaway, _cn(responder)))
        .certificates([responder])
        .add_extension(x509.OCSPNonce(b"\x07" * 16), critical=False)
        .sign(throwaway, hashes.SHA256())
    )


@pytest.mark.parametrize("algorithm", [EC_P256, RSA_2048])
def test_splice_puts_the_real_signature_in(
    algorithm: str, issuer: tuple[SoftwarePrivateKey, x509.Certificate]
) -> None:
    real_key = generate_private_key(algorithm)
    responder = _cert(real_key, "responder")
    throwaway = generate_private_key(algorithm)
    draft = _draft_response(responder, throwaway, issuer[1])
    with pytest.raises(CAError):  # the draft is signed by the throwaway key
        verify_response(draft.public_bytes(Encoding.DER), responder)
    signature = sign_with(real_key, algorithm, draft.tbs_response_bytes)
    spliced = splice_signature(draft.public_bytes(Encoding.DER), signature)
    response = verify_response(spliced, responder)
    assert response.tbs_response_bytes == draft.tbs_response_bytes
    assert response.signature == signature
    assert response.responder_name == responder.subject
    assert response.certificates == [responder]  # certs carried over unchanged
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"\x07" * 16


def test_splice_refuses_trailing_data(issuer: tuple[SoftwarePrivateKey, x509.Certificate]) -> None:
    key = generate_private_key(EC_P256)
    der = _draft_response(_cert(key, "r"), key, issuer[1]).public_bytes(Encoding.DER)
    with pytest.raises(CAError):
        splice_signature(der + b"\x00", b"sig")
    with pytest.raises(CAError):
        splice_signature(unsuccessful(Status.INTERNAL_ERROR), b"sig")  # no responseBytes


def test_unsuccessful_responses() -> None:
    for status in (Status.MALFORMED_REQUEST, Status.UNAUTHORIZED, Status.INTERNAL_ERROR):
        assert ocsp.load_der_ocsp_response(unsuccessful(status)).response_status == status


def test_get_path_decoding(issuer: tuple[SoftwarePrivateKey, x509.Certificate]) -> None:
    _, cert = issuer
    der = _request_der(cert, cert)
    encoded = base64.b64encode(der).decode()
    urlsafe = base64.urlsafe_b64encode(der).decode()
    for tail in (
        encoded,
        urllib.parse.quote(encoded, safe=""),  # RFC 6960 A.1.1: url-encoded base64
        encoded.rstrip("="),
        urlsafe.rstrip("="),
    ):
        assert decode_get_request(tail) == der, tail
    for bad in ("", "!!!!", "a", "%zz", "A" * 100_000):
        assert decode_get_request(bad) is None, bad[:10]


def test_config_bounds() -> None:
    with pytest.raises(CAError):
        OCSPConfig(validity=dt.timedelta(hours=7))  # BR §4.9.10: at least 8 hours
    with pytest.raises(CAError):
        OCSPConfig(validity=dt.timedelta(days=11))  # and at most 10 days
    assert OCSPConfig().validity == dt.timedelta(days=4)


def test_crl_urls_and_reasons() -> None:
    serial = "00ff"
    assert shard_of(serial, 4) == 255 % 4
    assert crl_url("http://crl.example/", "int-1", serial, 1) == "http://crl.example/crl/int-1.crl"
    assert crl_url("http://crl.example", "int-1", serial, 4) == "http://crl.example/crl/int-1/3.crl"
    assert reason_flag(0) is None and reason_flag(None) is None  # RFC 5280 §5.3.1
    assert reason_flag(1) == x509.ReasonFlags.key_compromise
    with pytest.raises(CAError):
        reason_flag(7)
