"""Certificate profiles: what goes into each kind of certificate the CA signs.

A profile turns validated inputs into an unsigned ``x509.CertificateBuilder``; signing happens
through the key backend (``ca.issuance``, ``ca.der``). The end-entity profiles come from
configuration (:class:`ca.config.ProfileConfig`); the root and intermediate profiles are fixed.
Rules cite RFC 5280 and the CA/B Forum Baseline Requirements (BR, v2 numbering) - certyard's CA
is private, but following the BR profile keeps its certificates acceptable to every TLS client.

Only the public key and the names the caller passes reach a certificate from a request: subject
attributes and extensions requested in a CSR are ignored, everything else comes from the profile.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    CertificatePoliciesOID,
    ExtendedKeyUsageOID,
    NameOID,
)

from ca.config import SERVER_AUTH, CAConfig, ProfileConfig
from ca.errors import CAError
from ca.keys import algorithm_of
from ca.lint import INTERMEDIATE_CA, ROOT_CA, Linter

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Upper bound on SAN entries per certificate (defence in depth against huge certificates; the
# same bound Let's Encrypt applies to orders).
MAX_NAMES = 100
# RFC 5280 Appendix A: ub-common-name is 64 characters.
MAX_COMMON_NAME = 64
# BR §7.1.2.7 (subscriber validity): notBefore within 48 hours of the signing operation.
MAX_NOT_BEFORE_SKEW = timedelta(hours=48)

# RFC 1034 §3.5 / RFC 1123 §2.1 "preferred name syntax" label (LDH), as RFC 5280 §4.2.1.6
# requires for dNSName (BR §7.1.2.7.12: LDH labels, so no underscores).
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_ONE_SECOND = timedelta(seconds=1)


def normalize_dns_names(names: Sequence[str]) -> list[str]:
    """Lower-case, syntax-check and de-duplicate dNSName values, keeping their order."""
    result: list[str] = []
    for raw in names:
        name = raw.lower()
        if not name.isascii() or len(name) > 253:  # RFC 1035 §2.3.4; IDNs arrive as A-labels
            raise CAError("malformed", f"invalid DNS name {raw!r}")
        labels = name.split(".")
        wildcard = labels[0] == "*"
        if wildcard:
            labels = labels[1:]
        if not labels or not all(_LABEL.match(label) for label in labels):
            raise CAError("malformed", f"invalid DNS name {raw!r}")
        if labels[-1].isdigit():  # RFC 1123 §2.1: a TLD is never all-numeric; IPs go in iPAddress
            raise CAError("malformed", f"{raw!r} looks like an IP address, not a DNS name")
        if wildcard and len(labels) < 2:  # BR §3.2.2.6: no wildcard directly under a TLD
            raise CAError("policy", f"wildcard {raw!r} covers a whole top-level domain")
        if name not in result:
            result.append(name)
    return result


def parse_ip_addresses(addresses: Sequence[str]) -> list[IPAddress]:
    result: list[IPAddress] = []
    for raw in addresses:
        try:
            address = ipaddress.ip_address(raw)
        except ValueError:
            raise CAError("malformed", f"invalid IP address {raw!r}") from None
        if address not in result:
            result.append(address)
    return result


def check_subscriber_key(public_key: PublicKeyTypes) -> CertificatePublicKeyTypes:
    """BR §6.1.5/§6.1.6: EC P-256/P-384, or RSA 2048-4096 bits (a multiple of 8), odd e >= 3."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, ec.SECP256R1 | ec.SECP384R1):
            return public_key
        raise CAError("policy", f"EC curve {public_key.curve.name} is not allowed")
    if isinstance(public_key, rsa.RSAPublicKey):
        size, exponent = public_key.key_size, public_key.public_numbers().e
        if not 2048 <= size <= 4096 or size % 8:
            raise CAError("policy", f"RSA keys must be 2048 to 4096 bits, not {size}")
        if exponent < 3 or exponent % 2 == 0:
            raise CAError("policy", "RSA public exponent must be odd and at least 3")
        return public_key
    raise CAError("policy", f"{type(public_key).__name__} keys are not allowed")


def check_ca_key(public_key: PublicKeyTypes) -> CertificatePublicKeyTypes:
    if isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return public_key
    raise CAError("internal", f"unsupported CA key type {type(public_key).__name__}")


def _whole_seconds(moment: datetime) -> datetime:
    # X.509 times carry whole seconds (RFC 5280 §4.1.2.5.1/.2); truncate so what we store and
    # return equals what the certificate says.
    if moment.tzinfo is None:
        raise CAError("malformed", "validity times must be timezone-aware")
    return moment.astimezone(UTC).replace(microsecond=0)


