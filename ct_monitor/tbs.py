"""The issuance identity of a certificate: SHA-256 of its TBSCertificate without CT extensions.

RFC 6962 §3.1: a precertificate is the final certificate's TBSCertificate plus the critical
poison extension (1.3.6.1.4.1.11129.2.4.3); the final certificate carries the SCT list extension
(1.3.6.1.4.1.11129.2.4.2) instead. Removing both from the TBSCertificate gives the same bytes for
the precertificate and its final certificate, so its SHA-256 (``tbs_sha256``) names one issuance
(certspotter's "TBS SHA-256").

Sources of a TBS:

* an x509 log entry or any certificate DER: :func:`tbs_sha256_of_certificate`;
* a precert log entry: the MerkleTreeLeaf's ``tbs_certificate`` (RFC 6962 §3.2), which the log
  already stripped of the poison and whose issuer (and Authority Key Identifier) the log already
  rewrote to the final issuer when a Precertificate Signing Certificate signed it:
  :func:`tbs_sha256_of_tbs`. Use this one for precert entries.

Limitation: the precertificate DER itself (extra_data ``pre_certificate``), when signed by a
Precertificate Signing Certificate (RFC 6962 §3.1), names that signing certificate as issuer and
carries its AKI, so :func:`tbs_sha256_of_certificate` on it does NOT give the final
certificate's hash. Only the log's leaf TBS does; the monitor never hashes the precert DER.

The DER surgery is hand-written (a TLV walker over the outer structure only) rather than done
with asn1crypto or pyasn1: the hash must be over the exact bytes the CA signed, so every field
but the extensions is copied byte for byte, with no decode/re-encode of names, times or keys that
a library could normalise; and neither library has type information for ``mypy --strict``.
"""

from __future__ import annotations

import hashlib

# DER tags (X.690 §8.1.2): universal SEQUENCE (constructed), context [3] constructed.
_SEQUENCE = 0x30
_OID = 0x06
_EXTENSIONS_TAG = 0xA3
# X.690 §8.19 content octets of the two OIDs (1.3.6.1.4.1.11129.2.4.{3,2}).
POISON_OID = "1.3.6.1.4.1.11129.2.4.3"
SCT_LIST_OID = "1.3.6.1.4.1.11129.2.4.2"


class TBSError(ValueError):
    """The bytes are not a DER certificate / TBSCertificate this module can walk."""


