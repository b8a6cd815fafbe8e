"""Certificate profiles: what goes into each kind of certificate the CA signs.

A profile turns validated inputs into an unsigned ``x509.CertificateBuilder``; signing happens in
``ca.der`` through the key backend. Rules cite RFC 5280 and the CA/B Forum Baseline Requirements
(BR, v2 numbering) - certyard's CA is private, but following the BR profile keeps its certificates
acceptable to every TLS client.
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
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.config import CAConfig
from ca.errors import CAError

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


def _ca_name(config: CAConfig, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, config.organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ski(issuer: x509.Certificate) -> x509.SubjectKeyIdentifier:
    try:
        return issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise CAError("internal", "issuer certificate has no subjectKeyIdentifier") from None


def _ca_key_usage(*, digital_signature: bool) -> x509.KeyUsage:
    # RFC 5280 §4.2.1.3 / BR §7.1.2.10.7: a CA certificate asserts keyCertSign and cRLSign.
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


class RootCAProfile:
    """The self-signed root (BR §7.1.2.1)."""

    name: ClassVar[str] = "root-ca"

    def __init__(self, config: CAConfig) -> None:
        self._config = config

    def build(
        self, *, public_key: PublicKeyTypes, serial: int, now: datetime
    ) -> x509.CertificateBuilder:
        key = check_ca_key(public_key)
        not_before = _whole_seconds(now) - timedelta(seconds=self._config.backdate_seconds)
        name = _ca_name(self._config, self._config.root_common_name)
        return (
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
            .add_extension(_ca_key_usage(digital_signature=False), critical=True)
            # RFC 5280 §4.2.1.2 (method 1); no AKI needed on a self-signed cert (§4.2.1.1).
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        )


class IntermediateCAProfile:
    """The issuing CA below the root (BR §7.1.2.6, TLS subordinate CA)."""

    name: ClassVar[str] = "intermediate-ca"

    def __init__(self, config: CAConfig) -> None:
        self._config = config

    def build(
        self, *, public_key: PublicKeyTypes, serial: int, issuer: x509.Certificate, now: datetime
    ) -> x509.CertificateBuilder:
        key = check_ca_key(public_key)
        not_before = _whole_seconds(now) - timedelta(seconds=self._config.backdate_seconds)
        not_after = min(
            not_before + timedelta(days=self._config.intermediate_validity_days) - _ONE_SECOND,
            issuer.not_valid_after_utc,
        )
        return (
            x509.CertificateBuilder()
            .subject_name(_ca_name(self._config, self._config.intermediate_common_name))
            .issuer_name(issuer.subject)
            .public_key(key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            # RFC 5280 §4.2.1.9: pathLen 0 - this CA issues end-entity certificates only.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            # digitalSignature too, so this CA can sign OCSP responses itself (BR §7.1.2.10.7).
            .add_extension(_ca_key_usage(digital_signature=True), critical=True)
            # BR §7.1.2.6: a TLS subordinate CA carries an EKU with serverAuth and MAY add
            # clientAuth. The EKU confines a compromised issuing key to TLS; clientAuth is here
            # because EST enrols device (client) certificates through the same issuing CA.
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(issuer)),
                critical=False,
            )
        )


class TLSServerProfile:
    """A DV TLS server certificate (BR §7.1.2.7)."""

    name: ClassVar[str] = "tls-server"

    def __init__(self, config: CAConfig) -> None:
        self._config = config

    @property
    def max_validity(self) -> timedelta:
        # notBefore through notAfter inclusive (RFC 5280 §4.1.2.5): N days end one second early.
        return timedelta(days=self._config.leaf_validity_days) - _ONE_SECOND

    def validity(
        self,
        now: datetime,
        *,
        issuer: x509.Certificate,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> tuple[datetime, datetime]:
        """The validity window: the default (backdated now + leaf_validity_days) or the requested
        bounds (RFC 8555 §7.4 notBefore/notAfter), which must fit the profile."""
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
                "policy", f"validity exceeds the {self._config.leaf_validity_days}-day maximum"
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
        serial: int,
        not_before: datetime,
        not_after: datetime,
    ) -> x509.CertificateBuilder:
        """Build the leaf. ``dns_names`` must come from :func:`normalize_dns_names` and
        ``ip_addresses`` from :func:`parse_ip_addresses`."""
        key = check_subscriber_key(public_key)
        if not dns_names and not ip_addresses:
            raise CAError("malformed", "a TLS server certificate needs at least one name")
        if len(dns_names) + len(ip_addresses) > MAX_NAMES:
            raise CAError("policy", f"at most {MAX_NAMES} names per certificate")
        # BR §7.1.2.7.2: a DV subject holds at most the commonName, which repeats a SAN value.
        # We use the first DNS name when it fits ub-common-name, else an empty subject.
        cn = dns_names[0] if dns_names and len(dns_names[0]) <= MAX_COMMON_NAME else None
        subject = x509.Name([] if cn is None else [x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        sans += [x509.IPAddress(address) for address in ip_addresses]
        is_rsa = isinstance(key, rsa.RSAPublicKey)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.subject)
            .public_key(key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            # RFC 5280 §4.2.1.6: critical when the subject is empty.
            .add_extension(x509.SubjectAlternativeName(sans), critical=cn is None)
            # RFC 5280 §4.2.1.3, BR §7.1.2.7.11: digitalSignature; keyEncipherment only for RSA
            # (RSA key transport in TLS 1.2); critical.
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=is_rsa,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            # BR §7.1.2.7.10: serverAuth (this profile is for servers only); not critical.
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            # RFC 5280 §4.2.1.9: cA false, critical.
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
            # RFC 5280 §4.2.1.1: the AKI carries the issuer's SKI.
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(issuer)),
                critical=False,
            )
        )
