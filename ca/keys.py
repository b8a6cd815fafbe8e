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

_CURVES: dict[str, type[ec.EllipticCurve]] = {EC_P256: ec.SECP256R1, EC_P384: ec.SECP384R1}
_RSA_BITS: dict[str, int] = {RSA_2048: 2048, RSA_3072: 3072, RSA_4096: 4096}


@dataclass(frozen=True)
class GeneratedKey:
    """A freshly generated key: its reference, an opaque blob to store (or None when the key
    lives in a token), and its public half."""

    key_ref: str
    key_blob: bytes | None
    public_key: PublicKeyTypes


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

    async def sign(self, key_ref: str, data: bytes) -> bytes:
        """Sign ``data`` with the algorithm's natural scheme (see :func:`signature_hash`),
        returning the signature as it goes into a certificate (DER ECDSA-Sig-Value for EC,
        RFC 3279 §2.2.3 / RFC 5758 §3.2; PKCS#1 v1.5 octets for RSA, RFC 4055 §5)."""
        ...

    async def destroy(self, key_ref: str) -> None:
        """Delete a key that was generated but never put in use (a lost start-up race)."""
        ...


def signature_hash(algorithm: str) -> hashes.SHA256 | hashes.SHA384:
    """The digest each algorithm signs with (BR §7.1.3.2): SHA-384 for P-384, matching the
    curve's strength (RFC 5480 §4); SHA-256 for P-256 and for RSA PKCS#1 v1.5 (RFC 4055 §5)."""
    check_algorithm(algorithm)
    return hashes.SHA384() if algorithm == EC_P384 else hashes.SHA256()


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