def _encode_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([parts[0] * 40 + parts[1]])
    for arc in parts[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return bytes(body)


_CT_EXTENSION_OIDS = frozenset({_encode_oid(POISON_OID), _encode_oid(SCT_LIST_OID)})


def read_tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """The TLV at ``offset``: (tag, content start, end). Single-byte tags only (all X.509 needs
    at this level); definite lengths only (DER, X.690 §10.1)."""
    if offset + 2 > len(data):
        raise TBSError("truncated DER")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise TBSError("multi-byte DER tags are not expected in a certificate")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise TBSError("indefinite or oversized DER length")
        if pos + count > len(data):
            raise TBSError("truncated DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise TBSError("non-minimal DER length")
        pos += count
    end = pos + length
    if end > len(data):
        raise TBSError("DER value runs past the end of the data")
    return tag, pos, end


def encode_tlv(tag: int, content: bytes) -> bytes:
    """X.690 §10.1: definite, minimal-length encoding."""
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def tbs_of_certificate(cert_der: bytes) -> bytes:
    """The TBSCertificate DER of a Certificate (RFC 5280 §4.1: first element of the SEQUENCE)."""
    tag, start, end = read_tlv(cert_der, 0)
    if tag != _SEQUENCE or end != len(cert_der):
        raise TBSError("a certificate is one DER SEQUENCE")
    tbs_tag, _, tbs_end = read_tlv(cert_der, start)
    if tbs_tag != _SEQUENCE:
        raise TBSError("the certificate does not start with a TBSCertificate SEQUENCE")
    return cert_der[start:tbs_end]


def _is_ct_extension(extension: bytes) -> bool:
    tag, start, _ = read_tlv(extension, 0)
    if tag != _SEQUENCE:
        raise TBSError("an Extension is a SEQUENCE")
    oid_tag, oid_start, oid_end = read_tlv(extension, start)
    if oid_tag != _OID:
        raise TBSError("an Extension starts with its OID")
    return extension[oid_start:oid_end] in _CT_EXTENSION_OIDS


def strip_ct_extensions(tbs_der: bytes) -> bytes:
    """The TBSCertificate with the poison and SCT list extensions removed.

    Every other byte is kept. When no extension is left, the ``[3] extensions`` field is dropped
    (Extensions is SIZE (1..MAX), RFC 5280 §4.1), so a precertificate whose only extension was
    the poison and a log leaf without it give the same bytes.
    """
    tag, start, end = read_tlv(tbs_der, 0)
    if tag != _SEQUENCE or end != len(tbs_der):
        raise TBSError("a TBSCertificate is one DER SEQUENCE")
    fields: list[bytes] = []
    pos = start
    changed = False
    while pos < end:
        field_tag, field_start, field_end = read_tlv(tbs_der, pos)
        raw = tbs_der[pos:field_end]
        if field_tag == _EXTENSIONS_TAG:
            seq_tag, seq_start, seq_end = read_tlv(tbs_der, field_start)
            if seq_tag != _SEQUENCE or seq_end != field_end:
                raise TBSError("[3] extensions must hold one SEQUENCE")
            kept: list[bytes] = []
            ext_pos = seq_start
            while ext_pos < seq_end:
                _, _, ext_end = read_tlv(tbs_der, ext_pos)
                extension = tbs_der[ext_pos:ext_end]
                if _is_ct_extension(extension):
                    changed = True
                else:
                    kept.append(extension)
                ext_pos = ext_end
            if changed:
                raw = (
                    encode_tlv(_EXTENSIONS_TAG, encode_tlv(_SEQUENCE, b"".join(kept)))
                    if kept
                    else b""
                )
        fields.append(raw)
        pos = field_end
    if not changed:
        return tbs_der
    return encode_tlv(_SEQUENCE, b"".join(fields))


def tbs_sha256_of_tbs(tbs_der: bytes) -> str:
    """Hex SHA-256 of a TBSCertificate (e.g. a precert log leaf's) without CT extensions."""
    return hashlib.sha256(strip_ct_extensions(tbs_der)).hexdigest()


def tbs_sha256_of_certificate(cert_der: bytes) -> str:
    """Hex SHA-256 of a certificate's (or precertificate's) TBS without CT extensions."""
    return tbs_sha256_of_tbs(tbs_of_certificate(cert_der))


def tbs_signature_algorithm(tbs_der: bytes) -> bytes:
    """The TBS ``signature`` AlgorithmIdentifier DER (after the optional [0] version and the
    serial), used to wrap a bare TBS into a parseable certificate."""
    _, start, end = read_tlv(tbs_der, 0)
    pos = start
    tag, _, field_end = read_tlv(tbs_der, pos)
    if tag == 0xA0:  # [0] EXPLICIT version
        pos = field_end
        tag, _, field_end = read_tlv(tbs_der, pos)
    pos = field_end  # serialNumber
    tag, _, field_end = read_tlv(tbs_der, pos)
    if tag != _SEQUENCE or field_end > end:
        raise TBSError("no signature AlgorithmIdentifier in the TBSCertificate")
    return tbs_der[pos:field_end]


def wrap_tbs(tbs_der: bytes) -> bytes:
    """A Certificate SEQUENCE around a bare TBS with an empty signature, so ``cryptography``
    can parse its fields (names, validity, issuer). Never verified, never stored as a cert."""
    algorithm = tbs_signature_algorithm(tbs_der)
    empty_bit_string = encode_tlv(0x03, b"\x00")
    return encode_tlv(_SEQUENCE, tbs_der + algorithm + empty_bit_string)
