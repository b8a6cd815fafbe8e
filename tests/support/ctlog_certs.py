"""Certificates for the suite's CT test log: a test issuer, precertificate + final certificate
pairs (RFC 6962 §3.1), and a template certificate patched per index for millions of entries.

Keys are derived from fixed seeds so runs are reproducible.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

# RFC 6962 §3.1 precertificate poison and §3.3 embedded SCT list extension OIDs.
POISON_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.3")
SCT_LIST_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
NOT_BEFORE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)


def derive_key(seed: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-256 key determined by ``seed`` (test use only)."""
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    scalar = int.from_bytes(hashlib.sha256(b"certyard-ct-test-key:" + seed).digest()) % (n - 1)
    return ec.derive_private_key(scalar + 1, ec.SECP256R1())


def spki_der(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class Issuer:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def key_hash(self) -> bytes:
        """RFC 6962 §3.2 issuer_key_hash: SHA-256 of the issuer's SubjectPublicKeyInfo."""
        return hashlib.sha256(spki_der(self.key)).digest()

    @property
    def name(self) -> str:
        return self.cert.subject.rfc4514_string()


def make_issuer(seed: bytes = b"issuer", common_name: str = "certyard CT Test CA") -> Issuer:
    key = derive_key(seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(hashlib.sha256(seed).digest()[:8]) | 1)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(dt.datetime(2036, 1, 1, tzinfo=dt.UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issuer(key, cert)


@dataclass(frozen=True)
class CertPair:
    """One issuance: the precertificate, the TBSCertificate logged for it (poison removed,
    RFC 6962 §3.2), and the final certificate carrying an SCT list extension."""

    precert_der: bytes
    tbs_der: bytes
    final_der: bytes
    issuer: Issuer


def _builder(
    names: list[str], serial: int, issuer: Issuer, subject_key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]) if names else None
    b = (
        x509.CertificateBuilder()
        .subject_name(subject or x509.Name([]))
        .issuer_name(issuer.cert.subject)
        .public_key(subject_key.public_key())
        .serial_number(serial)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if names:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    return b


def make_cert(names: list[str], issuer: Issuer, serial: int = 0x1001) -> bytes:
    """A plain leaf certificate (no CT extensions) for ``names``."""
    key = derive_key(b"leaf:" + ",".join(names).encode())
    cert = _builder(names, serial, issuer, key).sign(issuer.key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.DER)


def make_cert_pair(
    names: list[str],
    issuer: Issuer,
    serial: int = 0x2002,
    sct_list: Callable[[bytes], bytes] | None = None,
) -> CertPair:
    """A precertificate and its final certificate for ``names``, signed by ``issuer``.

    The poison and the SCT list are the last extension of each, so the TBSCertificate with
    either removed is the same bytes (what the log signs for the precert, RFC 6962 §3.2).
    ``sct_list(tbs)`` returns the TLS-encoded SignedCertificateTimestampList (RFC 6962 §3.3)
    for the final certificate; the test log passes one that signs a real SCT.
    """
    key = derive_key(b"leaf:" + ",".join(names).encode())
    base = _builder(names, serial, issuer, key)
    precert = base.add_extension(
        x509.UnrecognizedExtension(POISON_OID, b"\x05\x00"), critical=True
    ).sign(issuer.key, hashes.SHA256())
    tbs = base.sign(issuer.key, hashes.SHA256()).tbs_certificate_bytes
    octet = _der_octet_string(sct_list(tbs) if sct_list else b"\x00\x00")
    final = base.add_extension(
        x509.UnrecognizedExtension(SCT_LIST_OID, octet), critical=False
    ).sign(issuer.key, hashes.SHA256())
    return CertPair(
        precert.public_bytes(serialization.Encoding.DER),
        tbs,
        final.public_bytes(serialization.Encoding.DER),
        issuer,
    )


def _der_octet_string(data: bytes) -> bytes:
    n = len(data)
    if n < 0x80:
        return b"\x04" + bytes([n]) + data
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\x04" + bytes([0x80 | len(length)]) + length + data


# Template certificates: one real certificate whose serial and name are patched per index. The
# patched certificate's signature no longer verifies — CT monitors (certspotter included) do
# not verify leaf signatures, and this is what lets the suite host a million entries quickly.
TEMPLATE_SERIAL = 0x7E5E_0000_0000_0000_0001
TEMPLATE_NAME = "n00000000.synthetic.test"
TEMPLATE_NAME_DIGITS = 8


@dataclass(frozen=True)
class Template:
    der: bytes
    serial_offset: int
    serial_len: int
    name_offsets: tuple[int, ...]

    def patch(self, index: int) -> bytes:
        """The template with serial and name made unique for ``index``."""
        serial = index.to_bytes(self.serial_len - 1, "big")
        digits = f"{index % 10**TEMPLATE_NAME_DIGITS:0{TEMPLATE_NAME_DIGITS}d}".encode()
        pieces = self._pieces
        out = [pieces[0], serial]
        for piece in pieces[1:-1]:
            out += (piece, digits)
        out.append(pieces[-1])
        return b"".join(out)

    @property
    def _pieces(self) -> list[bytes]:
        """The template cut around the serial (first cut) and the name digits (the others)."""
        cached: list[bytes] | None = self.__dict__.get("_cut")
        if cached is None:
            cuts = [(self.serial_offset + 1, self.serial_offset + self.serial_len)]
            cuts += [(o + 1, o + 1 + TEMPLATE_NAME_DIGITS) for o in self.name_offsets]
            cached, pos = [], 0
            for a, b in cuts:
                cached.append(self.der[pos:a])
                pos = b
            cached.append(self.der[pos:])
            object.__setattr__(self, "_cut", cached)
        return cached

    @staticmethod
    def name_for(index: int) -> str:
        return f"n{index % 10**TEMPLATE_NAME_DIGITS:0{TEMPLATE_NAME_DIGITS}d}.synthetic.test"


def make_template(issuer: Issuer) -> Template:
    der = make_cert([TEMPLATE_NAME], issuer, serial=TEMPLATE_SERIAL)
    serial_bytes = TEMPLATE_SERIAL.to_bytes((TEMPLATE_SERIAL.bit_length() + 7) // 8, "big")
    off = der.find(serial_bytes)
    if off < 0 or der.find(serial_bytes, off + 1) >= 0:
        raise RuntimeError("template serial not found exactly once")
    name = TEMPLATE_NAME.encode()
    name_offsets = []
    pos = der.find(name)
    while pos >= 0:
        name_offsets.append(pos)
        pos = der.find(name, pos + 1)
    return Template(der, off, len(serial_bytes), tuple(name_offsets))
