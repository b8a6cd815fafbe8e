"""scanner.findings: every code on hand-made chains, and nothing extra on a healthy one.

``Pki`` is also the fleet's certificate factory (tests/integration/test_scan_fleet.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from scanner.findings import TrustStore, evaluate, hostname_matches, key_description

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(
    cn: str,
    key: Key,
    issuer: tuple[x509.Certificate, Key] | None = None,
    *,
    names: Sequence[str] = (),
    ca: bool = False,
    now: dt.datetime = NOW,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """A certificate for ``key``; self-signed when ``issuer`` is None."""
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (name(cn), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=10))
        .not_valid_after(not_after or now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


class Pki:
    """A root and an issuing intermediate, plus a second, unknown hierarchy."""

    def __init__(self, now: dt.datetime = NOW) -> None:
        self.now = now
        self.root_key, self.int_key = ec_key(), ec_key()
        self.root = make_cert("Fleet Test Root", self.root_key, ca=True, now=now)
        self.intermediate = make_cert(
            "Fleet Test Issuing CA", self.int_key, (self.root, self.root_key), ca=True, now=now
        )
        self.other_root_key, self.other_int_key = ec_key(), ec_key()
        other_root = make_cert("Unknown Root", self.other_root_key, ca=True, now=now)
        self.other_intermediate = make_cert(
            "Unknown Issuing CA",
            self.other_int_key,
            (other_root, self.other_root_key),
            ca=True,
            now=now,
        )

    def leaf(self, host: str, key: Key | None = None, **kw: object) -> x509.Certificate:
        return make_cert(
            host,
            key or ec_key(),
            (self.intermediate, self.int_key),
            names=[host],
            now=self.now,
            **kw,  # type: ignore[arg-type]
        )

    def store(self) -> TrustStore:
        """What ``--trust`` with the root and the intermediate gives, without the system."""
        store = TrustStore()
        store.add([self.root, self.intermediate])
        return store


PKI = Pki()


def codes(chain: Sequence[x509.Certificate], sni: str | None = None, **kw: object) -> list[str]:
    found = evaluate([der(c) for c in chain], sni, PKI.store(), NOW, **kw)  # type: ignore[arg-type]
    return [f.code for f in found]


def test_healthy_chain_has_no_findings() -> None:
    leaf = PKI.leaf("ok.test")
    assert codes([leaf, PKI.intermediate], "ok.test") == []
    assert codes([leaf, PKI.intermediate, PKI.root], "ok.test") == []
    assert codes([leaf, PKI.intermediate], None) == []


def test_validity_codes() -> None:
    expired = PKI.leaf("x.test", not_after=NOW - dt.timedelta(days=1))
    future = PKI.leaf("x.test", not_before=NOW + dt.timedelta(days=1))
    soon = PKI.leaf("x.test", not_after=NOW + dt.timedelta(days=10))
    assert codes([expired, PKI.intermediate], "x.test") == ["expired"]
    assert codes([future, PKI.intermediate], "x.test") == ["not_yet_valid"]
    assert codes([soon, PKI.intermediate], "x.test") == ["expiring_soon"]
    assert codes([soon, PKI.intermediate], "x.test", expiring_days=5) == []


def test_chain_codes() -> None:
    self_signed = make_cert("self.test", ec_key(), names=["self.test"])
    assert codes([self_signed], "self.test") == ["self_signed"]
    assert codes([PKI.leaf("m.test")], "m.test") == ["incomplete_chain"]
    unknown = make_cert(
        "u.test", ec_key(), (PKI.other_intermediate, PKI.other_int_key), names=["u.test"]
    )
    assert codes([unknown, PKI.other_intermediate], "u.test") == ["untrusted_chain"]
    # Without the intermediate in the known pool, a leaf alone is simply untrusted.
    roots_only = TrustStore()
    roots_only.add([PKI.root])
    found = evaluate([der(PKI.leaf("m.test"))], "m.test", roots_only, NOW)
    assert [f.code for f in found] == ["untrusted_chain"]


def test_key_and_name_codes() -> None:
    weak = PKI.leaf("w.test", key=rsa_key(1024))
    assert key_description(weak) == ("rsa", 1024)
    assert codes([weak, PKI.intermediate], "w.test") == ["weak_key"]
    small_ec = PKI.leaf("e.test", key=ec_key(ec.SECP224R1()))
    assert codes([small_ec, PKI.intermediate], "e.test") == ["weak_key"]
    leaf = PKI.leaf("right.test")
    assert codes([leaf, PKI.intermediate], "wrong.test") == ["hostname_mismatch"]


def test_hostname_rules() -> None:
    cert = make_cert("w", ec_key(), names=["*.example.test", "exact.test"])
    assert hostname_matches(cert, "a.example.test")
    assert hostname_matches(cert, "EXACT.test.")
    assert not hostname_matches(cert, "a.b.example.test")  # RFC 6125 §6.4.3: one label
    assert not hostname_matches(cert, "example.test")
    assert not hostname_matches(make_cert("cn.test", ec_key()), "cn.test")  # no CN fallback


def test_findings_carry_severity_and_certificate() -> None:
    expired = PKI.leaf("x.test", not_after=NOW - dt.timedelta(days=1))
    found = evaluate([der(expired)], "y.test", PKI.store(), NOW)
    assert [(f.code, f.severity.value) for f in found] == [
        ("expired", "high"),
        ("incomplete_chain", "medium"),
        ("hostname_mismatch", "high"),
    ]
    assert all(f.cert_sha256 and len(f.cert_sha256) == 64 for f in found)
    assert evaluate([b"\x30\x03junk"], None, PKI.store(), NOW)[0].code == "bad_certificate"


def test_pem_bundle_skips_what_does_not_parse() -> None:
    from scanner.findings import load_pem_bundle

    good = PKI.root.public_bytes(serialization.Encoding.PEM)
    junk = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    assert [c.subject for c in load_pem_bundle(junk + good + b"trailing")] == [PKI.root.subject]