# The CA/B Forum reserved policy identifier for Domain Validated certificates (BR §7.1.6.1).
DV_POLICY = x509.ObjectIdentifier("2.23.140.1.2.1")
# ca.hierarchy's id of the root: the issuer of the intermediate.
ROOT_ISSUER_ID = "root-1"
_EKU_OIDS = {
    SERVER_AUTH: ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
}


def crl_url(base_url: str, issuer_id: str, shard: int | None = None) -> str:
    """The CRL of ``issuer_id`` as certificates name it in CRL Distribution Points
    (RFC 5280 §4.2.1.13): ``{base_url}/crl/{issuer_id}.crl``, or ``{base_url}/crl/{issuer_id}/
    {shard}.crl`` when CRLs are sharded; served by the CRL front end (ca/crl.py)."""
    if shard is None:
        return f"{base_url.rstrip('/')}/crl/{issuer_id}.crl"
    return f"{base_url.rstrip('/')}/crl/{issuer_id}/{shard}.crl"


def ca_issuers_uri(base_url: str, issuer_id: str) -> str:
    """The issuer's certificate (DER, ``application/pkix-cert``, RFC 5280 §4.2.2.1) as AIA
    id-ad-caIssuers names it: ``{base_url}/ca/{issuer_id}.crt``."""
    return f"{base_url.rstrip('/')}/ca/{issuer_id}.crt"


