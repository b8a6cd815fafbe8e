"""The key-backend interface and the key algorithms the CA knows.

A key backend owns CA private keys; ``ca/`` only ever holds a *key reference* and asks the backend
to sign. The software backend (``ca.software_keys``) keeps encrypted PKCS#8 blobs; the PKCS#11
backend (issue #3) keeps keys on a token that never releases them. Both satisfy
:class:`KeyBackend`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ca.errors import CAError

EC_P256 = "ec-p256"
EC_P384 = "ec-p384"
RSA_2048 = "rsa-2048"
RSA_3072 = "rsa-3072"
RSA_4096 = "rsa-4096"
KEY_ALGORITHMS: tuple[str, ...] = (EC_P256, EC_P384, RSA_2048, RSA_3072, RSA_4096)

# Signature schemes for :meth:`KeyBackend.sign`. PKCS#1 v1.5 is the default for RSA (RFC 4055
# §5); RSASSA-PSS (RFC 4055 §3.1, RFC 8017 §8.1) is SHA-256 with MGF1-SHA-256 and a 32-octet
# salt (the hash length, as RFC 4055 §3.1 recommends). ECDSA keys have one scheme and ignore
# "pkcs1v15"; "pss" with an EC key is an error.
SCHEME_PKCS1V15 = "pkcs1v15"
SCHEME_PSS = "pss"
SIGNATURE_SCHEMES: tuple[str, ...] = (SCHEME_PKCS1V15, SCHEME_PSS)
PSS_SALT_LENGTH = 32

_CURVES: dict[str, type[ec.EllipticCurve]] = {EC_P256: ec.SECP256R1, EC_P384: ec.SECP384R1}
_RSA_BITS: dict[str, int] = {RSA_2048: 2048, RSA_3072: 3072, RSA_4096: 4096}


@dataclass(frozen=True)
class GeneratedKey:
    """A freshly generated key: its reference, an opaque blob to store (or None when the key
    lives in a token), and its public half."""

    key_ref: str
    key_blob: bytes | None
    public_key: PublicKeyTypes


@dataclass(frozen=True)
class BackendHealth:
    """The outcome of a cheap liveness check of a key backend (for ``/readyz``). ``detail`` is
    safe to show an operator: it never contains key material or a PIN."""

    ok: bool
    detail: str


class KeyBackend(Protocol):
    """Where CA private keys live and are used. Implementations never hand out private keys."""

    name: str

    async def generate(self, label: str, algorithm: str) -> GeneratedKey:
        """Create a new key pair; ``label`` must be unique within the backend."""
        ...

    async def load(self, key_ref: str, key_blob: bytes | None) -> None:
        """Make a stored key usable (decrypt a software blob, open a token object)."""
        ...

    def public_key(self, key_ref: str) -> PublicKeyTypes:
        """The public key of a generated or loaded key."""
        ...

    async def sign(self, key_ref: str, data: bytes, *, scheme: str = SCHEME_PKCS1V15) -> bytes:
        """Sign ``data`` with the algorithm's natural scheme (see :func:`signature_hash`),
        returning the signature as it goes into a certificate (DER ECDSA-Sig-Value for EC,
        RFC 3279 §2.2.3 / RFC 5758 §3.2; PKCS#1 v1.5 octets for RSA, RFC 4055 §5).
        ``scheme=SCHEME_PSS`` asks an RSA key for RSASSA-PSS instead (see :data:`SCHEME_PSS`).
        Raises ``CAError("unavailable")`` when the key store cannot be reached."""
        ...

    async def destroy(self, key_ref: str) -> None:
        """Delete a key that was generated but never put in use (a lost start-up race)."""
        ...

    async def health(self) -> BackendHealth:
        """A cheap check that the loaded keys can be used right now (bounded in time)."""
        ...


def signature_hash(algorithm: str) -> hashes.SHA256 | hashes.SHA384:
    """The digest each algorithm signs with (BR §7.1.3.2): SHA-384 for P-384, matching the
    curve's strength (RFC 5480 §4); SHA-256 for P-256 and for RSA PKCS#1 v1.5 (RFC 4055 §5)."""
    check_algorithm(algorithm)
    return hashes.SHA384() if algorithm == EC_P384 else hashes.SHA256()


def check_scheme(algorithm: str, scheme: str) -> None:
    """Refuse a signature scheme the algorithm does not have (PSS is RSA-only, RFC 4055 §3)."""
    if scheme not in SIGNATURE_SCHEMES:
        raise CAError("malformed", f"unknown signature scheme {scheme!r}")
    if scheme == SCHEME_PSS and algorithm not in _RSA_BITS:
        raise CAError("malformed", f"RSASSA-PSS needs an RSA key, not {algorithm}")


def check_algorithm(algorithm: str) -> None:
    if algorithm not in KEY_ALGORITHMS:
        raise CAError("malformed", f"unknown key algorithm {algorithm!r}")


def curve_for(algorithm: str) -> ec.EllipticCurve | None:
    """The curve of an EC algorithm, None for RSA."""
    check_algorithm(algorithm)
    curve = _CURVES.get(algorithm)
    return curve() if curve is not None else None


def rsa_bits_for(algorithm: str) -> int | None:
    """The modulus size of an RSA algorithm, None for EC."""
    check_algorithm(algorithm)
    return _RSA_BITS.get(algorithm)


def algorithm_of(public_key: PublicKeyTypes) -> str:
    """The algorithm name of an existing public key (e.g. an issuer's, read from its cert)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        for name, curve in _CURVES.items():
            if isinstance(public_key.curve, curve):
                return name
    elif isinstance(public_key, rsa.RSAPublicKey):
        for name, bits in _RSA_BITS.items():
            if public_key.key_size == bits:
                return name
    raise CAError("internal", f"unsupported CA key type {type(public_key).__name__}")


def spki_der(public_key: PublicKeyTypes) -> bytes:
    """The DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7): the canonical form for comparing keys
    and for the ``spki_sha256`` fingerprint stored with each certificate."""
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
