"""ca.profiles: the contents of root, intermediate and TLS server certificates."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.config import CAConfig
from ca.errors import CAError
from ca.keys import EC_P256, RSA_2048
from ca.profiles import (
    IntermediateCAProfile,
    RootCAProfile,
    TLSServerProfile,
    check_subscriber_key,
    normalize_dns_names,
    parse_ip_addresses,
)
from ca.software_keys import SoftwarePrivateKey, generate_private_key

NOW = dt.datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=dt.UTC)
CONFIG = CAConfig()
# root, intermediate, intermediate's key
Chain = tuple[x509.Certificate, x509.Certificate, SoftwarePrivateKey]


def _sign(builder: x509.CertificateBuilder, key: SoftwarePrivateKey) -> x509.Certificate:
    return builder.sign(key, hashes.SHA256())


@pytest.fixture(scope="module")
def chain() -> Chain:
    root_key, int_key = generate_private_key(EC_P256), generate_private_key(EC_P256)
    root = _sign(
        RootCAProfile(CONFIG).build(public_key=root_key.public_key(), serial=1, now=NOW), root_key
    )
    intermediate = _sign(
        IntermediateCAProfile(CONFIG).build(
            public_key=int_key.public_key(), serial=2, issuer=root, now=NOW
        ),
        root_key,
    )
    return root, intermediate, int_key


def _leaf(
    intermediate: x509.Certificate,
    int_key: SoftwarePrivateKey,
    *,
    dns: list[str],
    ips: list[str] = [],  # noqa: B006 - never mutated
    subject_key: SoftwarePrivateKey | None = None,
) -> x509.Certificate:
    profile = TLSServerProfile(CONFIG)
    key = subject_key or generate_private_key(EC_P256)
    not_before, not_after = profile.validity(NOW, issuer=intermediate)
    builder = profile.build(
        public_key=key.public_key(),
        dns_names=normalize_dns_names(dns),
        ip_addresses=parse_ip_addresses(ips),
        issuer=intermediate,
        serial=3,
        not_before=not_before,
        not_after=not_after,
    )
    return _sign(builder, int_key)


def _ext(
    cert: x509.Certificate, cls: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(cls)


def test_root_profile(chain: Chain) -> None:
    root, _, _ = chain
    assert root.subject == root.issuer
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "certyard Root CA"
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "certyard"
    bc = _ext(root, x509.BasicConstraints)
    assert bc.critical and bc.value == x509.BasicConstraints(ca=True, path_length=None)
    ku = _ext(root, x509.KeyUsage)
    assert ku.critical
    assert isinstance(ku.value, x509.KeyUsage)
    assert ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    assert _ext(root, x509.SubjectKeyIdentifier).value == (
        x509.SubjectKeyIdentifier.from_public_key(root.public_key())
    )
    assert root.not_valid_before_utc == NOW.replace(microsecond=0) - dt.timedelta(seconds=60)
    validity = root.not_valid_after_utc - root.not_valid_before_utc + dt.timedelta(seconds=1)
    assert validity == dt.timedelta(days=3650)
    root.verify_directly_issued_by(root)


def test_intermediate_profile(
    chain: Chain,
) -> None:
    root, intermediate, _ = chain
    assert intermediate.issuer == root.subject
    bc = _ext(intermediate, x509.BasicConstraints)
    assert bc.critical and bc.value == x509.BasicConstraints(ca=True, path_length=0)
    ku = _ext(intermediate, x509.KeyUsage)
    assert ku.critical and isinstance(ku.value, x509.KeyUsage)
    assert ku.value.key_cert_sign and ku.value.crl_sign and ku.value.digital_signature
    eku = _ext(intermediate, x509.ExtendedKeyUsage)
    assert not eku.critical
    assert isinstance(eku.value, x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    aki = _ext(intermediate, x509.AuthorityKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    root_ski = _ext(root, x509.SubjectKeyIdentifier).value
    assert isinstance(root_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == root_ski.digest
    validity = intermediate.not_valid_after_utc - intermediate.not_valid_before_utc
    assert validity + dt.timedelta(seconds=1) == dt.timedelta(days=1825)
    intermediate.verify_directly_issued_by(root)


def test_tls_server_profile_ec(
    chain: Chain,
) -> None:
    _, intermediate, int_key = chain
    leaf = _leaf(intermediate, int_key, dns=["WWW.Example.com", "example.com", "www.example.com"])

    assert leaf.issuer == intermediate.subject
    assert leaf.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.com")])
    san = _ext(leaf, x509.SubjectAlternativeName)
    assert not san.critical  # the subject is not empty
    assert isinstance(san.value, x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["www.example.com", "example.com"]
    ku = _ext(leaf, x509.KeyUsage)
    assert ku.critical and isinstance(ku.value, x509.KeyUsage)
    assert ku.value.digital_signature and not ku.value.key_encipherment
    assert not ku.value.key_cert_sign
    eku = _ext(leaf, x509.ExtendedKeyUsage)
    assert not eku.critical and isinstance(eku.value, x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = _ext(leaf, x509.BasicConstraints)
    assert bc.critical and bc.value == x509.BasicConstraints(ca=False, path_length=None)
    ski = _ext(leaf, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    aki = _ext(leaf, x509.AuthorityKeyIdentifier).value
    int_ski = _ext(intermediate, x509.SubjectKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(int_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == int_ski.digest
    assert leaf.not_valid_before_utc == NOW.replace(microsecond=0) - dt.timedelta(seconds=60)
    validity = leaf.not_valid_after_utc - leaf.not_valid_before_utc + dt.timedelta(seconds=1)
    assert validity == dt.timedelta(days=90)
    leaf.verify_directly_issued_by(intermediate)


def test_tls_server_profile_rsa_adds_key_encipherment(
    chain: Chain,
) -> None:
    _, intermediate, int_key = chain
    leaf = _leaf(
        intermediate, int_key, dns=["rsa.example"], subject_key=generate_private_key(RSA_2048)
    )
    ku = _ext(leaf, x509.KeyUsage).value
    assert isinstance(ku, x509.KeyUsage)
    assert ku.digital_signature and ku.key_encipherment


def test_long_first_name_gives_empty_subject_and_critical_san(
    chain: Chain,
) -> None:
    _, intermediate, int_key = chain
    long_name = ("a" * 60) + ".example.com"  # 72 characters > ub-common-name
    leaf = _leaf(intermediate, int_key, dns=[long_name, "short.example"])
    assert leaf.subject == x509.Name([])
    san = _ext(leaf, x509.SubjectAlternativeName)
    assert san.critical


def test_exactly_64_characters_still_fits_the_cn(
    chain: Chain,
) -> None:
    _, intermediate, int_key = chain
    name = ("b" * 52) + ".example.com"
    assert len(name) == 64
    leaf = _leaf(intermediate, int_key, dns=[name])
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name


def test_ip_only_certificate(
    chain: Chain,
) -> None:
    _, intermediate, int_key = chain
    leaf = _leaf(intermediate, int_key, dns=[], ips=["192.0.2.7", "2001:db8::0:1"])
    assert leaf.subject == x509.Name([])
    san = _ext(leaf, x509.SubjectAlternativeName)
    assert san.critical and isinstance(san.value, x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.0.2.7"),
        ipaddress.ip_address("2001:db8::1"),
    ]
    assert san.value.get_values_for_type(x509.DNSName) == []


def test_mixed_dns_and_ip(chain: Chain) -> None:
    _, intermediate, int_key = chain
    leaf = _leaf(intermediate, int_key, dns=["*.example.org"], ips=["10.0.0.1"])
    san = _ext(leaf, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == ["*.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.1")]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "*.example.org"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("", "malformed"),
        ("exa mple.com", "malformed"),
        ("under_score.example", "malformed"),
        ("-lead.example", "malformed"),
        ("a..example", "malformed"),
        ("bücher.example", "malformed"),
        ("www.*.example", "malformed"),
        ("1.2.3.4", "malformed"),
        ("x" * 64 + ".example", "malformed"),
        ("*.com", "policy"),
    ],
)
def test_bad_dns_names(name: str, kind: str) -> None:
    with pytest.raises(CAError) as info:
        normalize_dns_names([name])
    assert info.value.kind == kind


def test_bad_ip_address() -> None:
    with pytest.raises(CAError) as info:
        parse_ip_addresses(["300.1.1.1"])
    assert info.value.kind == "malformed"


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP521R1()).public_key(),
        lambda: ed25519.Ed25519PrivateKey.generate().public_key(),
        lambda: rsa.generate_private_key(65537, 1024).public_key(),
    ],
)
def test_disallowed_subject_keys(make_key: object) -> None:
    with pytest.raises(CAError) as info:
        check_subscriber_key(make_key())  # type: ignore[operator]
    assert info.value.kind == "policy"


def test_requested_validity_window(
    chain: Chain,
) -> None:
    _, intermediate, _ = chain
    profile = TLSServerProfile(CONFIG)
    start = NOW + dt.timedelta(hours=1)
    nb, na = profile.validity(
        NOW, issuer=intermediate, not_before=start, not_after=start + dt.timedelta(days=30)
    )
    assert nb == start.replace(microsecond=0)
    assert na == (start + dt.timedelta(days=30)).replace(microsecond=0)
    # only notAfter: starts at the backdated now
    nb, na = profile.validity(NOW, issuer=intermediate, not_after=NOW + dt.timedelta(days=7))
    assert nb == NOW.replace(microsecond=0) - dt.timedelta(seconds=60)


@pytest.mark.parametrize(
    ("not_before", "not_after", "kind"),
    [
        (None, NOW + dt.timedelta(days=91), "policy"),  # longer than the profile allows
        (NOW - dt.timedelta(hours=1), None, "policy"),  # backdated beyond the allowance
        (NOW + dt.timedelta(days=3), None, "policy"),  # BR: within 48 h of signing
        (None, NOW - dt.timedelta(minutes=1), "policy"),  # already expired
        (NOW + dt.timedelta(days=1), NOW + dt.timedelta(hours=1), "policy"),  # inverted
        (dt.datetime(2026, 11, 25, 12, 0), None, "malformed"),  # naive datetime
    ],
)
def test_requested_validity_outside_the_profile(
    chain: Chain,
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
    kind: str,
) -> None:
    _, intermediate, _ = chain
    with pytest.raises(CAError) as info:
        TLSServerProfile(CONFIG).validity(
            NOW, issuer=intermediate, not_before=not_before, not_after=not_after
        )
    assert info.value.kind == kind


def test_leaf_may_not_outlive_its_issuer(
    chain: Chain,
) -> None:
    _, intermediate, _ = chain
    late = intermediate.not_valid_after_utc - dt.timedelta(days=10)
    with pytest.raises(CAError) as info:
        TLSServerProfile(CONFIG).validity(late, issuer=intermediate)
    assert info.value.kind == "internal"


def test_no_names_and_too_many_names(
    chain: Chain,
) -> None:
    _, intermediate, int_key = chain
    with pytest.raises(CAError) as info:
        _leaf(intermediate, int_key, dns=[])
    assert info.value.kind == "malformed"
    with pytest.raises(CAError) as info:
        _leaf(intermediate, int_key, dns=[f"n{i}.example" for i in range(101)])
    assert info.value.kind == "policy"


def test_config_validation() -> None:
    with pytest.raises(CAError):
        CAConfig(key_algorithm="dsa-1024")
    with pytest.raises(CAError):
        CAConfig(leaf_validity_days=0)
    assert CAConfig(key_algorithm="rsa-3072").key_algorithm == "rsa-3072"
