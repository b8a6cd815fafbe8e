"""tbs_sha256: one value for a precertificate, its log leaf TBS and its final certificate."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

from ct_monitor.tbs import (
    POISON_OID,
    SCT_LIST_OID,
    TBSError,
    strip_ct_extensions,
    tbs_of_certificate,
    tbs_sha256_of_certificate,
    tbs_sha256_of_tbs,
    wrap_tbs,
)

CA_KEY = ec.derive_private_key(1234567, ec.SECP256R1())
PSC_KEY = ec.derive_private_key(7654321, ec.SECP256R1())
LEAF_KEY = ec.derive_private_key(42, ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
PSC_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA Precert Signing")])
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def build(
    *,
    ct_extension: str | None,
    issuer: x509.Name = CA_NAME,
    key: ec.EllipticCurvePrivateKey = CA_KEY,
    position: int = 1,
    only_ct: bool = False,
) -> x509.Certificate:
    """A leaf with SAN + key usage, the CT extension (if any) at ``position`` among them."""
    extensions: list[tuple[x509.ExtensionType, bool]] = (
        []
        if only_ct
        else [
            (x509.SubjectAlternativeName([x509.DNSName("www.example.com")]), False),
            (x509.KeyUsage(True, False, False, False, False, False, False, False, False), True),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False),
        ]
    )
    if ct_extension == "poison":
        extensions.insert(position, (x509.PrecertPoison(), True))
    elif ct_extension == "sct":
        # cryptography cannot build SCTs; the extension's content does not matter for the hash.
        sct = x509.UnrecognizedExtension(ObjectIdentifier(SCT_LIST_OID), b"\x04\x03\x00\x01\x00")
        extensions.insert(position, (sct, False))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.com")]))
        .issuer_name(issuer)
        .public_key(LEAF_KEY.public_key())
        .serial_number(0x1234567890ABCDEF)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=90))
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    # ECDSA signatures are random: the TBS (what we hash) is deterministic, the signature not.
    return builder.sign(key, hashes.SHA256())


def der(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


@pytest.mark.parametrize("position", [0, 1, 3])
def test_precert_and_final_cert_have_one_tbs_sha256(position: int) -> None:
    precert = build(ct_extension="poison", position=position)
    final = build(ct_extension="sct", position=position)
    plain = build(ct_extension=None)
    assert precert.tbs_certificate_bytes != final.tbs_certificate_bytes
    h = tbs_sha256_of_certificate(der(precert))
    assert h == tbs_sha256_of_certificate(der(final))
    # ... which is the SHA-256 of the TBS without any CT extension, byte for byte
    assert h == hashlib.sha256(plain.tbs_certificate_bytes).hexdigest()


def test_log_leaf_tbs_of_a_precert_gives_the_same_hash() -> None:
    precert = build(ct_extension="poison")
    final = build(ct_extension="sct")
    # RFC 6962 §3.2: the log stores the precert TBS with the poison removed.
    leaf_tbs = strip_ct_extensions(precert.tbs_certificate_bytes)
    assert POISON_OID not in {
        e.oid.dotted_string for e in x509.load_der_x509_certificate(wrap_tbs(leaf_tbs)).extensions
    }
    assert tbs_sha256_of_tbs(leaf_tbs) == tbs_sha256_of_certificate(der(final))


def test_only_ct_extension_drops_the_extensions_field() -> None:
    precert = build(ct_extension="poison", only_ct=True, position=0)
    final = build(ct_extension="sct", only_ct=True, position=0)
    stripped = strip_ct_extensions(precert.tbs_certificate_bytes)
    assert stripped == strip_ct_extensions(final.tbs_certificate_bytes)
    parsed = x509.load_der_x509_certificate(wrap_tbs(stripped))
    assert len(parsed.extensions) == 0
    assert parsed.serial_number == 0x1234567890ABCDEF


def test_certificate_without_ct_extensions_is_hashed_as_signed() -> None:
    # certyard's ca/issuance.py records SHA-256 of the TBS it signed: the same value.
    cert = build(ct_extension=None)
    assert strip_ct_extensions(cert.tbs_certificate_bytes) == cert.tbs_certificate_bytes
    assert tbs_of_certificate(der(cert)) == cert.tbs_certificate_bytes
    assert (
        tbs_sha256_of_certificate(der(cert))
        == hashlib.sha256(cert.tbs_certificate_bytes).hexdigest()
    )


def test_precert_signing_certificate_limitation() -> None:
    """RFC 6962 §3.1: a precert signed by a Precertificate Signing Certificate names it as
    issuer, so its own DER hashes differently; the log's leaf TBS has the final issuer."""
    final = build(ct_extension="sct")
    precert = build(ct_extension="poison", issuer=PSC_NAME, key=PSC_KEY)
    assert tbs_sha256_of_certificate(der(precert)) != tbs_sha256_of_certificate(der(final))
    # What the log puts in the leaf: issuer and AKI rewritten to the final CA's.
    rewritten = build(ct_extension="poison")
    leaf_tbs = strip_ct_extensions(rewritten.tbs_certificate_bytes)
    assert tbs_sha256_of_tbs(leaf_tbs) == tbs_sha256_of_certificate(der(final))


def test_wrap_tbs_parses_the_fields() -> None:
    cert = build(ct_extension="poison")
    parsed = x509.load_der_x509_certificate(wrap_tbs(cert.tbs_certificate_bytes))
    assert parsed.subject == cert.subject
    assert parsed.issuer == CA_NAME
    assert parsed.not_valid_after_utc == NOW + dt.timedelta(days=90)


def test_long_tbs_lengths_are_reencoded() -> None:
    names = [
        x509.DNSName(f"host{i}.example.com") for i in range(400)
    ]  # lengths > 255: 2-byte forms
    builder = (
        x509.CertificateBuilder()
        .subject_name(CA_NAME)
        .issuer_name(CA_NAME)
        .public_key(LEAF_KEY.public_key())
        .serial_number(7)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.PrecertPoison(), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
    )
    precert = builder.sign(CA_KEY, hashes.SHA256())
    stripped = strip_ct_extensions(precert.tbs_certificate_bytes)
    parsed = x509.load_der_x509_certificate(wrap_tbs(stripped))
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert len(san.value) == 400
    assert len(parsed.extensions) == 1


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x30",
        b"\x30\x80\x00\x00",
        b"\x30\x05\x02\x01\x01",
        b"\x04\x00",
        b"\x30\x82\x00\x01\x00",
    ],
)
def test_garbage_is_a_tbs_error(garbage: bytes) -> None:
    with pytest.raises(TBSError):
        tbs_sha256_of_certificate(garbage)
