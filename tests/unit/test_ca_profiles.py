"""ca.profiles and ca.config: the contents of root, intermediate and end-entity certificates."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    CertificatePoliciesOID,
    ExtendedKeyUsageOID,
    NameOID,
)

from ca.config import DEFAULT_PROFILES, CAConfig, ProfileConfig, default_profiles
from ca.errors import CAError
from ca.keys import EC_P256, EC_P384, RSA_2048
from ca.profiles import (
    DV_POLICY,
    IntermediateCAProfile,
    LeafProfile,
    RootCAProfile,
    TLSServerProfile,
    ca_issuers_uri,
    check_subscriber_key,
    crl_url,
    normalize_dns_names,
    parse_ip_addresses,
)
from ca.software_keys import SoftwarePrivateKey, generate_private_key

NOW = dt.datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=dt.UTC)
CONFIG = CAConfig()
BASE = "http://pki.certyard.example.com"
URLS = CAConfig(crl_base_url=BASE, ca_issuers_url=BASE, ocsp_url=BASE + "/ocsp")
# root, intermediate, intermediate's key
Chain = tuple[x509.Certificate, x509.Certificate, SoftwarePrivateKey]


def _sign(builder: x509.CertificateBuilder, key: SoftwarePrivateKey) -> x509.Certificate:
    return builder.sign(key, hashes.SHA256())


def _chain(config: CAConfig) -> Chain:
    root_key, int_key = generate_private_key(EC_P256), generate_private_key(EC_P256)
    root = _sign(
        RootCAProfile(config).build(public_key=root_key.public_key(), serial=1, now=NOW), root_key
    )
    intermediate = _sign(
        IntermediateCAProfile(config).build(
            public_key=int_key.public_key(), serial=2, issuer=root, now=NOW
        ),
        root_key,
    )
    return root, intermediate, int_key


@pytest.fixture(scope="module")
def chain() -> Chain:
    return _chain(CONFIG)


@pytest.fixture(scope="module")
def url_chain() -> Chain:
    return _chain(URLS)


def _leaf(
    intermediate: x509.Certificate,
    int_key: SoftwarePrivateKey,
    *,
    dns: list[str],
    ips: list[str] = [],  # noqa: B006 - never mutated
    subject_key: SoftwarePrivateKey | None = None,
    profile: str = "tls-server",
    config: CAConfig = CONFIG,
    common_name: str | None = None,
) -> x509.Certificate:
    leaf_profile = LeafProfile(_profile(config, profile), config)
    key = subject_key or generate_private_key(EC_P256)
    not_before, not_after = leaf_profile.validity(NOW, issuer=intermediate)
    builder = leaf_profile.build(
        public_key=key.public_key(),
        dns_names=normalize_dns_names(dns),
        ip_addresses=parse_ip_addresses(ips),
        common_name=common_name,
        issuer=intermediate,
        issuer_id="int-1",
        serial=3,
        not_before=not_before,
        not_after=not_after,
    )
    return _sign(builder, int_key)


def _profile(config: CAConfig, name: str) -> ProfileConfig:
    profile = config.profile(name)
    assert profile is not None
    return profile


def _ext(
    cert: x509.Certificate, cls: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(cls)


def _has(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> bool:
    try:
        cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return False
    return True


def _aia(cert: x509.Certificate) -> dict[x509.ObjectIdentifier, str]:
    value = _ext(cert, x509.AuthorityInformationAccess).value
    assert isinstance(value, x509.AuthorityInformationAccess)
    return {d.access_method: str(d.access_location.value) for d in value}


def _crl_urls(cert: x509.Certificate) -> list[str]:
    value = _ext(cert, x509.CRLDistributionPoints).value
    assert isinstance(value, x509.CRLDistributionPoints)
    return [str(name.value) for point in value for name in point.full_name or []]


# --- CA certificates ---------------------------------------------------------------------------


def test_root_profile(chain: Chain) -> None:
    root, _, _ = chain
    assert root.subject == root.issuer
    assert [a.oid for a in root.subject] == [
        NameOID.COUNTRY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.COMMON_NAME,
    ]
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "certyard Root CA"
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "certyard"
    assert root.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "XX"
    bc = _ext(root, x509.BasicConstraints)
    assert bc.critical and bc.value == x509.BasicConstraints(ca=True, path_length=None)
    ku = _ext(root, x509.KeyUsage)
    assert ku.critical
    assert isinstance(ku.value, x509.KeyUsage)
    assert ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    ski = x509.SubjectKeyIdentifier.from_public_key(root.public_key())
    assert _ext(root, x509.SubjectKeyIdentifier).value == ski
    aki = _ext(root, x509.AuthorityKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier) and aki.key_identifier == ski.digest
    assert not _has(root, x509.CertificatePolicies)
    assert root.not_valid_before_utc == NOW.replace(microsecond=0) - dt.timedelta(seconds=60)
    validity = root.not_valid_after_utc - root.not_valid_before_utc + dt.timedelta(seconds=1)
    assert validity == dt.timedelta(days=3650)
    root.verify_directly_issued_by(root)


def test_intermediate_profile(chain: Chain) -> None:
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
    policies = _ext(intermediate, x509.CertificatePolicies).value
    assert isinstance(policies, x509.CertificatePolicies)
    assert [p.policy_identifier for p in policies] == [CertificatePoliciesOID.ANY_POLICY]
    aki = _ext(intermediate, x509.AuthorityKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    root_ski = _ext(root, x509.SubjectKeyIdentifier).value
    assert isinstance(root_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == root_ski.digest
    # No URLs configured: no CRL DP and no AIA (the linter reports the gap as a warning).
    assert not _has(intermediate, x509.CRLDistributionPoints)
    assert not _has(intermediate, x509.AuthorityInformationAccess)
    validity = intermediate.not_valid_after_utc - intermediate.not_valid_before_utc
    assert validity + dt.timedelta(seconds=1) == dt.timedelta(days=1825)
    intermediate.verify_directly_issued_by(root)


def test_intermediate_points_at_the_roots_crl_and_certificate(url_chain: Chain) -> None:
    _, intermediate, _ = url_chain
    assert _crl_urls(intermediate) == [f"{BASE}/crl/root-1.crl"]
    assert _aia(intermediate) == {AuthorityInformationAccessOID.CA_ISSUERS: f"{BASE}/ca/root-1.crt"}


def test_url_layouts() -> None:
    assert crl_url("http://crl.example/", "int-1") == "http://crl.example/crl/int-1.crl"
    assert crl_url("http://x.example/pki", "root-1") == "http://x.example/pki/crl/root-1.crl"
    assert ca_issuers_uri("http://x.example", "int-1") == "http://x.example/ca/int-1.crt"


# --- TLS server --------------------------------------------------------------------------------


def test_tls_server_profile_ec(chain: Chain) -> None:
    _, intermediate, int_key = chain
    leaf = _leaf(intermediate, int_key, dns=["WWW.Example.com", "example.com", "www.example.com"])

    assert leaf.issuer == intermediate.subject
    # BR §7.1.2.7.2: no commonName by default, so an empty subject and a critical SAN.
    assert leaf.subject == x509.Name([])
    san = _ext(leaf, x509.SubjectAlternativeName)
    assert san.critical
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
    assert not _has(leaf, x509.SubjectKeyIdentifier)  # BR §7.1.2.7.6: NOT RECOMMENDED
    policies = _ext(leaf, x509.CertificatePolicies).value
    assert isinstance(policies, x509.CertificatePolicies)
    assert [p.policy_identifier for p in policies] == [DV_POLICY]
    aki = _ext(leaf, x509.AuthorityKeyIdentifier).value
    int_ski = _ext(intermediate, x509.SubjectKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(int_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == int_ski.digest
    assert not _has(leaf, x509.CRLDistributionPoints)  # no crl_base_url configured
    assert not _has(leaf, x509.AuthorityInformationAccess)
    assert leaf.not_valid_before_utc == NOW.replace(microsecond=0) - dt.timedelta(seconds=60)
    validity = leaf.not_valid_after_utc - leaf.not_valid_before_utc + dt.timedelta(seconds=1)
    assert validity == dt.timedelta(days=90)
    leaf.verify_directly_issued_by(intermediate)


def test_tls_server_with_urls_has_crl_dp_and_aia(url_chain: Chain) -> None:
    _, intermediate, int_key = url_chain
    leaf = _leaf(intermediate, int_key, dns=["www.example.com"], config=URLS)
    assert _crl_urls(leaf) == [f"{BASE}/crl/int-1.crl"]
    # include_ocsp_aia is off by default (BR: OCSP optional, CRLs mandatory).
    assert _aia(leaf) == {AuthorityInformationAccessOID.CA_ISSUERS: f"{BASE}/ca/int-1.crt"}
    with_ocsp = URLS.with_profiles(
        ProfileConfig("tls-server", "tls-server", 90, include_ocsp_aia=True)
    )
    leaf = _leaf(intermediate, int_key, dns=["www.example.com"], config=with_ocsp)
    assert _aia(leaf) == {
        AuthorityInformationAccessOID.OCSP: f"{BASE}/ocsp",
        AuthorityInformationAccessOID.CA_ISSUERS: f"{BASE}/ca/int-1.crt",
    }


def test_tls_server_rsa_key_has_digital_signature_only(chain: Chain) -> None:
    _, intermediate, int_key = chain
    leaf = _leaf(
        intermediate, int_key, dns=["rsa.example"], subject_key=generate_private_key(RSA_2048)
    )
    ku = _ext(leaf, x509.KeyUsage).value
    assert isinstance(ku, x509.KeyUsage)
    assert ku.digital_signature and not ku.key_encipherment


def test_tls_server_common_name_must_repeat_a_san(chain: Chain) -> None:
    _, intermediate, int_key = chain
    leaf = _leaf(intermediate, int_key, dns=["a.example", "b.example"], common_name="B.example")
    assert leaf.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "b.example")])
    assert not _ext(leaf, x509.SubjectAlternativeName).critical
    with pytest.raises(CAError) as info:
        _leaf(intermediate, int_key, dns=["a.example"], common_name="c.example")
    assert info.value.kind == "policy"


def test_ip_only_certificate(chain: Chain) -> None:
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


# --- every kind --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "eku", "days", "server"),
    [
        ("tls-server", ExtendedKeyUsageOID.SERVER_AUTH, 90, True),
        ("shortlived", ExtendedKeyUsageOID.SERVER_AUTH, 6, True),
        ("tls-client", ExtendedKeyUsageOID.CLIENT_AUTH, 365, False),
        ("device", ExtendedKeyUsageOID.CLIENT_AUTH, 730, False),
    ],
)
def test_each_kind(
    url_chain: Chain, name: str, eku: x509.ObjectIdentifier, days: int, server: bool
) -> None:
    _, intermediate, int_key = url_chain
    leaf = _leaf(intermediate, int_key, dns=["host.example.com"], profile=name, config=URLS)
    eku_value = _ext(leaf, x509.ExtendedKeyUsage).value
    assert isinstance(eku_value, x509.ExtendedKeyUsage) and list(eku_value) == [eku]
    ku = _ext(leaf, x509.KeyUsage)
    assert ku.critical and ku.value == x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    validity = leaf.not_valid_after_utc - leaf.not_valid_before_utc + dt.timedelta(seconds=1)
    assert validity == dt.timedelta(days=days)
    assert _has(leaf, x509.CertificatePolicies) == server  # DV policy only on TLS server kinds
    assert _has(leaf, x509.SubjectKeyIdentifier) != server  # RFC 5280 SHOULD; BR SHOULD NOT
    # caIssuers whenever configured; CRL DP except on the short-lived profile; never OCSP.
    assert _aia(leaf) == {AuthorityInformationAccessOID.CA_ISSUERS: f"{BASE}/ca/int-1.crt"}
    assert _has(leaf, x509.CRLDistributionPoints) == (name != "shortlived")


def test_shortlived_has_no_revocation_information(url_chain: Chain) -> None:
    _, intermediate, int_key = url_chain
    leaf = _leaf(
        intermediate, int_key, dns=["short.example.com"], profile="shortlived", config=URLS
    )
    assert not _has(leaf, x509.CRLDistributionPoints)
    assert AuthorityInformationAccessOID.OCSP not in _aia(leaf)


@pytest.mark.parametrize("name", ["tls-client", "device"])
def test_client_kinds_carry_a_common_name_and_no_san(chain: Chain, name: str) -> None:
    _, intermediate, int_key = chain
    leaf = _leaf(
        intermediate, int_key, dns=[], profile=name, common_name="Device 00:1b:21:3c",
        subject_key=generate_private_key(RSA_2048),
    )  # fmt: skip
    assert leaf.subject == x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "Device 00:1b:21:3c")]
    )
    assert not _has(leaf, x509.SubjectAlternativeName)
    with pytest.raises(CAError) as info:
        _leaf(intermediate, int_key, dns=[], profile=name)  # no name at all
    assert info.value.kind == "malformed"
    for bad in ("x" * 65, "", " padded", "tab\there"):
        with pytest.raises(CAError) as info:
            _leaf(intermediate, int_key, dns=[], profile=name, common_name=bad)
        assert info.value.kind == "malformed"


def test_profile_key_types(chain: Chain) -> None:
    _, intermediate, int_key = chain
    config = CONFIG.with_profiles(ProfileConfig("ec-only", "device", 30, key_types=(EC_P384,)))
    leaf = _leaf(
        intermediate, int_key, dns=["d.example"], profile="ec-only", config=config,
        subject_key=generate_private_key(EC_P384),
    )  # fmt: skip
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    for key in (generate_private_key(EC_P256), generate_private_key(RSA_2048)):
        with pytest.raises(CAError) as info:
            _leaf(
                intermediate, int_key, dns=["d.example"], profile="ec-only", config=config,
                subject_key=key,
            )  # fmt: skip
        assert info.value.kind == "policy" and "does not accept" in info.value.detail


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


# --- validity ----------------------------------------------------------------------------------


def test_requested_validity_window(chain: Chain) -> None:
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


def test_fractional_validity(chain: Chain) -> None:
    _, intermediate, _ = chain
    config = CONFIG.with_profiles(ProfileConfig("half-week", "shortlived", 3.5))
    nb, na = LeafProfile(_profile(config, "half-week"), config).validity(NOW, issuer=intermediate)
    assert na - nb + dt.timedelta(seconds=1) == dt.timedelta(days=3, hours=12)


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


def test_leaf_may_not_outlive_its_issuer(chain: Chain) -> None:
    _, intermediate, _ = chain
    late = intermediate.not_valid_after_utc - dt.timedelta(days=10)
    with pytest.raises(CAError) as info:
        TLSServerProfile(CONFIG).validity(late, issuer=intermediate)
    assert info.value.kind == "internal"


def test_no_names_and_too_many_names(chain: Chain) -> None:
    _, intermediate, int_key = chain
    with pytest.raises(CAError) as info:
        _leaf(intermediate, int_key, dns=[])
    assert info.value.kind == "malformed"
    with pytest.raises(CAError) as info:
        _leaf(intermediate, int_key, dns=[f"n{i}.example" for i in range(101)])
    assert info.value.kind == "policy"


# --- configuration -----------------------------------------------------------------------------


def test_config_validation() -> None:
    with pytest.raises(CAError):
        CAConfig(key_algorithm="dsa-1024")
    with pytest.raises(CAError):
        CAConfig(leaf_validity_days=0)
    with pytest.raises(CAError):
        CAConfig(country="usa")
    assert CAConfig(key_algorithm="rsa-3072").key_algorithm == "rsa-3072"


def test_default_profiles() -> None:
    assert CONFIG.profiles is DEFAULT_PROFILES
    by_name = {p.name: p for p in DEFAULT_PROFILES}
    assert set(by_name) == {"tls-server", "tls-client", "device", "shortlived"}
    assert by_name["tls-server"].ekus == ("serverAuth",) and by_name["tls-server"].include_crl_dp
    assert by_name["tls-client"].ekus == ("clientAuth",)
    assert by_name["tls-client"].validity_days == 365
    assert by_name["device"].ekus == ("clientAuth",) and by_name["device"].validity_days == 730
    assert {"rsa-2048", "ec-p256"} <= set(by_name["device"].key_types)
    short = by_name["shortlived"]
    assert short.validity_days == 6 and not short.include_crl_dp and not short.include_ocsp_aia
    assert not any(p.include_ocsp_aia for p in DEFAULT_PROFILES)
    assert CONFIG.default_profile == "tls-server"


def test_leaf_validity_days_sets_the_default_tls_server_validity() -> None:
    config = CAConfig(leaf_validity_days=30)
    assert _profile(config, "tls-server").validity_days == 30
    assert config.profiles == default_profiles(30)
    explicit = CAConfig(leaf_validity_days=30, profiles=default_profiles(60))
    assert _profile(explicit, "tls-server").validity_days == 60


def test_a_400_day_tls_server_profile_is_accepted_by_configuration() -> None:
    # Refused per certificate by the linter, before signing (tests/integration/test_ca_lint.py).
    config = CONFIG.with_profiles(ProfileConfig("tls-server", "tls-server", 400))
    assert _profile(config, "tls-server").validity_days == 400


@pytest.mark.parametrize(
    "make",
    [
        lambda: ProfileConfig("short", "shortlived", 7.5),  # BR §1.6.1: at most 7 days
        lambda: ProfileConfig("zero", "tls-server", 0),
        lambda: ProfileConfig("nan", "tls-server", float("nan")),
        lambda: ProfileConfig("Bad Name", "tls-server", 90),
        lambda: ProfileConfig("kind", "code-signing", 90),  # type: ignore[arg-type]
        lambda: ProfileConfig("keys", "device", 90, key_types=("dsa-1024",)),
        lambda: ProfileConfig("keys", "device", 90, key_types=()),
        lambda: ProfileConfig("eku", "tls-server", 90, ekus=("clientAuth",)),
        lambda: ProfileConfig("eku", "device", 90, ekus=("serverAuth", "clientAuth")),
        lambda: ProfileConfig("eku", "device", 90, ekus=("emailProtection",)),
        lambda: CONFIG.with_profiles(ProfileConfig("tls-server", "tls-server", 2000)),
        lambda: dataclasses.replace(CONFIG, default_profile="device"),
        lambda: dataclasses.replace(CONFIG, default_profile="missing"),
        lambda: dataclasses.replace(CONFIG, profiles=DEFAULT_PROFILES + DEFAULT_PROFILES[:1]),
        lambda: dataclasses.replace(CONFIG, crl_base_url="https://crl.example"),
        lambda: dataclasses.replace(CONFIG, ocsp_url="ocsp.example"),
        lambda: dataclasses.replace(CONFIG, ca_issuers_url="http://x.example/?q=1"),
    ],
)
def test_bad_profile_configuration(make: object) -> None:
    with pytest.raises(CAError) as info:
        make()  # type: ignore[operator]
    assert info.value.kind == "malformed"


def test_server_profile_may_add_client_auth() -> None:
    profile = ProfileConfig("both", "tls-server", 90, ekus=("serverAuth", "clientAuth"))
    assert profile.ekus == ("serverAuth", "clientAuth")
