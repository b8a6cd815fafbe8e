"""Signing certificates and CRLs through a key backend: build, sign externally, splice, verify.

cryptography's ``CertificateBuilder.sign`` / ``CertificateRevocationListBuilder.sign`` need an
in-memory private key, and a PKCS#11 key never leaves its token. So the builder signs with a
throwaway key of the issuer's algorithm - the TBS then already carries the right ``signature``
AlgorithmIdentifier (RFC 5280 §4.1.2.3) and the outer ``signatureAlgorithm`` matches it
(§4.1.1.2) - the key backend signs the TBS bytes, and :func:`replace_signature` swaps the real
signature into the outer structure. The result is verified against the issuer's public key
before anyone sees it: a broken backend signature is never released.

Why hand-written DER: no stable API in our dependency set assembles a certificate from TBS bytes
plus an external signature. cryptography >= 47 ships ``cryptography.hazmat.asn1`` (declarative
DER), but it is documented as unstable and outside the backwards-compatibility policy, and
re-encoding a decoded ``TLV`` only works in recent releases, while we support cryptography >= 44.
The splice needs just TLV length parsing and encoding (X.690 §8.1.3, DER §10.1), ~40 lines.
"""

from __future__ import annotations

import asyncio

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from ca.errors import CAError
from ca.keys import KeyBackend, signature_hash
from ca.software_keys import SoftwarePrivateKey, generate_private_key

_SEQUENCE = 0x30
_BIT_STRING = 0x03
_CRL_ISSUER_KEYS = (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)


def _encode_length(length: int) -> bytes:
    # X.690 §8.1.3 with DER §10.1: short form below 128, else the minimal long form.
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _encode_length(len(content)) + content


def _read_tlv(der: bytes, pos: int, tag: int) -> tuple[int, int]:
    """Check the element at ``pos`` has ``tag``; return (content start, element end)."""
    if pos + 2 > len(der) or der[pos] != tag:
        raise CAError("malformed", f"DER: expected tag {tag:#04x} at offset {pos}")
    first = der[pos + 1]
    start = pos + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        # 0x80 is BER's indefinite length, forbidden in DER; 4 octets cover 4 GiB.
        if count == 0 or count > 4 or start + count > len(der):
            raise CAError("malformed", f"DER: bad length octets at offset {pos}")
        length = int.from_bytes(der[start : start + count], "big")
        if length < 0x80 or der[start] == 0:
            raise CAError("malformed", f"DER: non-minimal length at offset {pos}")
        start += count
    end = start + length
    if end > len(der):
        raise CAError("malformed", f"DER: element at offset {pos} runs past the end")
    return start, end


def replace_signature(signed_der: bytes, new_signature: bytes) -> bytes:
    """Re-encode ``SEQUENCE { tbs, signatureAlgorithm, BIT STRING }`` with ``new_signature``.

    The outer shape is the same for a Certificate (RFC 5280 §4.1) and a CertificateList
    (RFC 5280 §5.1); tbs and algorithm are copied byte for byte.
    """
    body_start, body_end = _read_tlv(signed_der, 0, _SEQUENCE)
    if body_end != len(signed_der):
        raise CAError("malformed", "DER: trailing data after the signed structure")
    _, tbs_end = _read_tlv(signed_der, body_start, _SEQUENCE)
    _, algorithm_end = _read_tlv(signed_der, tbs_end, _SEQUENCE)
    _, signature_end = _read_tlv(signed_der, algorithm_end, _BIT_STRING)
    if signature_end != body_end:
        raise CAError("malformed", "DER: unexpected element after the signature")
    # The BIT STRING's first content octet counts unused bits: signatures are whole octets.
    signature = _tlv(_BIT_STRING, b"\x00" + new_signature)
    return _tlv(_SEQUENCE, signed_der[body_start:algorithm_end] + signature)


_throwaway_keys: dict[str, SoftwarePrivateKey] = {}


async def _throwaway_key(algorithm: str) -> SoftwarePrivateKey:
    """One build key per algorithm per process (RSA generation is slow). Its signature is always
    replaced, so it never signs anything that leaves this module. A concurrent first use may
    generate two; either is fine."""
    key = _throwaway_keys.get(algorithm)
    if key is None:
        key = await asyncio.to_thread(generate_private_key, algorithm)
        _throwaway_keys.setdefault(algorithm, key)
    return key


async def sign_certificate(
    builder: x509.CertificateBuilder,
    *,
    backend: KeyBackend,
    key_ref: str,
    algorithm: str,
    issuer: x509.Certificate | None,
) -> x509.Certificate:
    """Sign ``builder`` with the backend key ``key_ref`` (of ``algorithm``) and verify the result
    against ``issuer`` (None: the certificate is self-signed and verifies against itself)."""
    draft = builder.sign(await _throwaway_key(algorithm), signature_hash(algorithm))
    signature = await backend.sign(key_ref, draft.tbs_certificate_bytes)
    der = replace_signature(draft.public_bytes(Encoding.DER), signature)
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.verify_directly_issued_by(cert if issuer is None else issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CAError(
            "internal", f"key backend signature for {key_ref!r} did not verify", exc
        ) from exc
    return cert


async def sign_crl(
    builder: x509.CertificateRevocationListBuilder,
    *,
    backend: KeyBackend,
    key_ref: str,
    algorithm: str,
    issuer: x509.Certificate,
) -> x509.CertificateRevocationList:
    """As :func:`sign_certificate`, for a CRL (RFC 5280 §5.1) issued by ``issuer``."""
    draft = builder.sign(await _throwaway_key(algorithm), signature_hash(algorithm))
    signature = await backend.sign(key_ref, draft.tbs_certlist_bytes)
    der = replace_signature(draft.public_bytes(Encoding.DER), signature)
    try:
        crl = x509.load_der_x509_crl(der)
        issuer_key = issuer.public_key()
        valid = (
            crl.issuer == issuer.subject
            and isinstance(issuer_key, _CRL_ISSUER_KEYS)
            and crl.is_signature_valid(issuer_key)
        )
    except (ValueError, TypeError) as exc:
        raise CAError(
            "internal", f"key backend CRL signature for {key_ref!r} is broken", exc
        ) from exc
    if not valid:
        raise CAError("internal", f"key backend CRL signature for {key_ref!r} did not verify")
    return crl
