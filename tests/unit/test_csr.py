"""acme_server.csr: finalize CSR checks (RFC 8555 §7.4)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from acme_server.csr import CheckedCSR, KeyPolicy, check_csr, decode_csr_field
from acme_server.errors import AcmeError
from tests.support.jws_client import b64

NAMES = ["a.example", "b.example"]


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "P-256": ec.generate_private_key(ec.SECP256R1()),
        "P-384": ec.generate_private_key(ec.SECP384R1()),
        "P-521": ec.generate_private_key(ec.SECP521R1()),
        "RSA": rsa.generate_private_key(65537, 2048),
        "RSA-1024": rsa.generate_private_key(65537, 1024),
        "Ed25519": ed25519.Ed25519PrivateKey.generate(),
        "account": ec.generate_private_key(ec.SECP256R1()),
    }


def spki(key: Any) -> bytes:
    return bytes(key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def make_csr(
    key: Any,
    names: Iterable[str] = NAMES,
    *,
    cn: str | None = None,
    extra: Iterable[x509.GeneralName] = (),
    san: bool = True,
) -> bytes:
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    general_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    general_names += list(extra)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(Encoding.DER)


def check(der: bytes, keys: dict[str, Any], order: Iterable[str] = NAMES, **kw: Any) -> CheckedCSR:
    return check_csr(der, order_dns_names=order, account_key_der=spki(keys["account"]), **kw)


def check_raises(
    der: bytes, keys: dict[str, Any], order: Iterable[str] = NAMES, **kw: Any
) -> AcmeError:
    with pytest.raises(AcmeError) as info:
        check(der, keys, order, **kw)
    assert info.value.type == "badCSR", info.value.detail
    return info.value


# Minimal DER writer, only to build CSRs with signature algorithms cryptography refuses to sign.
def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = (
        bytes([n])
        if n < 128
        else bytes([0x80 | ((n.bit_length() + 7) // 8)])
        + n.to_bytes((n.bit_length() + 7) // 8, "big")
    )
    return bytes([tag]) + length + content


def resign(der: bytes, algorithm_identifier: bytes, signature: bytes) -> bytes:
    tbs = x509.load_der_x509_csr(der).tbs_certrequest_bytes
    return _tlv(0x30, tbs + _tlv(0x30, algorithm_identifier) + _tlv(0x03, b"\x00" + signature))


# --- happy paths -------------------------------------------------------------------------


@pytest.mark.parametrize("key_name", ["P-256", "P-384", "RSA"])
def test_happy_path(keys: dict[str, Any], key_name: str) -> None:
    der = make_csr(keys[key_name], ["b.example", "a.example"], cn="a.example")
    checked = check(der, keys)
    assert checked.dns_names == ("a.example", "b.example")
    assert checked.ip_addresses == ()
    assert checked.der == der
    assert checked.csr.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    ) == spki(keys[key_name])


def test_without_cn(keys: dict[str, Any]) -> None:
    assert check(make_csr(keys["P-256"]), keys).dns_names == ("a.example", "b.example")


def test_case_insensitive_matching(keys: dict[str, Any]) -> None:
    der = make_csr(keys["P-256"], ["WWW.Example.COM", "b.example"], cn="www.EXAMPLE.com")
    checked = check(der, keys, ["www.example.com", "B.EXAMPLE"])
    assert checked.dns_names == ("b.example", "www.example.com")


def test_duplicate_sans_are_merged(keys: dict[str, Any]) -> None:
    der = make_csr(keys["P-256"], ["a.example", "A.example", "b.example"])
    assert check(der, keys).dns_names == ("a.example", "b.example")


def test_ip_addresses(keys: dict[str, Any]) -> None:
    ips = [
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
        x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
    ]
    der = make_csr(keys["P-256"], ["a.example"], extra=ips)
    checked = check(der, keys, ["a.example"], order_ips=["2001:DB8:0::1", "192.0.2.7"])
    assert checked.ip_addresses == ("192.0.2.7", "2001:db8::1")
    error = check_raises(der, keys, ["a.example"])
    assert "2001:db8::1" in error.detail
    assert {s.identifier["type"] for s in error.subproblems if s.identifier} == {"ip"}


def test_ip_only_csr_with_ip_cn(keys: dict[str, Any]) -> None:
    der = make_csr(
        keys["P-256"], [], cn="192.0.2.7", extra=[x509.IPAddress(ipaddress.ip_address("192.0.2.7"))]
    )
    checked = check(der, keys, [], order_ips=["192.0.2.7"])
    assert (checked.dns_names, checked.ip_addresses) == ((), ("192.0.2.7",))


# --- names -------------------------------------------------------------------------------


def test_extra_name(keys: dict[str, Any]) -> None:
    error = check_raises(make_csr(keys["P-256"], [*NAMES, "evil.example"]), keys)
    assert "evil.example" in error.detail
    assert [s.identifier for s in error.subproblems] == [{"type": "dns", "value": "evil.example"}]
    assert all(s.type == "badCSR" for s in error.subproblems)


def test_missing_name(keys: dict[str, Any]) -> None:
    error = check_raises(make_csr(keys["P-256"], ["a.example"]), keys)
    assert "b.example" in error.detail
    assert "missing" in error.detail
    assert [s.identifier for s in error.subproblems] == [{"type": "dns", "value": "b.example"}]


def test_extra_and_missing_names(keys: dict[str, Any]) -> None:
    error = check_raises(make_csr(keys["P-256"], ["a.example", "c.example"]), keys)
    assert "c.example" in error.detail
    assert "b.example" in error.detail
    assert len(error.subproblems) == 2


def test_cn_not_in_sans(keys: dict[str, Any]) -> None:
    error = check_raises(make_csr(keys["P-256"], cn="c.example"), keys)
    assert "c.example" in error.detail


def test_cn_only_without_san(keys: dict[str, Any]) -> None:
    check_raises(make_csr(keys["P-256"], [], cn="a.example", san=False), keys, ["a.example"])


def test_no_names_at_all(keys: dict[str, Any]) -> None:
    check_raises(make_csr(keys["P-256"], [], san=False), keys, [])
    check_raises(make_csr(keys["P-256"], [], san=False), keys)


@pytest.mark.parametrize(
    "general_name",
    [
        x509.RFC822Name("admin@a.example"),
        x509.UniformResourceIdentifier("https://a.example/"),
        x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4")),
    ],
)
def test_unsupported_san_types(keys: dict[str, Any], general_name: x509.GeneralName) -> None:
    error = check_raises(make_csr(keys["P-256"], extra=[general_name]), keys)
    assert "subjectAltName" in error.detail


# --- keys --------------------------------------------------------------------------------


def test_account_key_reused(keys: dict[str, Any]) -> None:
    error = check_raises(make_csr(keys["account"]), keys)
    assert error.detail == "CSR public key must not be the account key"


@pytest.mark.parametrize("key_name", ["RSA-1024", "Ed25519", "P-521"])
def test_key_type_not_allowed(keys: dict[str, Any], key_name: str) -> None:
    error = check_raises(make_csr(keys[key_name]), keys)
    assert error.detail.startswith("key type not allowed")


def test_custom_key_policy(keys: dict[str, Any]) -> None:
    policy = KeyPolicy(ec_curves=frozenset({"secp384r1"}), rsa_min_bits=3072)
    check_raises(make_csr(keys["P-256"]), keys, allowed_keys=policy)
    check_raises(make_csr(keys["RSA"]), keys, allowed_keys=policy)
    check(make_csr(keys["P-384"]), keys, allowed_keys=policy)


# --- signatures and encoding ---------------------------------------------------------------


def test_bad_signature(keys: dict[str, Any]) -> None:
    der = make_csr(keys["P-256"])
    # Change a name inside the signed part: same length, so the DER stays well formed.
    tampered = der.replace(b"b.example", b"c.example")
    assert tampered != der
    assert check_raises(tampered, keys, ["a.example", "c.example"]).detail == (
        "CSR signature is invalid"
    )


def test_bad_signature_value(keys: dict[str, Any]) -> None:
    der = make_csr(keys["RSA"])
    tampered = der[:-1] + bytes([der[-1] ^ 0x01])  # last byte of the RSA signature
    assert check_raises(tampered, keys).detail == "CSR signature is invalid"


def test_sha1_signature(keys: dict[str, Any]) -> None:
    der = make_csr(keys["P-256"])
    tbs = x509.load_der_x509_csr(der).tbs_certrequest_bytes
    signature = keys["P-256"].sign(tbs, ec.ECDSA(hashes.SHA1()))
    ecdsa_with_sha1 = bytes.fromhex("06072a8648ce3d0401")  # 1.2.840.10045.4.1
    error = check_raises(resign(der, ecdsa_with_sha1, signature), keys)
    assert "sha1" in error.detail


def test_md5_signature(keys: dict[str, Any]) -> None:
    md5_with_rsa = bytes.fromhex("06092a864886f70d0101040500")  # 1.2.840.113549.1.1.4, NULL
    error = check_raises(resign(make_csr(keys["RSA"]), md5_with_rsa, b"\x01" * 256), keys)
    assert "md5" in error.detail


@pytest.mark.parametrize("der", [b"", b"garbage", b"\x30\x03\x02\x01\x00", b"\x30\x80"])
def test_garbage_der(keys: dict[str, Any], der: bytes) -> None:
    check_raises(der, keys)


def test_trailing_data(keys: dict[str, Any]) -> None:
    check_raises(make_csr(keys["P-256"]) + b"\x00", keys)


def test_decode_csr_field(keys: dict[str, Any]) -> None:
    der = make_csr(keys["P-256"])
    assert decode_csr_field(b64(der)) == der


@pytest.mark.parametrize("value", [None, 42, ["x"], "", "MII=", "MII!", "a"])
def test_decode_csr_field_malformed(value: Any) -> None:
    with pytest.raises(AcmeError) as info:
        decode_csr_field(value)
    assert info.value.type == "malformed"


def test_decode_csr_field_bad_der() -> None:
    with pytest.raises(AcmeError) as info:
        decode_csr_field(b64(b"not a csr"))
    assert info.value.type == "badCSR"
