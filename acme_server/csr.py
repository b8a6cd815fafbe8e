"""Finalize: decode and check the CSR of an order (RFC 8555 §7.4).

The CSR must prove possession of an acceptable key, must not reuse the account key, and must
name exactly the identifiers of the order. Parsing and signature checking are cryptography's;
this module applies the policy and answers ``badCSR`` (or ``malformed`` for a broken field).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from acme_server.errors import AcmeError, Subproblem, malformed
from acme_server.jws import decode_b64url


@dataclass(frozen=True)
class KeyPolicy:
    """Subject keys accepted for TLS server certificates.

    Ed25519 is absent on purpose: the CA/Browser Forum Baseline Requirements (§6.1.5) allow
    only RSA and ECDSA P-256/P-384/P-521 subject keys, and browsers do not accept EdDSA.
    """

    ec_curves: frozenset[str] = frozenset({"secp256r1", "secp384r1"})
    rsa_min_bits: int = 2048
    rsa_max_bits: int = 4096


DEFAULT_KEY_POLICY = KeyPolicy()

# Baseline Requirements §7.1.3.2: SHA-1 and MD5 signatures are not acceptable.
_SIGNATURE_HASHES = frozenset({"sha256", "sha384", "sha512"})


@dataclass(frozen=True)
class CheckedCSR:
    csr: x509.CertificateSigningRequest
    der: bytes
    dns_names: tuple[str, ...]  # lower-cased, sorted, unique; includes the CN if present
    ip_addresses: tuple[str, ...]  # compressed text form, sorted, unique


def _bad(detail: str, subproblems: list[Subproblem] | None = None) -> AcmeError:
    return AcmeError("badCSR", detail, subproblems=subproblems or [])


def _load(der: bytes) -> x509.CertificateSigningRequest:
    try:
        return x509.load_der_x509_csr(der)
    except ValueError as exc:
        raise _bad("CSR is not a DER-encoded PKCS#10 request") from exc


def decode_csr_field(value: str) -> bytes:
    """RFC 8555 §7.4: "csr" is the base64url (unpadded) DER of a PKCS#10 request (RFC 2986)."""
    der = decode_b64url(value, '"csr"')
    if not der:
        raise malformed('"csr" is empty')
    _load(der)
    return der


def _check_key(csr: x509.CertificateSigningRequest, policy: KeyPolicy) -> bytes:
    """Apply the key policy; return the CSR key's SubjectPublicKeyInfo DER."""
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise _bad("key type not allowed: unsupported public key") from exc
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in policy.ec_curves:
            raise _bad(f"key type not allowed: EC {key.curve.name}")
    elif isinstance(key, rsa.RSAPublicKey):
        if not policy.rsa_min_bits <= key.key_size <= policy.rsa_max_bits:
            raise _bad(f"key type not allowed: RSA {key.key_size} bits")
    else:
        raise _bad(f"key type not allowed: {type(key).__name__.removesuffix('PublicKey')}")
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _check_signature(csr: x509.CertificateSigningRequest) -> None:
    try:
        hash_algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise _bad("CSR signature algorithm is not supported") from exc
    if hash_algorithm is None or hash_algorithm.name not in _SIGNATURE_HASHES:
        name = "none" if hash_algorithm is None else hash_algorithm.name
        raise _bad(f"CSR signature hash {name} is not allowed")
    # RFC 2986 §3: the signature proves possession of the private key.
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise _bad("CSR signature is invalid")


def _normalize_ip(text: str) -> str:
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return text


def _names(csr: x509.CertificateSigningRequest) -> tuple[set[str], set[str]]:
    """The DNS names and IP addresses the CSR asks for (SANs, plus a CN that repeats one)."""
    try:
        extensions = csr.extensions
        common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise _bad("CSR extensions or subject cannot be parsed") from exc
    try:
        general_names = list(extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        general_names = []
    dns: set[str] = set()
    ips: set[str] = set()
    for general_name in general_names:
        if isinstance(general_name, x509.DNSName) and general_name.value:
            dns.add(general_name.value.lower())
        elif isinstance(general_name, x509.IPAddress) and not isinstance(
            general_name.value, ipaddress.IPv4Network | ipaddress.IPv6Network
        ):
            ips.add(general_name.value.compressed)
        else:
            # RFC 8555 §9.7.7 registers the dns identifier type, RFC 8738 §3 adds ip; nothing else.
            raise _bad(f"unsupported subjectAltName {type(general_name).__name__}")
    if len(common_names) > 1:
        raise _bad("CSR has more than one commonName")
    if common_names:
        cn = common_names[0].value
        if not isinstance(cn, str):
            raise _bad("CSR commonName is not a string")
        # The CN is a legacy copy of one SAN (RFC 6125 §6.4.4 prefers SANs); it adds no name.
        if cn.lower() not in dns and _normalize_ip(cn) not in ips:
            raise _bad(f"CSR commonName {cn!r} is not one of its subjectAltNames")
    return dns, ips


def _mismatch(requested: dict[str, set[str]], ordered: dict[str, set[str]]) -> AcmeError | None:
    """badCSR naming the extra and missing identifiers, one subproblem each (RFC 8555 §6.7.1)."""
    extra = [(kind, name) for kind in requested for name in sorted(requested[kind] - ordered[kind])]
    missing = [(kind, name) for kind in ordered for name in sorted(ordered[kind] - requested[kind])]
    if not extra and not missing:
        return None
    subproblems = [
        Subproblem("badCSR", f"{name} is not in the order", {"type": kind, "value": name})
        for kind, name in extra
    ] + [
        Subproblem("badCSR", f"{name} is missing from the CSR", {"type": kind, "value": name})
        for kind, name in missing
    ]
    parts = []
    if extra:
        parts.append("names not in the order: " + ", ".join(name for _, name in extra))
    if missing:
        parts.append("order names missing from the CSR: " + ", ".join(name for _, name in missing))
    return _bad("CSR does not match the order; " + "; ".join(parts), subproblems)


def check_csr(
    der: bytes,
    *,
    order_dns_names: Iterable[str],
    order_ips: Iterable[str] = (),
    account_key_der: bytes,
    allowed_keys: KeyPolicy = DEFAULT_KEY_POLICY,
) -> CheckedCSR:
    """RFC 8555 §7.4: the checks a CSR must pass before the order can be finalized."""
    csr = _load(der)
    spki = _check_key(csr, allowed_keys)
    _check_signature(csr)
    # RFC 8555 §11.1: the certificate key must not be the account key.
    if spki == account_key_der:
        raise _bad("CSR public key must not be the account key")
    dns, ips = _names(csr)
    # RFC 8555 §7.4: the CSR must name exactly the order's identifiers, no more and no fewer.
    mismatch = _mismatch(
        {"dns": dns, "ip": ips},
        {
            "dns": {name.lower() for name in order_dns_names},
            "ip": {_normalize_ip(ip) for ip in order_ips},
        },
    )
    if mismatch is not None:
        raise mismatch
    if not dns and not ips:
        raise _bad("CSR names no identifiers")
    return CheckedCSR(
        csr=csr,
        der=bytes(der),
        dns_names=tuple(sorted(dns)),
        ip_addresses=tuple(sorted(ips)),
    )
