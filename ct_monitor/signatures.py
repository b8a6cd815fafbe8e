"""Log signatures: RFC 6962 §3.5 tree head signatures and static-ct-api note signatures.

RFC 6962 §2.1.4: logs sign with ECDSA over NIST P-256 or RSA (PKCS#1 v1.5, >= 2048 bits), both
with SHA-256, encoded as a TLS ``digitally-signed`` struct (RFC 5246 §4.7).
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ct_monitor.wire import (
    HASH_SHA256,
    SIG_ECDSA,
    SIG_RSA,
    WireError,
    parse_digitally_signed,
    tree_head_signature_input,
)


class SignatureError(ValueError):
    """A log signature did not verify or the key is unsuitable; the message says why."""


PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def load_log_key(key_der: bytes) -> PublicKey:
    """Load a log's DER SubjectPublicKeyInfo, refusing key types RFC 6962 §2.1.4 does not allow."""
    try:
        key = serialization.load_der_public_key(key_der)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"log key is not a DER SubjectPublicKeyInfo: {exc}") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise SignatureError(f"log key on curve {key.curve.name}; RFC 6962 requires P-256")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise SignatureError(f"RSA log key of {key.key_size} bits; at least 2048 required")
        return key
    raise SignatureError(f"log key type {type(key).__name__} is not ECDSA P-256 or RSA")


def verify_digitally_signed(key: PublicKey, message: bytes, digitally_signed: bytes) -> None:
    """Verify an RFC 5246 §4.7 digitally-signed struct over ``message``."""
    try:
        ds = parse_digitally_signed(digitally_signed)
    except WireError as exc:
        raise SignatureError(str(exc)) from None
    if ds.hash_alg != HASH_SHA256:
        raise SignatureError(f"signature hash algorithm {ds.hash_alg} is not SHA-256 (4)")
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if ds.sig_alg != SIG_ECDSA:
                raise SignatureError(f"signature algorithm {ds.sig_alg} but the key is ECDSA")
            key.verify(ds.signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            if ds.sig_alg != SIG_RSA:
                raise SignatureError(f"signature algorithm {ds.sig_alg} but the key is RSA")
            key.verify(ds.signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SignatureError("signature does not verify with the log's key") from None


def verify_tree_head(
    key: PublicKey, timestamp_ms: int, tree_size: int, root_hash: bytes, signature: bytes
) -> None:
    """RFC 6962 §3.5: check the TreeHeadSignature over (timestamp, tree_size, root hash)."""
    try:
        message = tree_head_signature_input(timestamp_ms, tree_size, root_hash)
    except WireError as exc:
        raise SignatureError(str(exc)) from None
    verify_digitally_signed(key, message, signature)


def note_key_id(name: str, log_id: bytes) -> bytes:
    """static-ct-api "Checkpoints": key ID of an RFC6962NoteSignature = first 4 bytes of
    SHA-256(key name || 0x0A || 0x05 || 32-byte RFC 6962 LogID)."""
    return hashlib.sha256(name.encode() + b"\n\x05" + log_id).digest()[:4]
