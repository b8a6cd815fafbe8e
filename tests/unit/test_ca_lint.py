"""ca.lint: pkilint on the lint certificate, with certyard's acceptance rules."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.config import CAConfig, ProfileConfig
from ca.errors import CAError
from ca.keys import EC_P256, EC_P384, RSA_2048
from ca.lint import INTERMEDIATE_CA, ROOT_CA, Linter, LintReport, lint_certificate_for
from ca.profiles import (
    IntermediateCAProfile,
    LeafProfile,
    RootCAProfile,
    normalize_dns_names,
    parse_ip_addresses,
)
from ca.software_keys import SoftwarePrivateKey, generate_private_key

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
BASE = "http://pki.certyard.example.com"
URLS = CAConfig(crl_base_url=BASE, ca_issuers_url=BASE)
BARE = CAConfig()
Chain = tuple[x509.Certificate, x509.Certificate, SoftwarePrivateKey]


def _chain(config: CAConfig, algorithm: str = EC_P256) -> Chain:
    root_key, int_key = generate_private_key(algorithm), generate_private_key(algorithm)
    digest = hashes.SHA384() if algorithm == EC_P384 else hashes.SHA256()
    root = RootCAProfile(config).build(public_key=root_key.public_key(), serial=2**158 + 1, now=NOW)
    root_cert = root.sign(root_key, digest)
    intermediate = IntermediateCAProfile(config).build(
        public_key=int_key.public_key(), serial=2**158 + 2, issuer=root_cert, now=NOW
    )
    return root_cert, intermediate.sign(root_key, digest), int_key


@pytest.fixture(scope="module")
def chain() -> Chain:
    return _chain(URLS)


def _builder(
    config: CAConfig,
    intermediate: x509.Certificate,
    *,
    profile: str = "tls-server",
    dns: tuple[str, ...] = ("www.example.com",),
    ips: tuple[str, ...] = (),
    common_name: str | None = None,
    key: SoftwarePrivateKey | None = None,
) -> tuple[x509.CertificateBuilder, ProfileConfig]:
    profile_config = config.profile(profile)
    assert profile_config is not None
    leaf = LeafProfile(profile_config, config)
    not_before, not_after = leaf.validity(NOW, issuer=intermediate)
    builder = leaf.build(
        public_key=(key or generate_private_key(EC_P256)).public_key(),
        dns_names=normalize_dns_names(dns),
        ip_addresses=parse_ip_addresses(ips),
        common_name=common_name,
        issuer=intermediate,
        issuer_id="int-1",
        serial=2**158 + 3,
        not_before=not_before,
        not_after=not_after,
    )
    return builder, profile_config


def _lint(config: CAConfig, intermediate: x509.Certificate, **kwargs: object) -> LintReport:
    builder, profile = _builder(config, intermediate, **kwargs)  # type: ignore[arg-type]
    _, report = Linter(config).draft_and_lint(builder, EC_P256, profile.kind, profile)
    assert report is not None
    return report


def _codes(report: LintReport) -> tuple[set[str], set[str]]:
    return {f.code for f in report.errors}, {f.code for f in report.warnings}


@pytest.mark.parametrize("key_algorithm", [EC_P256, EC_P384, RSA_2048])
@pytest.mark.parametrize("profile", ["tls-server", "shortlived", "tls-client", "device"])
def test_default_profiles_lint_clean(chain: Chain, profile: str, key_algorithm: str) -> None:
    _, intermediate, _ = chain
    report = _lint(URLS, intermediate, profile=profile, key=generate_private_key(key_algorithm))
    assert report.errors == () and report.warnings == (), report


def test_ip_and_common_name_variants_lint_clean(chain: Chain) -> None:
    _, intermediate, _ = chain
    assert _codes(_lint(URLS, intermediate, dns=(), ips=("198.51.100.7",))) == (set(), set())
    device = _lint(URLS, intermediate, profile="device", dns=(), common_name="dev-0042")
    assert _codes(device) == (set(), set())
    # A commonName on a DV certificate is allowed but not recommended: a warning, not fatal.
    named = _lint(URLS, intermediate, common_name="www.example.com")
    assert _codes(named) == (set(), {"cabf.serverauth.dv.common_name_attribute_present"})


@pytest.mark.parametrize("algorithm", [EC_P256, EC_P384, RSA_2048])
def test_ca_certificates_lint_clean(algorithm: str) -> None:
    root, intermediate, _ = _chain(URLS, algorithm)
    linter = Linter(URLS)
    for cert, target in ((root, ROOT_CA), (intermediate, INTERMEDIATE_CA)):
        report = linter.lint(cert, target)
        assert report.errors == () and report.warnings == (), report


def test_unconfigured_urls_are_recorded_warnings_not_refusals() -> None:
    root, intermediate, _ = _chain(BARE)
    report = _lint(BARE, intermediate)
    assert report.errors == ()
    assert {f.code: f.accepted for f in report.warnings} == {
        "cabf.serverauth.subscriber.revocation_information_absent": (
            "crl_base_url is not configured"
        ),
        "msft.end_entity.revocation_information_absent": "crl_base_url is not configured",
        "cabf.serverauth.subscriber.authority_info_access_extension_absent": (
            "ca_issuers_url is not configured"
        ),
    }
    assert all(f.severity == "WARNING" for f in report.warnings)
    ca_report = Linter(BARE).lint(intermediate, INTERMEDIATE_CA)
    assert _codes(ca_report) == (
        set(),
        {
            "cabf.serverauth.ca.crl_distribution_points_extension_absent",
            "cabf.serverauth.ca.authority_info_access_extension_absent",
        },
    )
    assert _codes(Linter(BARE).lint(root, ROOT_CA)) == (set(), set())


def test_a_profile_without_revocation_info_is_refused(chain: Chain) -> None:
    # Only a missing URL is accepted: a tls-server profile that omits the CRL DP on purpose
    # violates BR §7.1.2.11.2.
    config = URLS.with_profiles(ProfileConfig("tls-server", "tls-server", 90, include_crl_dp=False))
    _, intermediate, _ = chain
    errors, _ = _codes(_lint(config, intermediate))
    assert errors == {
        "cabf.serverauth.subscriber.revocation_information_absent",
        "msft.end_entity.revocation_information_absent",
    }


def test_400_day_tls_server_is_refused(chain: Chain) -> None:
    _, intermediate, _ = chain
    config = URLS.with_profiles(ProfileConfig("tls-server", "tls-server", 400))
    report = _lint(config, intermediate)
    # BR §6.3.2: 200 days for certificates issued from 2026-03-15 (398 before).
    assert _codes(report)[0] == {"cabf.serverauth.certificate_validity_period_exceeds_200_days"}
    with pytest.raises(CAError) as info:
        report.enforce()
    assert info.value.kind == "policy"
    assert info.value.detail.startswith(
        "lint: cabf.serverauth.certificate_validity_period_exceeds_200_days: Validity period of 400"
    )


def test_internal_names_follow_the_configuration(chain: Chain) -> None:
    _, intermediate, _ = chain
    assert _codes(_lint(URLS, intermediate, dns=("host.corp.internal",), ips=("10.1.2.3",))) == (
        set(),
        set(),
    )
    public_only = dataclasses.replace(URLS, allow_internal_names=False)
    errors, _ = _codes(
        _lint(public_only, intermediate, dns=("host.corp.internal",), ips=("10.1.2.3",))
    )
    assert errors == {"cabf.internal_domain_name", "cabf.internal_ip_address"}


def _key_usage_with_cert_sign() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,  # a CA bit on a subscriber certificate
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def test_a_deliberately_broken_certificate(chain: Chain) -> None:
    _, intermediate, int_key = chain
    key = generate_private_key(EC_P256)
    broken = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil Corp")]))
        .issuer_name(intermediate.subject)
        .public_key(key.public_key())
        .serial_number(2**158 + 9)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=500))
        .add_extension(_key_usage_with_cert_sign(), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CODE_SIGNING]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("www.example.com")]), critical=False
        )
        .sign(int_key, hashes.SHA256())
    )
    report = Linter(URLS).lint(broken, "tls-server")
    errors = {f.code for f in report.errors}
    assert {
        "cabf.serverauth.certificate_validity_period_exceeds_200_days",
        "cabf.serverauth.subscriber.certificate_policies_extension_absent",
        "cabf.serverauth.subscriber.authority_key_identifier_extension_absent",
        "cabf.serverauth.subscriber.codesigning_eku_present",
        "cabf.serverauth.subscriber.authority_info_access_extension_absent",
        "cabf.serverauth.subscriber.revocation_information_absent",
    } <= errors, errors
    assert all(f.severity in ("ERROR", "FATAL") for f in report.errors)
    with pytest.raises(CAError) as info:
        report.enforce()
    assert "cabf.serverauth.subscriber.codesigning_eku_present" in info.value.detail
    # The RFC 5280 suite (tls-client, device) catches the RFC-level faults.
    pkix = Linter(URLS).lint(broken, "device")
    assert {f.code for f in pkix.errors} == {
        "pkix.authority_key_identifier_extension_absent",
        "pkix.ee_certificate_keycertsign_keyusage_set",
    }
    assert {f.code for f in pkix.warnings} == {"pkix.certificate_skid_end_entity_missing"}


def test_warnings_are_logged_and_errors_name_every_code(chain: Chain) -> None:
    _, intermediate, _ = chain
    named = _lint(URLS, intermediate, common_name="www.example.com")
    with structlog.testing.capture_logs() as logs:
        named.enforce(serial="01")
    assert logs == [
        {
            "event": "lint_warnings",
            "log_level": "warning",
            "target": "tls-server",
            "findings": ["cabf.serverauth.dv.common_name_attribute_present"],
            "serial": "01",
        }
    ]


def test_lint_certificate_carries_the_builder_tbs(chain: Chain) -> None:
    _, intermediate, int_key = chain
    builder, _ = _builder(URLS, intermediate)
    first = lint_certificate_for(builder, EC_P256)
    second = lint_certificate_for(builder, EC_P256)
    real = builder.sign(int_key, hashes.SHA256())
    # Throwaway key or CA key: the TBS that is linted is the TBS that is signed.
    assert first.tbs_certificate_bytes == second.tbs_certificate_bytes == real.tbs_certificate_bytes
    assert first.signature != real.signature


def test_lint_switch(chain: Chain) -> None:
    _, intermediate, _ = chain
    off = dataclasses.replace(URLS, lint=False)
    builder, profile = _builder(
        off.with_profiles(ProfileConfig("tls-server", "tls-server", 400)), intermediate
    )
    draft, report = Linter(off).draft_and_lint(builder, EC_P256, profile.kind, profile)
    assert report is None and draft.serial_number == 2**158 + 3


def test_hierarchy_profiles_refuse_what_the_linter_refuses() -> None:
    # BR §6.3.2 caps a root's validity (25 years): the root profile lints before it is signed.
    config = dataclasses.replace(URLS, root_validity_days=9500)
    key = generate_private_key(EC_P256)
    with pytest.raises(CAError) as info:
        RootCAProfile(config).build(public_key=key.public_key(), serial=2**158 + 1, now=NOW)
    assert info.value.kind == "policy" and info.value.detail.startswith("lint: ")