def subscriber_key_type(public_key: CertificatePublicKeyTypes) -> str:
    """The ``key_types`` name of a subscriber key ("ec-p256", "rsa-2048", ...)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}.get(
            public_key.curve.name, f"ec-{public_key.curve.name}"
        )
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"rsa-{public_key.key_size}"
    return type(public_key).__name__


def _ca_name(config: CAConfig, common_name: str) -> x509.Name:
    # BR §7.1.2.10.2 (CA subject): countryName, organizationName and commonName, in the
    # BR §7.1.4.2 order.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, config.country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, config.organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ski(issuer: x509.Certificate) -> x509.SubjectKeyIdentifier:
    try:
        return issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise CAError("internal", "issuer certificate has no subjectKeyIdentifier") from None


def _key_usage(*, digital_signature: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _aia(ocsp_url: str | None, ca_issuers: str | None) -> x509.AuthorityInformationAccess | None:
    descriptions = []
    if ocsp_url is not None:
        descriptions.append(
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
            )
        )
    if ca_issuers is not None:
        descriptions.append(
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(ca_issuers)
            )
        )
    return x509.AuthorityInformationAccess(descriptions) if descriptions else None


def _crl_dp(url: str) -> x509.CRLDistributionPoints:
    # BR §7.1.2.11.2: one DistributionPoint with a fullName of one HTTP URI, no reasons or
    # cRLIssuer.
    return x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)]
    )


def _lint_ca(
    config: CAConfig, builder: x509.CertificateBuilder, algorithm: str, target: str
) -> x509.CertificateBuilder:
    """Lint a CA certificate before the hierarchy signs it (blocking: once, at creation)."""
    if config.lint:
        _, report = Linter(config).draft_and_lint(builder, algorithm, target)
        if report is not None:
            report.enforce(profile=target)
    return builder


class RootCAProfile:
    """The self-signed root (BR §7.1.2.1). ``build`` lints the result (ca.lint)."""

    name: ClassVar[str] = ROOT_CA

    def __init__(self, config: CAConfig) -> None:
        self._config = config

    def build(
        self, *, public_key: PublicKeyTypes, serial: int, now: datetime
    ) -> x509.CertificateBuilder:
        key = check_ca_key(public_key)
        not_before = _whole_seconds(now) - timedelta(seconds=self._config.backdate_seconds)
        name = _ca_name(self._config, self._config.root_common_name)
        ski = x509.SubjectKeyIdentifier.from_public_key(key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(
                not_before + timedelta(days=self._config.root_validity_days) - _ONE_SECOND
            )
            # RFC 5280 §4.2.1.9: cA true, critical; no pathLenConstraint on the root.
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=False, ca=True), critical=True)
            # RFC 5280 §4.2.1.2 (method 1).
            .add_extension(ski, critical=False)
            # BR §7.1.2.1.3: the root's AKI is RECOMMENDED and equals its own SKI.
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
        )
        return _lint_ca(self._config, builder, algorithm_of(key), ROOT_CA)


class IntermediateCAProfile:
    """The issuing CA below the root (BR §7.1.2.6, TLS subordinate CA). ``build`` lints."""

    name: ClassVar[str] = INTERMEDIATE_CA

    def __init__(self, config: CAConfig) -> None:
        self._config = config

    def build(
        self,
        *,
        public_key: PublicKeyTypes,
        serial: int,
        issuer: x509.Certificate,
        now: datetime,
        issuer_id: str = ROOT_ISSUER_ID,
    ) -> x509.CertificateBuilder:
        config = self._config
        key = check_ca_key(public_key)
        not_before = _whole_seconds(now) - timedelta(seconds=config.backdate_seconds)
        not_after = min(
            not_before + timedelta(days=config.intermediate_validity_days) - _ONE_SECOND,
            issuer.not_valid_after_utc,
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(_ca_name(config, config.intermediate_common_name))
            .issuer_name(issuer.subject)
            .public_key(key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            # RFC 5280 §4.2.1.9: pathLen 0 - this CA issues end-entity certificates only.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            # digitalSignature too, so this CA can sign OCSP responses itself (BR §7.1.2.10.7).
            .add_extension(_key_usage(digital_signature=True, ca=True), critical=True)
            # BR §7.1.2.6: a TLS subordinate CA carries an EKU with serverAuth and MAY add
            # clientAuth. The EKU confines a compromised issuing key to TLS; clientAuth is here
            # because EST enrols device (client) certificates through the same issuing CA.
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            # BR §7.1.2.10.5: an affiliated (internal) CA may assert anyPolicy, alone.
            .add_extension(
                x509.CertificatePolicies(
                    [x509.PolicyInformation(CertificatePoliciesOID.ANY_POLICY, None)]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(issuer)),
                critical=False,
            )
        )
        # BR §7.1.2.10.3 (AIA: caIssuers SHOULD) and §7.1.2.11.2 (CRL DP MUST) - once the
        # operator has configured the URLs; the linter reports their absence until then.
        if config.crl_base_url is not None:
            builder = builder.add_extension(
                _crl_dp(crl_url(config.crl_base_url, issuer_id)), critical=False
            )
        ca_issuers = (
            None
            if config.ca_issuers_url is None
            else ca_issuers_uri(config.ca_issuers_url, issuer_id)
        )
        aia = _aia(None, ca_issuers)
        if aia is not None:
            builder = builder.add_extension(aia, critical=False)
        return _lint_ca(config, builder, algorithm_of(issuer.public_key()), INTERMEDIATE_CA)


class LeafProfile:
    """An end-entity profile built from a :class:`ProfileConfig`.

    * tls-server, shortlived (BR §7.1.2.7, DV): empty subject (BR §7.1.2.7.2 does not recommend
      a commonName) unless ``common_name`` repeats a SAN value (BR §7.1.4.3); no
      subjectKeyIdentifier (BR §7.1.2.7.6: NOT RECOMMENDED); certificatePolicies with the DV
      reserved OID (BR §7.1.2.7.9).
    * tls-client, device (RFC 5280): subject CN = ``common_name`` when given (a device id),
      SANs optional; subjectKeyIdentifier (RFC 5280 §4.2.1.2: SHOULD).
    * all: keyUsage digitalSignature (critical; BR §7.1.2.7.11 - keyEncipherment is only for
      RSA key transport, which TLS 1.3 dropped, and pkilint warns on it); EKU from the profile;
      basicConstraints cA=false (critical); AKI = the issuer's SKI; CRL DP (``include_crl_dp``
      and ``crl_base_url``); AIA OCSP (``include_ocsp_aia`` and ``ocsp_url``) and caIssuers
      (``ca_issuers_url``).
    """

    def __init__(self, profile: ProfileConfig, config: CAConfig) -> None:
        self.profile = profile
        self._config = config

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def max_validity(self) -> timedelta:
        # notBefore through notAfter inclusive (RFC 5280 §4.1.2.5): N days end one second early.
        seconds = int(self.profile.validity_days * 86400)
        return timedelta(seconds=seconds) - _ONE_SECOND

    def check_key(self, public_key: PublicKeyTypes) -> CertificatePublicKeyTypes:
        """BR §6.1.5 key checks, then the profile's ``key_types``."""
        key = check_subscriber_key(public_key)
        key_type = subscriber_key_type(key)
        if key_type not in self.profile.key_types:
            raise CAError(
                "policy",
                f"profile {self.name} does not accept {key_type} keys "
                f"(allowed: {', '.join(self.profile.key_types)})",
            )
        return key

    def validity(
        self,
        now: datetime,
        *,
        issuer: x509.Certificate,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> tuple[datetime, datetime]:
        """The validity window: the default (backdated now + the profile's validity) or the
        requested bounds (RFC 8555 §7.4 notBefore/notAfter), which must fit the profile."""
        now = _whole_seconds(now)
        earliest = now - timedelta(seconds=self._config.backdate_seconds)
        start = earliest if not_before is None else _whole_seconds(not_before)
        if start < earliest or start > now + MAX_NOT_BEFORE_SKEW:
            raise CAError("policy", "requested notBefore is too far from the time of issuance")
        end = start + self.max_validity if not_after is None else _whole_seconds(not_after)
        if end <= start or end <= now:
            raise CAError("policy", "requested notAfter is before notBefore or in the past")
        if end - start > self.max_validity:
            raise CAError(
                "policy", f"validity exceeds the {self.profile.validity_days:g}-day maximum"
            )
        if end > issuer.not_valid_after_utc:
            # RFC 5280 §6.1 would reject the leaf after its issuer expires.
            if not_after is not None:
                raise CAError("policy", "requested notAfter is after the issuing CA expires")
            raise CAError("internal", "the issuing CA expires too soon; it must be renewed")
        return start, end

    def build(
        self,
        *,
        public_key: PublicKeyTypes,
        dns_names: Sequence[str],
        ip_addresses: Sequence[IPAddress],
        issuer: x509.Certificate,
        issuer_id: str,
        serial: int,
        not_before: datetime,
        not_after: datetime,
        common_name: str | None = None,
    ) -> x509.CertificateBuilder:
        """Build the leaf. ``dns_names`` must come from :func:`normalize_dns_names` and
        ``ip_addresses`` from :func:`parse_ip_addresses`."""
        key = self.check_key(public_key)
        server = self.profile.is_server
        if len(dns_names) + len(ip_addresses) > MAX_NAMES:
            raise CAError("policy", f"at most {MAX_NAMES} names per certificate")
        subject = self._subject(dns_names, ip_addresses, common_name)
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        sans += [x509.IPAddress(address) for address in ip_addresses]
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.subject)
            .public_key(key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )
        if sans:
            # RFC 5280 §4.2.1.6: critical when the subject is empty.
            builder = builder.add_extension(
                x509.SubjectAlternativeName(sans), critical=len(subject) == 0
            )
        builder = (
            builder.add_extension(_key_usage(digital_signature=True, ca=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([_EKU_OIDS[eku] for eku in self.profile.ekus]),
                critical=False,
            )
            # RFC 5280 §4.2.1.9: cA false, critical.
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # RFC 5280 §4.2.1.1: the AKI carries the issuer's SKI.
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(issuer)),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.CertificatePolicies([x509.PolicyInformation(DV_POLICY, None)]),
                critical=False,
            )
        else:
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key), critical=False
            )
        return self._revocation_and_aia(builder, issuer_id, serial)

    def _subject(
        self,
        dns_names: Sequence[str],
        ip_addresses: Sequence[IPAddress],
        common_name: str | None,
    ) -> x509.Name:
        if common_name is None:
            if not dns_names and not ip_addresses:
                raise CAError("malformed", f"a {self.profile.kind} certificate needs a name")
            return x509.Name([])
        if self.profile.is_server:
            # BR §7.1.4.3: the commonName, if present, repeats one of the SAN values.
            values = [*dns_names, *(str(address) for address in ip_addresses)]
            if common_name.lower() not in values:
                raise CAError("policy", "the commonName must be one of the certificate's names")
            common_name = common_name.lower()
        if not 0 < len(common_name) <= MAX_COMMON_NAME or not common_name.isprintable():
            raise CAError("malformed", "the commonName must be 1 to 64 printable characters")
        if common_name != common_name.strip():
            raise CAError("malformed", "the commonName must not start or end with whitespace")
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def _revocation_and_aia(
        self, builder: x509.CertificateBuilder, issuer_id: str, serial: int
    ) -> x509.CertificateBuilder:
        config = self._config
        if self.profile.include_crl_dp and config.crl_base_url is not None:
            # With sharded CRLs, each certificate names the one shard that will list it.
            shard = serial % config.crl_shards if config.crl_shards > 1 else None
            builder = builder.add_extension(
                _crl_dp(crl_url(config.crl_base_url, issuer_id, shard)), critical=False
            )
        ocsp = config.ocsp_url if self.profile.include_ocsp_aia else None
        ca_issuers = (
            None
            if config.ca_issuers_url is None
            else ca_issuers_uri(config.ca_issuers_url, issuer_id)
        )
        aia = _aia(ocsp, ca_issuers)
        return builder if aia is None else builder.add_extension(aia, critical=False)


class TLSServerProfile(LeafProfile):
    """The configuration's default TLS server profile (``CAConfig.default_profile``)."""

    def __init__(self, config: CAConfig) -> None:
        profile = config.profile(config.default_profile)
        if profile is None:  # CAConfig refuses this; kept for the type checker
            raise CAError("internal", f"no profile {config.default_profile!r}")
        super().__init__(profile, config)
