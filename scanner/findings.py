"""Findings: what is wrong with a chain a server sent, as stable codes with a severity.

Codes (stable: reports, SARIF rule ids and the inventory use them):

=================  ========  ==============================================================
code               severity  meaning
=================  ========  ==============================================================
expired            high      now is after notAfter (RFC 5280 §4.1.2.5), any certificate sent
not_yet_valid      high      now is before notBefore
expiring_soon      medium    notAfter within the threshold (default 30 days)
self_signed        medium    the leaf is issued by itself (implies an untrusted chain, which
                             is then not reported again)
untrusted_chain    high      no path from the leaf to a trust anchor (system store, certyard's
                             root, --trust roots)
incomplete_chain   medium    a path exists only with an intermediate the server did not send
                             (RFC 8446 §4.4.2: the server sends the chain up to the anchor)
hostname_mismatch  high      the SNI name is not in the leaf's subjectAltName (RFC 6125 §6.4;
                             no fallback to the CN, RFC 9525 §6.3)
weak_key           high      RSA (or DSA) below 2048 bits, EC below 256 bits
sha1_signature     medium    signed with SHA-1 (not checked on self-signatures: a trust
                             anchor's own signature is not relied on, RFC 5280 §6.1.1 (d))
bad_certificate    high      the server sent bytes that do not parse as a certificate
deprecated_tls_    medium    the endpoint negotiates TLS 1.0 or 1.1 (RFC 8996); found by a
version                      separate handshake (runner.py), reported on the no-SNI row
=================  ========  ==============================================================

Chain validation is path building with signature checks (``verify_directly_issued_by``), done
at a time inside the leaf's validity: expiry, weak keys and SHA-1 are their own findings, so a
chain is not also "untrusted" for them. cryptography's ``PolicyBuilder`` (CA/B Forum web PKI
profile) was tried and not used: it rejects RSA-1024, SHA-1 and expired certificates outright,
which would turn each of those into a second, misleading ``untrusted_chain``.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MAX_DEPTH = 8


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


SEVERITY: dict[str, Severity] = {
    "expired": Severity.HIGH,
    "not_yet_valid": Severity.HIGH,
    "expiring_soon": Severity.MEDIUM,
    "self_signed": Severity.MEDIUM,
    "untrusted_chain": Severity.HIGH,
    "incomplete_chain": Severity.MEDIUM,
    "hostname_mismatch": Severity.HIGH,
    "weak_key": Severity.HIGH,
    "sha1_signature": Severity.MEDIUM,
    "bad_certificate": Severity.HIGH,
    "deprecated_tls_version": Severity.MEDIUM,
    "revoked": Severity.HIGH,
    "ssh_weak_host_key": Severity.HIGH,
    "ssh_cert_expired": Severity.HIGH,
}

DESCRIPTION: dict[str, str] = {
    "expired": "Certificate has expired",
    "not_yet_valid": "Certificate is not yet valid",
    "expiring_soon": "Certificate expires soon",
    "self_signed": "Self-signed leaf certificate",
    "untrusted_chain": "Chain does not lead to a trusted root",
    "incomplete_chain": "Server does not send a needed intermediate certificate",
    "hostname_mismatch": "Certificate does not cover the requested name",
    "weak_key": "Weak public key",
    "sha1_signature": "Certificate signed with SHA-1",
    "bad_certificate": "Unparsable certificate",
    "deprecated_tls_version": "Endpoint accepts TLS 1.0 or 1.1",
    "revoked": "Endpoint serves a certificate certyard has revoked",
    "ssh_weak_host_key": "SSH host key is weak (DSA, or RSA below 2048 bits)",
    "ssh_cert_expired": "SSH host certificate has expired",
}


@dataclass(frozen=True)
class Finding:
    code: str
    detail: str
    cert_sha256: str | None = None  # the certificate it concerns (None: the endpoint)

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.code]


@dataclass
class TrustStore:
    """Anchors (roots) and a pool of known intermediates for completing a chain."""

    anchors: list[x509.Certificate] = field(default_factory=list)
    intermediates: list[x509.Certificate] = field(default_factory=list)
    # Path verdicts by chain (DER tuple): one certificate served on many addresses (a load
    # balancer pool, a wildcard) has its signatures checked once per scan, not once per endpoint.
    # Bounded, so memory does not grow with the range.
    verdicts: dict[tuple[bytes, ...], str] = field(default_factory=dict, repr=False, compare=False)

    def add(self, certs: Iterable[x509.Certificate], *, roots_only: bool = False) -> None:
        for cert in certs:
            if roots_only or _self_signed(cert):
                self.anchors.append(cert)
            else:
                self.intermediates.append(cert)

    @classmethod
    def load(cls, extra: Sequence[Path] = (), *, system: Path | None = SYSTEM_BUNDLE) -> TrustStore:
        """System bundle (every certificate an anchor), then extra PEM files, in which
        self-signed certificates are anchors and the others known intermediates."""
        store = cls()
        if system is not None and system.is_file():
            store.add(load_pem_bundle(system.read_bytes()), roots_only=True)
        for path in extra:
            store.add(load_pem_bundle(path.read_bytes()))
        return store


def load_pem_bundle(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle; one that does not parse is skipped, not fatal
    (system bundles carry a few old roots that strict RFC 5280 parsing warns about)."""
    certs = []
    end = b"-----END CERTIFICATE-----"
    for block in data.split(end)[:-1]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                certs.append(x509.load_pem_x509_certificate(block + end))
            except ValueError:
                continue
    return certs


