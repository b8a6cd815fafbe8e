"""Key ceremonies: which CA keys and certificates to create, and how CA certificates look.

A ceremony names a root and the issuing intermediates below it: for each, the key (algorithm,
label), the subject (CN, O, C), the validity, the path length and - for intermediates - name
constraints (RFC 5280 §4.2.1.10). It comes from a TOML file (``certyard ca init --ceremony``,
see conf/examples/ceremony.toml) or from the defaults (:func:`default_ceremony`): a root and
one intermediate per chain, an ECDSA chain and an RSA chain, so that subscribers get a chain of
their own key's type as Let's Encrypt does. ``ca.hierarchy`` carries it out.

CA certificates follow the BR profiles: root §7.1.2.1, TLS subordinate CA §7.1.2.6 - and with
name constraints, technically constrained TLS subordinate CA §7.1.2.5. pkilint lints each one
before it is signed (ca.lint). Issuance checks every leaf against its issuer's name constraints
before signing (:func:`check_name_constraints`), so a leaf outside them is never signed.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    CertificatePoliciesOID,
    ExtendedKeyUsageOID,
    NameOID,
)
from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, ValidationError

from ca.config import CAConfig
from ca.errors import CAError
from ca.keys import EC_P384, KEY_ALGORITHMS, RSA_3072
from ca.lint import INTERMEDIATE_CA, ROOT_CA, Linter
from ca.profiles import ca_issuers_uri, check_ca_key, crl_url, normalize_dns_names

Chain = Literal["ecdsa", "rsa"]
CHAINS: tuple[Chain, ...] = ("ecdsa", "rsa")
ROOT = "root"
INTERMEDIATE = "intermediate"
ROOT_ID = "root-1"
FIRST_INTERMEDIATE_ID = "int-1"
# The key of a chain's intermediate when ``ca.key_algorithm`` is of the other type: P-384 as
# in Let's Encrypt's ECDSA hierarchy; RSA-3072 because a 5-year CA made now outlives 2030,
# after which NIST SP 800-131A / IR 8547 deprecate 112-bit (RSA-2048) security.
OTHER_CHAIN_ALGORITHM: dict[Chain, str] = {"ecdsa": EC_P384, "rsa": RSA_3072}
ISSUER_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?\Z")
# Prefixes of rows that are not CA certificates of a ceremony (ca.ocsp_signer, alternates).
_RESERVED_PREFIXES = ("ocsp-", "alt-")
_MAX_NAME = 64  # RFC 5280 Appendix A: ub-common-name, ub-organization-name
_ONE_SECOND = timedelta(seconds=1)
_TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)$")


def chain_of(algorithm: str) -> Chain:
    """The chain a key algorithm belongs to: "ec-*" keys ECDSA, "rsa-*" keys RSA."""
    if algorithm.startswith("ec"):
        return "ecdsa"
    if algorithm.startswith("rsa"):
        return "rsa"
    raise CAError("malformed", f"key algorithm {algorithm!r} belongs to no chain")


@dataclass(frozen=True)
class CASpec:
    """One CA certificate to create: its key and what its certificate says."""

    role: str  # ROOT | INTERMEDIATE
    algorithm: str
    subject: x509.Name
    validity_days: int
    id: str | None = None  # None: the next free "int-N"
    label: str | None = None  # the key's label in the backend; None: "<id>-<random>"
    path_length: int | None = None
    name_constraints: x509.NameConstraints | None = None

    @property
    def chain(self) -> Chain:
        return chain_of(self.algorithm)


@dataclass(frozen=True)
class AlternateChainSpec:
    """A PEM bundle to offer as an alternate chain of an intermediate (RFC 8555 §7.4.2)."""

    intermediate: str | None  # None: the intermediate whose key the first certificate names
    pem: bytes
    source: str


@dataclass(frozen=True)
class Ceremony:
    root: CASpec | None
    intermediates: tuple[CASpec, ...]
    alternate_chains: tuple[AlternateChainSpec, ...] = ()


def ca_name(common_name: str, organization: str, country: str) -> x509.Name:
    # BR §7.1.2.10.2: countryName, organizationName and commonName, in the §7.1.4.2 order.
    for value in (common_name, organization):
        if not 0 < len(value) <= _MAX_NAME:
            raise CAError("malformed", f"CA name {value!r} must be 1 to {_MAX_NAME} characters")
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def default_intermediate(config: CAConfig, chain: Chain) -> CASpec:
    """The default intermediate of ``chain``: the first (``int-1``) has ``ca.key_algorithm`` and
    ``intermediate_common_name`` as every release before chains did; the other chain's is
    named after its algorithm and has :data:`OTHER_CHAIN_ALGORITHM`."""
    first = chain_of(config.key_algorithm) == chain
    name = (
        config.intermediate_common_name
        if first
        else f"{config.organization} {'ECDSA' if chain == 'ecdsa' else 'RSA'} Issuing CA 1"
    )
    return CASpec(
        role=INTERMEDIATE,
        algorithm=config.key_algorithm if first else OTHER_CHAIN_ALGORITHM[chain],
        subject=ca_name(name[:_MAX_NAME], config.organization, config.country),
        validity_days=config.intermediate_validity_days,
        id=FIRST_INTERMEDIATE_ID if first else None,
        path_length=0,
    )


def default_ceremony(config: CAConfig, chains: tuple[Chain, ...] = CHAINS) -> Ceremony:
    """A root with ``ca.key_algorithm`` and one intermediate per chain, the chain of the root's
    algorithm first (it is ``int-1``, the default chain)."""
    root = CASpec(
        role=ROOT,
        algorithm=config.key_algorithm,
        subject=ca_name(config.root_common_name, config.organization, config.country),
        validity_days=config.root_validity_days,
        id=ROOT_ID,
    )
    ordered = sorted(chains, key=lambda chain: chain != chain_of(config.key_algorithm))
    return Ceremony(root, tuple(default_intermediate(config, chain) for chain in ordered))


def successor(certificate: x509.Certificate, algorithm: str) -> CASpec:
    """The spec of an intermediate replacing ``certificate`` (rotation): same organization,
    country, key algorithm, validity, path length and name constraints; the trailing number of
    its commonName counts up ("... CA 1" -> "... CA 2"), or " 2" is appended."""
    attributes = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(attributes[0].value) if attributes else "certyard Issuing CA"
    match = _TRAILING_NUMBER.match(common_name)
    if match:
        common_name = f"{match.group(1)}{int(match.group(2)) + 1}"
    else:
        common_name = f"{common_name[: _MAX_NAME - 2]} 2"
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[-_MAX_NAME:])
            if attribute.oid == NameOID.COMMON_NAME
            else attribute
            for attribute in certificate.subject
        ]
    )
    period = certificate.not_valid_after_utc - certificate.not_valid_before_utc + _ONE_SECOND
    extensions = certificate.extensions
    try:
        path_length = extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except x509.ExtensionNotFound:
        path_length = 0
    try:
        constraints: x509.NameConstraints | None = extensions.get_extension_for_class(
            x509.NameConstraints
        ).value
    except x509.ExtensionNotFound:
        constraints = None
    return CASpec(
        role=INTERMEDIATE,
        algorithm=algorithm,
        subject=subject,
        validity_days=max(1, round(period / timedelta(days=1))),
        path_length=path_length,
        name_constraints=constraints,
    )


# --- the CA certificate profile -----------------------------------------------------------------


def _key_usage(*, digital_signature: bool) -> x509.KeyUsage:
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


def ca_certificate(
    spec: CASpec,
    *,
    public_key: PublicKeyTypes,
    serial: int,
    now: datetime,
    config: CAConfig,
    issuer: x509.Certificate | None = None,
    issuer_id: str | None = None,
) -> x509.CertificateBuilder:
    """The unsigned CA certificate of ``spec``: self-signed root when ``issuer`` is None, else
    an intermediate of ``issuer`` (whose id names its CRL and certificate URLs)."""
    key = check_ca_key(public_key)
    not_before = now.astimezone(UTC).replace(microsecond=0) - timedelta(
        seconds=config.backdate_seconds
    )
    # RFC 5280 §4.1.2.5: validity counted inclusively; never past the issuer's (§6.1).
    not_after = not_before + timedelta(days=spec.validity_days) - _ONE_SECOND
    if issuer is not None:
        not_after = min(not_after, issuer.not_valid_after_utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject)
        .issuer_name(spec.subject if issuer is None else issuer.subject)
        .public_key(key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        # RFC 5280 §4.2.1.9: cA true, critical; pathLenConstraint from the ceremony (none on a
        # root by default, 0 on an intermediate: it issues end-entity certificates only).
        .add_extension(x509.BasicConstraints(ca=True, path_length=spec.path_length), critical=True)
        .add_extension(ski, critical=False)  # RFC 5280 §4.2.1.2 (method 1)
    )
    if issuer is None:
        # BR §7.1.2.1: keyCertSign and cRLSign only; the AKI (RECOMMENDED) is its own SKI.
        return builder.add_extension(
            _key_usage(digital_signature=False), critical=True
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    if issuer_id is None:
        raise CAError("internal", "an intermediate needs its issuer's id")
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        # digitalSignature too, so the CA could sign OCSP responses itself (BR §7.1.2.10.7).
        builder.add_extension(_key_usage(digital_signature=True), critical=True)
        # BR §7.1.2.6: serverAuth, and clientAuth for EST device certificates.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        # BR §7.1.2.10.5: an affiliated CA may assert anyPolicy, alone.
        .add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(CertificatePoliciesOID.ANY_POLICY, None)]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
            critical=False,
        )
    )
    if spec.name_constraints is not None:
        # RFC 5280 §4.2.1.10: "Conforming CAs MUST mark this extension as critical".
        builder = builder.add_extension(spec.name_constraints, critical=True)
    # BR §7.1.2.11.2 (CRL DP) and §7.1.2.10.3 (AIA caIssuers), once the URLs are configured.
    if config.crl_base_url is not None:
        url = x509.UniformResourceIdentifier(crl_url(config.crl_base_url, issuer_id))
        builder = builder.add_extension(
            x509.CRLDistributionPoints([x509.DistributionPoint([url], None, None, None)]),
            critical=False,
        )
    if config.ca_issuers_url is not None:
        location = x509.UniformResourceIdentifier(ca_issuers_uri(config.ca_issuers_url, issuer_id))
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, location)]
            ),
            critical=False,
        )
    return builder


def lint_ca_certificate(
    config: CAConfig, builder: x509.CertificateBuilder, signer_algorithm: str, role: str
) -> None:
    """Lint before sign (blocking; run it in a thread): refuses on any pkilint error."""
    if not config.lint:
        return
    target = ROOT_CA if role == ROOT else INTERMEDIATE_CA
    _, report = Linter(config).draft_and_lint(builder, signer_algorithm, target)
    if report is not None:
        report.enforce(profile=target)


# --- name constraints (RFC 5280 §4.2.1.10) -----------------------------------------------------


def name_constraints(
    subject: x509.Name,
    permitted_dns: list[str],
    excluded_dns: list[str],
    permitted_ip: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    excluded_ip: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> x509.NameConstraints:
    """BR §7.1.2.5.2 (technically constrained TLS CA): permitted dNSName subtrees; iPAddress
    permitted, else every IPv4 and IPv6 address excluded; a permitted directoryName - the CA's
    own country and organization, so subscriber subjects stay under its name."""
    if not permitted_dns:
        raise CAError("malformed", "name constraints need at least one permitted DNS subtree")
    permitted: list[x509.GeneralName] = [x509.DNSName(name) for name in _dns_bases(permitted_dns)]
    permitted += [x509.IPAddress(network) for network in permitted_ip]
    organization = [
        attribute
        for attribute in subject
        if attribute.oid in (NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME)
    ]
    permitted.append(x509.DirectoryName(x509.Name(organization)))
    excluded: list[x509.GeneralName] = [x509.DNSName(name) for name in _dns_bases(excluded_dns)]
    networks = excluded_ip or (
        [] if permitted_ip else [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    )
    excluded += [x509.IPAddress(network) for network in networks]
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded)


def _dns_bases(names: list[str]) -> list[str]:
    for name in names:
        if name.startswith(("*", ".")):
            raise CAError("malformed", f"DNS name constraint {name!r}: write the bare domain")
    return normalize_dns_names(names)


def _dns_within(name: str, base: str) -> bool:
    # RFC 5280 §4.2.1.10: names made by adding labels to the left of the base are within it.
    base = base.lower()
    if base.startswith("."):  # the URI-style form some CAs use: subdomains only
        return name.endswith(base)
    return not base or name == base or name.endswith("." + base)


def _dn_within(subject: x509.Name, base: x509.Name) -> bool:
    return list(subject.rdns)[: len(base.rdns)] == list(base.rdns)


def check_name_constraints(issuer: x509.Certificate, certificate: x509.Certificate) -> None:
    """Refuse (CAError "policy") a certificate the issuer's name constraints do not allow:
    the same rules a relying party applies in path validation (RFC 5280 §6.1.3 (b), (c)),
    and a wildcard is also refused when an excluded name lies under it."""
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return
    permitted = list(constraints.permitted_subtrees or [])
    excluded = list(constraints.excluded_subtrees or [])
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = list(extension.value)
    except x509.ExtensionNotFound:
        sans = []
    outside: list[str] = []
    for name in sans:
        if isinstance(name, x509.DNSName):
            if not _dns_allowed(name.value, permitted, excluded):
                outside.append(name.value)
        elif isinstance(name, x509.IPAddress) and not _ip_allowed(name.value, permitted, excluded):
            outside.append(str(name.value))
    if len(certificate.subject) and not _subject_allowed(certificate.subject, permitted, excluded):
        outside.append(certificate.subject.rfc4514_string())
    if outside:
        raise CAError(
            "policy",
            "outside the issuing CA's name constraints (RFC 5280 §4.2.1.10): " + ", ".join(outside),
        )


def _dns_allowed(
    name: str, permitted: list[x509.GeneralName], excluded: list[x509.GeneralName]
) -> bool:
    name = name.lower()
    bases = [subtree.value for subtree in permitted if isinstance(subtree, x509.DNSName)]
    if bases and not any(_dns_within(name, base) for base in bases):
        return False
    parent = name[2:] if name.startswith("*.") else None
    for subtree in excluded:
        if isinstance(subtree, x509.DNSName):
            base = subtree.value.lower().lstrip(".")
            if _dns_within(name, subtree.value) or (parent and base.endswith("." + parent)):
                return False
    return True


def _ip_allowed(
    address: object, permitted: list[x509.GeneralName], excluded: list[x509.GeneralName]
) -> bool:
    if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return False  # a network in a SAN: not something certyard issues
    networks = [s.value for s in permitted if isinstance(s, x509.IPAddress)]
    if networks and not any(_contains(network, address) for network in networks):
        return False
    return not any(_contains(s.value, address) for s in excluded if isinstance(s, x509.IPAddress))


def _contains(network: object, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return network.version == address.version and address in network
    return False


def _subject_allowed(
    subject: x509.Name, permitted: list[x509.GeneralName], excluded: list[x509.GeneralName]
) -> bool:
    bases = [s.value for s in permitted if isinstance(s, x509.DirectoryName)]
    if bases and not any(_dn_within(subject, base) for base in bases):
        return False
    return not any(
        _dn_within(subject, s.value) for s in excluded if isinstance(s, x509.DirectoryName)
    )


# --- the ceremony file --------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _KeyFile(_Strict):
    algorithm: Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"]
    label: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class _SubjectFile(_Strict):
    common_name: str = Field(alias="CN", min_length=1, max_length=_MAX_NAME)
    organization: str | None = Field(default=None, alias="O", min_length=1, max_length=_MAX_NAME)
    country: str | None = Field(default=None, alias="C", pattern=r"^[A-Z]{2}$")


class _NameConstraintsFile(_Strict):
    permitted_dns: list[str] = Field(min_length=1)
    excluded_dns: list[str] = Field(default_factory=list)
    permitted_ip: list[IPvAnyNetwork] = Field(default_factory=list)
    excluded_ip: list[IPvAnyNetwork] = Field(default_factory=list)


class _CAFile(_Strict):
    id: str | None = None
    key: _KeyFile
    subject: _SubjectFile
    validity_days: int | None = Field(default=None, ge=1, le=9131)  # at most 25 years
    path_length: int | None = Field(default=None, ge=0, le=8)
    name_constraints: _NameConstraintsFile | None = None


class _AlternateFile(_Strict):
    intermediate: str | None = None
    pem_file: Path


class _CeremonyFile(_Strict):
    root: _CAFile | None = None
    intermediates: list[_CAFile] = Field(default_factory=list)
    alternate_chains: list[_AlternateFile] = Field(default_factory=list)


def load_ceremony(path: Path, config: CAConfig) -> Ceremony:
    """Read and check a ceremony file; CAError "malformed" names the offending entry."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CAError("malformed", f"cannot read ceremony file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CAError("malformed", f"ceremony file {path}: {exc}") from None
    try:
        parsed = _CeremonyFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CAError("malformed", f"ceremony file {path}: {where}: {first['msg']}") from None
    try:
        return _ceremony(parsed, path.parent, config)
    except CAError as exc:
        raise CAError("malformed", f"ceremony file {path}: {exc.detail}") from None


