"""Settings of the first CA and its certificate profiles (the wiring layer fills these from
certyard's settings)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Literal, get_args
from urllib.parse import urlsplit

from ca.errors import CAError
from ca.keys import KEY_ALGORITHMS

ProfileKind = Literal["tls-server", "tls-client", "device", "shortlived"]
PROFILE_KINDS: tuple[str, ...] = get_args(ProfileKind)
# Kinds whose certificates assert serverAuth and are linted against the CA/B Forum TLS BRs.
SERVER_KINDS: frozenset[str] = frozenset({"tls-server", "shortlived"})

SERVER_AUTH = "serverAuth"
CLIENT_AUTH = "clientAuth"
EKU_NAMES: tuple[str, ...] = (SERVER_AUTH, CLIENT_AUTH)

# BR §1.6.1 "Short-lived Subscriber Certificate": for certificates issued on or after
# 2026-03-15 a validity period of at most 7 days (604,800 seconds). Only such certificates may
# omit revocation information (BR §7.1.2.11.2).
MAX_SHORTLIVED_DAYS = 7.0
_PROFILE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?\Z")
_COUNTRY = re.compile(r"[A-Z]{2}\Z")


@dataclass(frozen=True)
class ProfileConfig:
    """One kind of end-entity certificate the CA issues.

    ``validity_days`` counts notBefore through notAfter inclusive (RFC 5280 §4.1.2.5) and may be
    fractional (e.g. 6.5 for a short-lived profile). ``ekus`` left empty is derived from
    ``kind``. A tls-server validity above the BR maximum is *not* refused here: the linter
    refuses each such certificate before it is signed.
    """

    name: str
    kind: ProfileKind
    validity_days: float
    key_types: tuple[str, ...] = KEY_ALGORITHMS
    ekus: tuple[str, ...] = ()
    include_crl_dp: bool = True
    # The CA/B Forum made OCSP optional and CRLs mandatory (BR §4.9.7, §7.1.2.11.2, SC-063).
    include_ocsp_aia: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not _PROFILE_NAME.match(self.name):
            raise CAError("malformed", f"profile name {self.name!r} must be 1-64 of [a-z0-9-]")
        if self.kind not in PROFILE_KINDS:
            raise CAError("malformed", f"profile {self.name}: unknown kind {self.kind!r}")
        if not (math.isfinite(self.validity_days) and self.validity_days > 0):
            raise CAError("malformed", f"profile {self.name}: validity must be positive")
        if self.kind == "shortlived" and self.validity_days > MAX_SHORTLIVED_DAYS:
            raise CAError(
                "malformed",
                f"profile {self.name}: short-lived certificates are valid at most "
                f"{MAX_SHORTLIVED_DAYS:g} days (BR §1.6.1)",
            )
        if not self.key_types or not set(self.key_types) <= set(KEY_ALGORITHMS):
            raise CAError(
                "malformed",
                f"profile {self.name}: key_types must be a non-empty subset of "
                f"{', '.join(KEY_ALGORITHMS)}",
            )
        ekus = self.ekus or _default_ekus(self.kind)
        if not set(ekus) <= set(EKU_NAMES) or len(set(ekus)) != len(ekus):
            raise CAError(
                "malformed", f"profile {self.name}: ekus must be distinct values of {EKU_NAMES}"
            )
        if self.kind in SERVER_KINDS and SERVER_AUTH not in ekus:
            # BR §7.1.2.7.10: a TLS server certificate asserts id-kp-serverAuth.
            raise CAError("malformed", f"profile {self.name}: a {self.kind} profile is serverAuth")
        if self.kind not in SERVER_KINDS and ekus != (CLIENT_AUTH,):
            # A serverAuth certificate must go through the BR lint: use a tls-server profile.
            raise CAError("malformed", f"profile {self.name}: a {self.kind} profile is clientAuth")
        object.__setattr__(self, "ekus", tuple(ekus))

    @property
    def is_server(self) -> bool:
        return self.kind in SERVER_KINDS


def _default_ekus(kind: str) -> tuple[str, ...]:
    return (SERVER_AUTH,) if kind in SERVER_KINDS else (CLIENT_AUTH,)


def default_profiles(tls_server_days: float = 90) -> tuple[ProfileConfig, ...]:
    """The built-in profiles; ``tls_server_days`` sets the tls-server validity."""
    return (
        ProfileConfig(
            name="tls-server",
            kind="tls-server",
            validity_days=tls_server_days,
            description="DV TLS server certificate (BR §7.1.2.7), e.g. issued over ACME",
        ),
        ProfileConfig(
            name="tls-client",
            kind="tls-client",
            validity_days=365,
            description="TLS client certificate (RFC 5280), clientAuth only",
        ),
        ProfileConfig(
            name="device",
            kind="device",
            validity_days=730,
            description="EST device certificate (RFC 7030), clientAuth, CN = device id",
        ),
        ProfileConfig(
            name="shortlived",
            kind="shortlived",
            validity_days=6,
            # BR §7.1.2.11.2: a short-lived subscriber certificate may omit both CRL DP and
            # OCSP; it simply expires before revocation would propagate.
            include_crl_dp=False,
            description="short-lived DV TLS server certificate (BR §1.6.1), no revocation info",
        ),
    )


DEFAULT_PROFILES = default_profiles()
_DEFAULT_LEAF_DAYS = 90


def _check_http_url(name: str, value: str | None) -> None:
    """BR §7.1.2.11.2 (CRL DP) and §7.1.2.7.7 / §7.1.2.10.3 (AIA): HTTP URLs, not HTTPS - a
    relying party fetching revocation data over TLS would need revocation data first."""
    if value is None:
        return
    parts = urlsplit(value)
    if parts.scheme != "http" or not parts.hostname or parts.query or parts.fragment:
        raise CAError("malformed", f"{name} must be a plain http:// URL, not {value!r}")


@dataclass(frozen=True)
class CAConfig:
    """Hierarchy, profile, URL and lint parameters.

    Validity periods are in days and count notBefore through notAfter inclusive (RFC 5280
    §4.1.2.5, CA/B Forum BR §1.6.1 "Validity Period"). ``leaf_validity_days`` predates
    ``profiles``: it sets the tls-server validity while ``profiles`` is left at its default.

    URLs: ``crl_base_url`` puts ``{crl_base_url}/crl/{issuer_id}.crl`` in CRL Distribution
    Points (profiles with ``include_crl_dp``); ``ocsp_url`` goes in AIA id-ad-ocsp (profiles with
    ``include_ocsp_aia``); ``ca_issuers_url`` puts ``{ca_issuers_url}/ca/{issuer_id}.crt`` (the
    issuer's DER certificate, RFC 5280 §4.2.2.1) in AIA id-ad-caIssuers of every certificate.
    """

    key_algorithm: str = "ec-p256"
    organization: str = "certyard"
    # BR §7.1.2.10.2: CA certificates carry countryName; "XX" until the operator sets theirs.
    country: str = "XX"
    root_common_name: str = "certyard Root CA"
    intermediate_common_name: str = "certyard Issuing CA 1"
    root_validity_days: int = 3650
    intermediate_validity_days: int = 1825
    leaf_validity_days: int = _DEFAULT_LEAF_DAYS
    # Tolerate clients whose clock runs a little behind ours (BR §7.1.2.7 allows up to 48 hours).
    backdate_seconds: int = 60
    profiles: tuple[ProfileConfig, ...] = DEFAULT_PROFILES
    default_profile: str = "tls-server"
    crl_base_url: str | None = None
    ocsp_url: str | None = None
    ca_issuers_url: str | None = None
    # Lint every certificate before it is signed (ca.lint); off only for benchmarks.
    lint: bool = True
    # RFC 5280 §5.2.5: split each issuer's CRL into this many partitions by serial.
    crl_shards: int = 1
    # BR §4.2.2 forbids Internal Names / Reserved IP addresses in publicly-trusted certificates;
    # certyard is a private CA, so by default they are no reason to refuse a certificate.
    allow_internal_names: bool = True

    def __post_init__(self) -> None:
        if self.key_algorithm not in KEY_ALGORITHMS:
            raise CAError(
                "malformed",
                f"unknown CA key algorithm {self.key_algorithm!r}; "
                f"choose one of {', '.join(KEY_ALGORITHMS)}",
            )
        if not 0 < self.leaf_validity_days < self.intermediate_validity_days:
            raise CAError("malformed", "leaf validity must be positive and shorter than the CA's")
        if self.intermediate_validity_days > self.root_validity_days:
            raise CAError("malformed", "the intermediate must not outlive the root")
        if not 0 <= self.backdate_seconds <= 48 * 3600:
            raise CAError("malformed", "backdate_seconds must be between 0 and 48 hours")
        for value in (self.organization, self.root_common_name, self.intermediate_common_name):
            # RFC 5280 Appendix A: ub-common-name / ub-organization-name are 64 characters.
            if not 0 < len(value) <= 64:
                raise CAError("malformed", "CA names must be 1 to 64 characters long")
        if not _COUNTRY.match(self.country):  # BR §7.1.4.2: ISO 3166-1 alpha-2 (or XX)
            raise CAError("malformed", "country must be a two-letter ISO 3166-1 code")
        if self.profiles is DEFAULT_PROFILES and self.leaf_validity_days != _DEFAULT_LEAF_DAYS:
            object.__setattr__(self, "profiles", default_profiles(self.leaf_validity_days))
        self._check_profiles()
        _check_http_url("crl_base_url", self.crl_base_url)
        _check_http_url("ocsp_url", self.ocsp_url)
        _check_http_url("ca_issuers_url", self.ca_issuers_url)

    def _check_profiles(self) -> None:
        names = [profile.name for profile in self.profiles]
        if len(set(names)) != len(names):
            raise CAError("malformed", "profile names must be unique")
        for profile in self.profiles:
            if profile.validity_days >= self.intermediate_validity_days:
                raise CAError("malformed", f"profile {profile.name} outlives the issuing CA")
        default = self.profile(self.default_profile)
        if default is None or not default.is_server:
            raise CAError(
                "malformed", f"default_profile {self.default_profile!r} must be a server profile"
            )

    def profile(self, name: str) -> ProfileConfig | None:
        return next((profile for profile in self.profiles if profile.name == name), None)

    def with_profiles(self, *profiles: ProfileConfig) -> CAConfig:
        """A copy with ``profiles`` replacing (same name) or joining the current profiles."""
        by_name = {profile.name: profile for profile in self.profiles}
        by_name.update({profile.name: profile for profile in profiles})
        return replace(self, profiles=tuple(by_name.values()))
