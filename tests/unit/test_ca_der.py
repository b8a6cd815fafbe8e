"""ca.der: splicing an externally made signature into certificates and CRLs."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from ca.der import replace_signature, sign_certificate, sign_crl
from ca.errors import CAError
from ca.keys import EC_P256, EC_P384, RSA_2048, RSA_4096
from ca.software_keys import SoftwareKeyBackend, SoftwarePrivateKey, generate_private_key, sign_with

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
ISSUER = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "der test issuer")])


def _self_signed(key: SoftwarePrivateKey, algorithm_hash: hashes.HashAlgorithm) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(ISSUER)
        .issuer_name(ISSUER)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, algorithm_hash)  # type: ignore[arg-type]
    )


def _leaf_builder(subject_key: SoftwarePrivateKey) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf.example")]))
        .issuer_name(ISSUER)
        .public_key(subject_key.public_key())
        .serial_number(12345)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
    )


@pytest.mark.parametrize(
    ("algorithm", "digest"),
    [(EC_P256, hashes.SHA256()), (EC_P384, hashes.SHA384()), (RSA_2048, hashes.SHA256())],
)
def test_spliced_certificate_verifies_with_the_issuer_key(
    algorithm: str, digest: hashes.HashAlgorithm
) -> None:
    issuer_key = generate_private_key(algorithm)
    issuer_cert = _self_signed(issuer_key, digest)
    throwaway = generate_private_key(algorithm)
    draft = _leaf_builder(generate_private_key(EC_P256)).sign(throwaway, digest)  # type: ignore[arg-type]
    real_signature = sign_with(issuer_key, algorithm, draft.tbs_certificate_bytes)

    spliced = x509.load_der_x509_certificate(
        replace_signature(draft.public_bytes(Encoding.DER), real_signature)
    )

    assert spliced.signature == real_signature
    assert spliced.tbs_certificate_bytes == draft.tbs_certificate_bytes
    assert spliced.signature_algorithm_oid == draft.signature_algorithm_oid
    spliced.verify_directly_issued_by(issuer_cert)
    with pytest.raises(Exception):  # noqa: B017 - the throwaway's signature is gone
        draft.verify_directly_issued_by(issuer_cert)


def test_rsa_4096_signature_crosses_the_two_octet_length_boundary() -> None:
    issuer_key = generate_private_key(RSA_4096)
    issuer_cert = _self_signed(issuer_key, hashes.SHA256())
    throwaway = generate_private_key(RSA_2048)  # a 256-byte signature in the draft
    draft = _leaf_builder(generate_private_key(EC_P256)).sign(throwaway, hashes.SHA256())
    signature = sign_with(issuer_key, RSA_4096, draft.tbs_certificate_bytes)
    assert len(signature) == 512

    der = replace_signature(draft.public_bytes(Encoding.DER), signature)

    # BIT STRING of 513 content octets: 03 82 02 01 00 <512 octets> at the very end.
    assert der[-(512 + 5) :][:5] == bytes([0x03, 0x82, 0x02, 0x01, 0x00])
    spliced = x509.load_der_x509_certificate(der)
    assert spliced.signature == signature
    spliced.verify_directly_issued_by(issuer_cert)


def _minimal(tbs_len: int) -> bytes:
    """SEQUENCE { SEQUENCE(tbs_len zero octets), SEQUENCE {}, BIT STRING 00 } with exact DER."""
    tbs = bytes([0x30]) + _length(tbs_len) + bytes(tbs_len)
    body = tbs + b"\x30\x00" + b"\x03\x01\x00"
    return b"\x30" + _length(len(body)) + body


def _length(n: int) -> bytes:
    # Independent of ca.der: the X.690 §8.1.3 examples spelled out by hand.
    if n < 128:
        return bytes([n])
    if n < 256:
        return bytes([0x81, n])
    return bytes([0x82, n >> 8, n & 0xFF])


@pytest.mark.parametrize("signature_len", [0, 125, 126, 127, 128, 254, 255, 256, 511, 512])
def test_length_octets_are_minimal_across_boundaries(signature_len: int) -> None:
    signature = bytes(range(256)) * 2
    signature = signature[:signature_len]
    original = _minimal(3)

    out = replace_signature(original, signature)

    content_len = signature_len + 1  # the unused-bits octet
    bit_string = b"\x03" + _length(content_len) + b"\x00" + signature
    body = original[2 : 2 + 5 + 2] + bit_string
    assert out == b"\x30" + _length(len(body)) + body


@pytest.mark.parametrize("tbs_len", [100, 130, 300])
def test_outer_length_form_changes_with_the_new_signature(tbs_len: int) -> None:
    original = _minimal(tbs_len)
    out = replace_signature(original, b"\xaa" * 200)
    assert replace_signature(out, b"") == original


def test_splice_matches_cryptographys_own_asn1_encoder() -> None:
    asn1 = pytest.importorskip("cryptography.hazmat.asn1")

    # Certificate ::= SEQUENCE { tbs ANY, algorithm ANY, signature BIT STRING }. Built with
    # type() because this module's string annotations could not see the local ``asn1``.
    fields = {"tbs": asn1.TLV, "algorithm": asn1.TLV, "signature": asn1.BitString}
    Signed = asn1.sequence(type("Signed", (), {"__annotations__": fields}))

    key = generate_private_key(EC_P256)
    draft = _leaf_builder(key).sign(key, hashes.SHA256())
    der = draft.public_bytes(Encoding.DER)
    decoded = asn1.decode_der(Signed, der)
    new_signature = b"\x5a" * 300
    try:
        expected = asn1.encode_der(
            Signed(
                tbs=decoded.tbs,
                algorithm=decoded.algorithm,
                signature=asn1.BitString(new_signature, 0),
            )
        )
    except NotImplementedError:
        pytest.skip("this cryptography cannot re-encode a decoded TLV")
    assert replace_signature(der, new_signature) == expected


def test_splice_into_a_crl() -> None:
    issuer_key = generate_private_key(EC_P384)
    throwaway = generate_private_key(EC_P384)
    revoked = x509.RevokedCertificateBuilder().serial_number(77).revocation_date(NOW).build()
    draft = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ISSUER)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=7))
        .add_revoked_certificate(revoked)
        .sign(throwaway, hashes.SHA384())
    )
    signature = sign_with(issuer_key, EC_P384, draft.tbs_certlist_bytes)
    crl = x509.load_der_x509_crl(replace_signature(draft.public_bytes(Encoding.DER), signature))
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    assert crl.is_signature_valid(issuer_key.public_key())
    assert not draft.is_signature_valid(issuer_key.public_key())
    assert crl.get_revoked_certificate_by_serial_number(77) is not None


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x31\x00",  # SET, not SEQUENCE
        _minimal(3) + b"\x00",  # trailing data
        b"\x30\x80" + _minimal(3)[2:] + b"\x00\x00",  # BER indefinite length
        b"\x30\x81\x0a" + _minimal(3)[2:],  # long form for a short length
        b"\x30\x09\x30\x00\x30\x00\x04\x01\x00\x30\x00",  # OCTET STRING where BIT STRING goes
        b"\x30\x0a\x30\x03\x00",  # runs past the end
    ],
)
def test_malformed_input_is_refused(bad: bytes) -> None:
    with pytest.raises(CAError) as info:
        replace_signature(bad, b"sig")
    assert info.value.kind == "malformed"


class _BrokenBackend(SoftwareKeyBackend):
    """Stands in for a faulty HSM (a fault we cannot cause in a real token on demand): it signs
    with a key other than the one it claims to hold."""

    async def sign(self, key_ref: str, data: bytes) -> bytes:
        return sign_with(generate_private_key(EC_P256), EC_P256, data)


async def test_sign_certificate_through_a_backend_and_refuse_a_broken_signature() -> None:
    good = SoftwareKeyBackend(b"p" * 32)
    generated = await good.generate("issuer", EC_P256)
    ca_builder = (
        x509.CertificateBuilder()
        .subject_name(ISSUER)
        .issuer_name(ISSUER)
        .public_key(generated.public_key)  # type: ignore[arg-type]
        .serial_number(9)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=2))
    )
    root = await sign_certificate(
        ca_builder, backend=good, key_ref=generated.key_ref, algorithm=EC_P256, issuer=None
    )
    leaf = await sign_certificate(
        _leaf_builder(generate_private_key(EC_P256)),
        backend=good,
        key_ref=generated.key_ref,
        algorithm=EC_P256,
        issuer=root,
    )
    leaf.verify_directly_issued_by(root)
    crl = await sign_crl(
        x509.CertificateRevocationListBuilder()
        .issuer_name(ISSUER)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=1)),
        backend=good,
        key_ref=generated.key_ref,
        algorithm=EC_P256,
        issuer=root,
    )
    public = root.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    assert crl.is_signature_valid(public)

    broken = _BrokenBackend(b"p" * 32)
    await broken.load(generated.key_ref, generated.key_blob)
    with pytest.raises(CAError) as info:
        await sign_certificate(
            _leaf_builder(generate_private_key(EC_P256)),
            backend=broken,
            key_ref=generated.key_ref,
            algorithm=EC_P256,
            issuer=root,
        )
    assert info.value.kind == "internal"