def _ceremony(parsed: _CeremonyFile, base: Path, config: CAConfig) -> Ceremony:
    root = None if parsed.root is None else _spec(parsed.root, ROOT, config, "root")
    intermediates = tuple(
        _spec(entry, INTERMEDIATE, config, f"intermediates[{n}]")
        for n, entry in enumerate(parsed.intermediates)
    )
    chains = [spec.chain for spec in intermediates]
    if len(set(chains)) != len(chains):
        raise CAError("malformed", "one intermediate per chain (ecdsa, rsa) and ceremony")
    ids = [spec.id for spec in (root, *intermediates) if spec is not None and spec.id]
    if len(set(ids)) != len(ids):
        raise CAError("malformed", "CA ids must be unique")
    if root is not None and not intermediates:
        raise CAError("malformed", "a root needs at least one intermediate")
    for spec in intermediates:
        if root is not None and spec.validity_days > root.validity_days:
            name = spec.subject.rfc4514_string()
            raise CAError("malformed", f"intermediate {name} outlives the root")
    alternates = []
    for entry in parsed.alternate_chains:
        location = entry.pem_file if entry.pem_file.is_absolute() else base / entry.pem_file
        try:
            pem = location.read_bytes()
        except OSError as exc:
            raise CAError("malformed", f"cannot read {location}: {exc.strerror}") from None
        alternates.append(AlternateChainSpec(entry.intermediate, pem, str(location)))
    return Ceremony(root, intermediates, tuple(alternates))


