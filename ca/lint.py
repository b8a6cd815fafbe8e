"""Lint before sign: pkilint checks every certificate before a CA key signs it.

The certificate is first built as a *lint certificate*: cryptography's builder signed by a
throwaway key of the issuer's algorithm. Its TBSCertificate is exactly what the CA key will sign
(the throwaway signature only differs outside the TBS), so linting it lints the real thing.

Which pkilint suite:

* tls-server and shortlived: the CA/B Forum TLS Baseline Requirements validators for a DV
  final subscriber certificate (``serverauth_constants.CertificateType.DV_FINAL_CERTIFICATE``),
  with pkilint's default serverauth finding filters;
* tls-client and device: the RFC 5280 certificate validators (``pkilint.pkix``);
* root-ca and intermediate-ca: the BR validators for the type ``determine_certificate_type``
  detects (ROOT_CA, INTERNAL_UNCONSTRAINED_TLS_CA).

FATAL and ERROR findings refuse the certificate (``CAError("policy", "lint: <code>: ...")``);
WARNINGs are logged and recorded; NOTICE and INFO are ignored. A few refusals are *accepted*
because of what certyard is (see :meth:`Linter.accepted`); they are documented in docs/ca.md.

pkilint builds a validator suite in ~170 ms, so suites are built once per process and shared;
linting one certificate then takes a few milliseconds. Callers on the event loop run
:meth:`Linter.draft_and_lint` in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pkilint import finding_filter, loader
from pkilint.cabf import serverauth
from pkilint.cabf.serverauth import serverauth_constants
from pkilint.pkix import certificate as pkix_certificate
from pkilint.pkix import extension as pkix_extension
from pkilint.pkix import name as pkix_name
from pkilint.validation import ValidationFindingSeverity
from pyasn1.error import PyAsn1Error

from ca.config import SERVER_KINDS, CAConfig, ProfileConfig
from ca.errors import CAError
from ca.keys import signature_hash
from ca.software_keys import SoftwarePrivateKey, generate_private_key

log = structlog.get_logger("certyard.ca")

ROOT_CA = "root-ca"
INTERMEDIATE_CA = "intermediate-ca"
_CertType = serverauth_constants.CertificateType
_PKIX_SUITE = "rfc5280"


@dataclass(frozen=True)
class Finding:
    severity: str  # "FATAL" | "ERROR" | "WARNING"
    code: str
    message: str | None
    path: str
    accepted: str | None = None  # why a refusal was accepted (then severity is WARNING)

    def __str__(self) -> str:
        text = self.code if not self.message else f"{self.code}: {self.message}"
        return text if self.accepted is None else f"{text} (accepted: {self.accepted})"


@dataclass(frozen=True)
class LintReport:
    target: str
    errors: tuple[Finding, ...]
    warnings: tuple[Finding, ...]
    elapsed_ms: float

    def enforce(self, **context: Any) -> None:
        """Log the warnings; raise ``CAError("policy")`` naming every error."""
        if self.warnings:
            warnings = [str(warning) for warning in self.warnings]
            log.warning("lint_warnings", target=self.target, findings=warnings, **context)
        if self.errors:
            errors = [str(error) for error in self.errors]
            log.warning("lint_refused", target=self.target, findings=errors, **context)
            raise CAError("policy", "lint: " + "; ".join(errors))


@dataclass(frozen=True)
class _Acceptance:
    reason: str
    record: bool  # True: keep it as a warning (a configuration gap); False: drop it (by design)


@dataclass
class _Suite:
    validator: Any
    filters: list[Any]
    lock: threading.Lock


_suites: dict[str, _Suite] = {}
_suites_lock = threading.Lock()
_draft_keys: dict[str, SoftwarePrivateKey] = {}
_draft_keys_lock = threading.Lock()


def _suite(name: str, certificate_type: Any) -> _Suite:
    with _suites_lock:
        suite = _suites.get(name)
        if suite is None:
            if certificate_type is None:
                suite = _Suite(_pkix_validator(), [], threading.Lock())
            else:
                validator = pkix_certificate.create_pkix_certificate_validator_container(
                    serverauth.create_decoding_validators(),
                    serverauth.create_validators(certificate_type),
                )
                filters = serverauth.create_serverauth_finding_filters(certificate_type)
                suite = _Suite(validator, list(filters), threading.Lock())
            _suites[name] = suite
        return suite


def _pkix_validator() -> Any:
    # The same suite as pkilint's lint_pkix_cert command: RFC 5280 only.
    return pkix_certificate.create_pkix_certificate_validator_container(
        pkix_certificate.create_decoding_validators(
            pkix_name.ATTRIBUTE_TYPE_MAPPINGS, pkix_extension.EXTENSION_MAPPINGS
        ),
        [
            pkix_certificate.create_issuer_validator_container([]),
            pkix_certificate.create_validity_validator_container(),
            pkix_certificate.create_subject_validator_container([]),
            pkix_certificate.create_extensions_validator_container([]),
            pkix_certificate.create_spki_validator_container([]),
        ],
    )


def lint_certificate_for(builder: x509.CertificateBuilder, algorithm: str) -> x509.Certificate:
    """The lint certificate: ``builder`` signed by a throwaway key of ``algorithm`` (one per
    algorithm per process; its signature never leaves the CA). Its ``tbs_certificate_bytes``
    are what the CA key signs - the signature AlgorithmIdentifier in the TBS (RFC 5280
    §4.1.2.3) depends only on ``algorithm``."""
    with _draft_keys_lock:
        key = _draft_keys.get(algorithm)
        if key is None:
            key = _draft_keys[algorithm] = generate_private_key(algorithm)
    return builder.sign(key, signature_hash(algorithm))


class Linter:
    """pkilint with certyard's acceptance rules for one :class:`CAConfig`. Thread-safe."""

    def __init__(self, config: CAConfig) -> None:
        self._config = config

    def draft_and_lint(
        self,
        builder: x509.CertificateBuilder,
        algorithm: str,
        target: str,
        profile: ProfileConfig | None = None,
    ) -> tuple[x509.Certificate, LintReport | None]:
        """Build the lint certificate and lint it (unless linting is off); blocking."""
        draft = lint_certificate_for(builder, algorithm)
        if not self._config.lint:
            return draft, None
        return draft, self.lint(draft, target, profile)

    def lint(
        self, certificate: x509.Certificate, target: str, profile: ProfileConfig | None = None
    ) -> LintReport:
        """Lint ``certificate`` as a ``target`` (a profile kind, "root-ca" or
        "intermediate-ca"); ``profile`` is the leaf profile it was built by."""
        start = time.perf_counter()
        der = certificate.public_bytes(Encoding.DER)
        try:
            document = loader.load_der_certificate(der, target)
            findings = self._run(document, target)
        except (ValueError, PyAsn1Error) as exc:
            raise CAError("internal", "pkilint cannot decode the lint certificate", exc) from exc
        accepted = self.accepted(target, profile)
        errors: list[Finding] = []
        warnings: list[Finding] = []
        for finding in findings:
            acceptance = accepted.get(finding.code)
            if finding.severity == "WARNING":
                warnings.append(finding)
            elif acceptance is None:
                errors.append(finding)
            elif acceptance.record:
                warnings.append(replace(finding, severity="WARNING", accepted=acceptance.reason))
        return LintReport(
            target=target,
            errors=tuple(errors),
            warnings=tuple(warnings),
            elapsed_ms=(time.perf_counter() - start) * 1000,
        )

    def _run(self, document: Any, target: str) -> list[Finding]:
        extra: list[Finding] = []
        if target in SERVER_KINDS:
            certificate_type = _CertType.DV_FINAL_CERTIFICATE
            detected = serverauth.determine_certificate_type(document)
            if detected != certificate_type:
                message = f"detected {detected}, expected {certificate_type}"
                code = "certyard.lint.certificate_type_mismatch"
                extra.append(Finding("ERROR", code, message, "certificate"))
            suite = _suite(str(certificate_type), certificate_type)
        elif target in (ROOT_CA, INTERMEDIATE_CA):
            certificate_type = serverauth.determine_certificate_type(document)
            if (certificate_type == _CertType.ROOT_CA) != (target == ROOT_CA):
                raise CAError("internal", f"a {target} certificate linted as {certificate_type}")
            suite = _suite(str(certificate_type), certificate_type)
        else:
            suite = _suite(_PKIX_SUITE, None)
        with suite.lock:
            results = suite.validator.validate(document.root)
        if suite.filters:
            results, _ = finding_filter.filter_results(suite.filters, results)
        findings = [
            Finding(
                description.finding.severity.name,
                str(description.finding.code),
                None if description.message is None else str(description.message),
                str(result.node.path),
            )
            for result in results
            for description in result.finding_descriptions
            if description.finding.severity <= ValidationFindingSeverity.WARNING
        ]
        return extra + findings

    def accepted(self, target: str, profile: ProfileConfig | None) -> Mapping[str, _Acceptance]:
        """The pkilint refusals certyard accepts for ``target``, by finding code:

        * Internal Names and Reserved IP addresses (BR §4.2.2, §7.1.2.7.12) while
          ``allow_internal_names``: certyard is a private CA for internal networks. Dropped.
        * Microsoft Root Program 3.A.5's revocation-information rule on a short-lived profile
          without CRL DP or OCSP: BR §7.1.2.11.2 exempts short-lived certificates. Dropped.
        * Absent revocation information (BR §7.1.2.11.2) or AIA (BR §7.1.2.7.7, §7.1.2.10.3)
          while the URL that would fill it is not configured: a configuration gap that the
          operator closes by setting ``crl_base_url`` / ``ca_issuers_url``. Kept as a warning.
        """
        config = self._config
        accepted: dict[str, _Acceptance] = {}
        if config.allow_internal_names:
            internal = _Acceptance("allow_internal_names: certyard is a private CA", record=False)
            accepted["cabf.internal_domain_name"] = internal
            accepted["cabf.internal_ip_address"] = internal
        no_crl = config.crl_base_url is None
        if target == INTERMEDIATE_CA and no_crl:
            accepted["cabf.serverauth.ca.crl_distribution_points_extension_absent"] = _Acceptance(
                "crl_base_url is not configured", record=True
            )
        if profile is None or not profile.is_server:
            return accepted
        ocsp = profile.include_ocsp_aia and config.ocsp_url is not None
        if profile.kind == "shortlived" and not profile.include_crl_dp and not ocsp:
            accepted["msft.end_entity.revocation_information_absent"] = _Acceptance(
                "BR §7.1.2.11.2: short-lived certificates may omit revocation info", record=False
            )
        elif profile.include_crl_dp and no_crl and not ocsp:
            gap = _Acceptance("crl_base_url is not configured", record=True)
            accepted["cabf.serverauth.subscriber.revocation_information_absent"] = gap
            accepted["msft.end_entity.revocation_information_absent"] = gap
        if config.ca_issuers_url is None and not ocsp:
            accepted["cabf.serverauth.subscriber.authority_info_access_extension_absent"] = (
                _Acceptance("ca_issuers_url is not configured", record=True)
            )
        return accepted