def sha256_hex(der: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


def key_description(cert: x509.Certificate) -> tuple[str, int]:
    """("rsa", 2048), ("ec", 256), ("ed25519", 256) ..."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 456
    return "unknown", 0


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # cryptography's X.509 verifier refuses SHA-1 (and other legacy) signature
        # algorithms; the primitives still verify them, and sha1_signature reports the weakness.
        return _legacy_signature_ok(cert, issuer)
    return True


def _legacy_signature_ok(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    algorithm = cert.signature_hash_algorithm
    key = issuer.public_key()
    if algorithm is None:
        return False
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and _issued_by(cert, cert)


def _has_path(leaf: x509.Certificate, pool: list[x509.Certificate], store: TrustStore) -> bool:
    """RFC 5280 §6.1 path building, names and signatures only (times are findings)."""
    current, used = leaf, {leaf.fingerprint(hashes.SHA256())}
    anchor_prints = {a.fingerprint(hashes.SHA256()) for a in store.anchors}
    for _ in range(MAX_DEPTH):
        if current.fingerprint(hashes.SHA256()) in anchor_prints:
            return True
        if any(_issued_by(current, a) for a in store.anchors if a.subject == current.issuer):
            return True
        nxt = next(
            (
                c
                for c in pool
                if c.fingerprint(hashes.SHA256()) not in used and _issued_by(current, c)
            ),
            None,
        )
        if nxt is None:
            return False
        used.add(nxt.fingerprint(hashes.SHA256()))
        current = nxt
    return False


def _matches(name: str, pattern: str) -> bool:
    # RFC 6125 §6.4.3: a wildcard only as the whole left-most label, matching one label.
    name, pattern = name.lower().rstrip("."), pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return name == pattern


def hostname_matches(cert: x509.Certificate, name: str) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return any(_matches(name, dns) for dns in san.get_values_for_type(x509.DNSName))
    return ip in san.get_values_for_type(x509.IPAddress)


def _position(i: int) -> str:
    return "leaf" if i == 0 else f"chain[{i}]"


_VERDICTS_KEPT = 4096
_PARSED_KEPT = 4096


@functools.lru_cache(maxsize=_PARSED_KEPT)
def parse_der(der: bytes) -> x509.Certificate:
    """A parsed certificate, cached: a scan meets the same certificates on many endpoints."""
    return x509.load_der_x509_certificate(der)


def _verdict(key: tuple[bytes, ...], certs: list[x509.Certificate], store: TrustStore) -> str:
    """ "self_signed", "trusted", "incomplete_chain" or "untrusted_chain" for a chain."""
    cached = store.verdicts.get(key)
    if cached is not None:
        return cached
    leaf = certs[0]
    if _self_signed(leaf):
        verdict = "self_signed"
    elif _has_path(leaf, certs[1:], store):
        verdict = "trusted"
    elif _has_path(leaf, certs[1:] + store.intermediates, store):
        verdict = "incomplete_chain"
    else:
        verdict = "untrusted_chain"
    if len(store.verdicts) >= _VERDICTS_KEPT:
        store.verdicts.clear()
    store.verdicts[key] = verdict
    return verdict


def evaluate(
    chain_der: Sequence[bytes],
    sni: str | None,
    store: TrustStore,
    now: dt.datetime,
    expiring_days: float = 30,
) -> list[Finding]:
    """Every finding for one handshake's chain (leaf first), in a stable order."""
    certs: list[x509.Certificate] = []
    out: list[Finding] = []
    for i, der in enumerate(chain_der):
        try:
            certs.append(parse_der(der))
        except ValueError as exc:
            out.append(Finding("bad_certificate", f"{_position(i)}: {exc}", sha256_hex(der)))
            return out
    if not certs:
        return out
    soon = dt.timedelta(days=expiring_days)
    for i, cert in enumerate(certs):
        fp = sha256_hex(chain_der[i])
        where = _position(i)
        after, before = cert.not_valid_after_utc, cert.not_valid_before_utc
        if now > after:
            out.append(Finding("expired", f"{where} expired {after.isoformat()}", fp))
        elif now < before:
            out.append(Finding("not_yet_valid", f"{where} valid from {before.isoformat()}", fp))
        elif after - now <= soon:
            out.append(Finding("expiring_soon", f"{where} expires {after.isoformat()}", fp))
        kind, bits = key_description(cert)
        if (kind in ("rsa", "dsa") and bits < 2048) or (kind == "ec" and bits < 256):
            out.append(Finding("weak_key", f"{where} has a {kind.upper()}-{bits} key", fp))
        algorithm = cert.signature_hash_algorithm
        if isinstance(algorithm, hashes.SHA1) and not _self_signed(cert):
            out.append(Finding("sha1_signature", f"{where} is signed with SHA-1", fp))
    leaf, leaf_fp = certs[0], sha256_hex(chain_der[0])
    verdict = _verdict(tuple(chain_der), certs, store)
    if verdict == "self_signed":
        out.append(
            Finding("self_signed", f"issuer and subject: {leaf.subject.rfc4514_string()}", leaf_fp)
        )
    elif verdict == "incomplete_chain":
        out.append(
            Finding(
                "incomplete_chain",
                f"the issuer {leaf.issuer.rfc4514_string()} is known but was not sent",
                leaf_fp,
            )
        )
    elif verdict == "untrusted_chain":
        out.append(
            Finding(
                "untrusted_chain",
                f"no trusted root for issuer {certs[-1].issuer.rfc4514_string()}",
                leaf_fp,
            )
        )
    if sni is not None and not hostname_matches(leaf, sni):
        out.append(Finding("hostname_mismatch", f"{sni} is not in the subjectAltName", leaf_fp))
    return out


def evaluate_ssh(host_keys: Sequence[dict[str, Any]], now: dt.datetime) -> list[Finding]:
    """Findings for one SSH endpoint's host keys (scanner/ssh_probe.py descriptions)."""
    out: list[Finding] = []
    for key in host_keys:
        # NIST SP 800-131A / OpenSSH 7.0+: DSA (1024-bit by definition, FIPS 186-2) and RSA
        # below 2048 bits are too weak for host keys.
        if key["type"] == "dsa" or (key["type"] == "rsa" and key["bits"] < 2048):
            out.append(
                Finding(
                    "ssh_weak_host_key",
                    f"{key['algorithm']} host key of {key['bits']} bits",
                    key["sha256"],
                )
            )
        cert = key.get("certificate")
        if cert is not None:
            before = dt.datetime.fromisoformat(cert["valid_before"])
            if now > before:
                out.append(
                    Finding(
                        "ssh_cert_expired",
                        f"host certificate {cert['key_id']!r} expired {before.isoformat()}",
                        cert["sha256"],
                    )
                )
    return out