def _spec(entry: _CAFile, role: str, config: CAConfig, where: str) -> CASpec:
    if entry.id is not None and (
        not ISSUER_ID.match(entry.id) or entry.id.startswith(_RESERVED_PREFIXES)
    ):
        raise CAError("malformed", f"{where}.id {entry.id!r}: 1-32 of [a-z0-9-], not ocsp-/alt-")
    if entry.key.algorithm not in KEY_ALGORITHMS:  # pragma: no cover - the Literal refuses it
        raise CAError("malformed", f"{where}.key.algorithm is unknown")
    subject = ca_name(
        entry.subject.common_name,
        entry.subject.organization or config.organization,
        entry.subject.country or config.country,
    )
    constraints = None
    if entry.name_constraints is not None:
        if role == ROOT:
            raise CAError("malformed", "name constraints belong on intermediates, not the root")
        nc = entry.name_constraints
        constraints = name_constraints(
            subject, nc.permitted_dns, nc.excluded_dns, list(nc.permitted_ip), list(nc.excluded_ip)
        )
    if role == ROOT and entry.path_length == 0:
        raise CAError("malformed", "root.path_length 0 would forbid every intermediate")
    default_days = config.root_validity_days if role == ROOT else config.intermediate_validity_days
    return CASpec(
        role=role,
        algorithm=entry.key.algorithm,
        subject=subject,
        validity_days=entry.validity_days or default_days,
        id=entry.id,
        label=entry.key.label,
        path_length=entry.path_length if role == ROOT or entry.path_length is not None else 0,
        name_constraints=constraints,
    )
