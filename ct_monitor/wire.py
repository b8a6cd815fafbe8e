"""RFC 6962 / static-ct-api binary structures (TLS presentation language, RFC 5246 §4).

Parsing: ``parse_merkle_tree_leaf`` (RFC 6962 §3.4), ``parse_extra_data`` (§4.6 get-entries),
``parse_tile_leaves`` (c2sp.org/static-ct-api "Log entries"). Encoding (used by the suite's test
log and by the static client to rebuild the MerkleTreeLeaf it hashes): ``encode_*``.

Hand-written: the structures are a handful of length-prefixed fields and no maintained Python
library parses them (``cryptography`` only parses SCTs embedded in certificates).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ct_monitor.types import EntryType, LogEntry

# RFC 6962 §3.4 / §3.1 enums.
VERSION_V1 = 0
LEAF_TYPE_TIMESTAMPED_ENTRY = 0
ENTRY_X509 = 0
ENTRY_PRECERT = 1
MAX_ENTRY_BYTES = 1 << 24  # ASN.1Cert <1..2^24-1>


class WireError(ValueError):
    """Malformed CT structure; the message says which field."""


class Reader:
    """Bounds-checked reader over TLS-encoded bytes."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str = "structure") -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n: int, field: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise WireError(f"{self.what}: truncated in {field}")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def uint(self, size: int, field: str) -> int:
        end = self.pos + size
        if end > len(self.data):
            raise WireError(f"{self.what}: truncated in {field}")
        value = int.from_bytes(self.data[self.pos : end], "big")
        self.pos = end
        return value

    def vector(self, len_bytes: int, field: str) -> bytes:
        # Self-contained (no uint/take calls): it runs several times for every log entry.
        d, start = self.data, self.pos + len_bytes
        end = start + int.from_bytes(d[self.pos : start], "big")
        if end > len(d):
            raise WireError(f"{self.what}: truncated in {field}")
        self.pos = end
        return d[start:end]

    def at_end(self) -> bool:
        return self.pos == len(self.data)

    def expect_end(self) -> None:
        if not self.at_end():
            raise WireError(f"{self.what}: {len(self.data) - self.pos} trailing bytes")


def _vec(data: bytes, len_bytes: int) -> bytes:
    if len(data) >= 1 << (8 * len_bytes):
        raise WireError(f"field of {len(data)} bytes does not fit a {len_bytes}-byte length")
    return len(data).to_bytes(len_bytes, "big") + data


@dataclass(frozen=True, slots=True)
class TimestampedEntry:
    """RFC 6962 §3.4 TimestampedEntry. For precert: ``der`` is the TBSCertificate."""

    timestamp_ms: int
    entry_type: EntryType
    der: bytes
    issuer_key_hash: bytes
    extensions: bytes


_TE_HEAD = struct.Struct(">QH")


def _read_timestamped_entry(r: Reader) -> TimestampedEntry:
    # Hot path (every entry of every log): plain slicing instead of Reader calls.
    d, p = r.data, r.pos
    if p + 10 > len(d):
        raise WireError(f"{r.what}: truncated in TimestampedEntry")
    timestamp, etype = _TE_HEAD.unpack_from(d, p)
    p += 10
    if etype == ENTRY_X509:
        ikh = b""
        kind: EntryType = "x509"
    elif etype == ENTRY_PRECERT:
        ikh = d[p : p + 32]
        p += 32
        kind = "precert"
    else:
        raise WireError(f"{r.what}: unknown LogEntryType {etype}")
    n = int.from_bytes(d[p : p + 3], "big")
    der = d[p + 3 : p + 3 + n]
    p += 3 + n
    ext_len = int.from_bytes(d[p : p + 2], "big")
    ext = d[p + 2 : p + 2 + ext_len]
    p += 2 + ext_len
    if p > len(d) or len(ikh) != (32 if kind == "precert" else 0):
        raise WireError(f"{r.what}: truncated in TimestampedEntry")
    if not der:
        raise WireError(f"{r.what}: empty certificate")
    r.pos = p
    return TimestampedEntry(timestamp, kind, der, ikh, ext)


def encode_timestamped_entry(entry: TimestampedEntry) -> bytes:
    out = struct.pack(">QH", entry.timestamp_ms, ENTRY_X509 if entry.entry_type == "x509" else 1)
    if entry.entry_type == "precert":
        if len(entry.issuer_key_hash) != 32:
            raise WireError("issuer_key_hash must be 32 bytes")
        out += entry.issuer_key_hash
    return out + _vec(entry.der, 3) + _vec(entry.extensions, 2)


def parse_merkle_tree_leaf(data: bytes) -> TimestampedEntry:
    """RFC 6962 §3.4 MerkleTreeLeaf (the ``leaf_input`` of get-entries)."""
    if data[:2] != b"\x00\x00":  # version v1(0), leaf type timestamped_entry(0)
        raise WireError(f"MerkleTreeLeaf: unsupported version / leaf type {data[:2].hex()}")
    r = Reader(data, "MerkleTreeLeaf")
    r.pos = 2
    entry = _read_timestamped_entry(r)
    r.expect_end()
    return entry


def encode_merkle_tree_leaf(entry: TimestampedEntry) -> bytes:
    return bytes([VERSION_V1, LEAF_TYPE_TIMESTAMPED_ENTRY]) + encode_timestamped_entry(entry)


def _read_cert_list(r: Reader, field: str) -> list[bytes]:
    sub = Reader(r.vector(3, field), r.what)
    certs = []
    while not sub.at_end():
        certs.append(sub.vector(3, f"{field} entry"))
    return certs


def _encode_cert_list(certs: list[bytes]) -> bytes:
    return _vec(b"".join(_vec(c, 3) for c in certs), 3)


def parse_extra_data(entry_type: EntryType, data: bytes) -> tuple[bytes, list[bytes]]:
    """RFC 6962 §4.6 extra_data: (precertificate or b"", chain).

    x509: ``ASN.1Cert certificate_chain<0..2^24-1>``; precert: ``PrecertChainEntry``
    (``ASN.1Cert pre_certificate; ASN.1Cert precertificate_chain<0..2^24-1>``).
    """
    r = Reader(data, "extra_data")
    if not data:
        return b"", []
    precert = r.vector(3, "pre_certificate") if entry_type == "precert" else b""
    chain = _read_cert_list(r, "certificate_chain")
    r.expect_end()
    return precert, chain


def encode_extra_data(entry_type: EntryType, precert: bytes, chain: list[bytes]) -> bytes:
    head = _vec(precert, 3) if entry_type == "precert" else b""
    return head + _encode_cert_list(chain)


@dataclass(frozen=True, slots=True)
class TileLeaf:
    """c2sp.org/static-ct-api TileLeaf."""

    entry: TimestampedEntry
    pre_certificate: bytes
    chain_fingerprints: list[bytes]
    # The RFC 6962 MerkleTreeLeaf these bytes stand for (version, leaf type, the raw
    # TimestampedEntry): what the tree hashes. Filled in by parse_tile_leaves.
    merkle_leaf: bytes = b""


def parse_tile_leaves(data: bytes) -> list[TileLeaf]:
    """Every TileLeaf in a data tile, in order."""
    r = Reader(data, "data tile")
    out = []
    while not r.at_end():
        begin = r.pos
        entry = _read_timestamped_entry(r)
        merkle_leaf = bytes([VERSION_V1, LEAF_TYPE_TIMESTAMPED_ENTRY]) + data[begin : r.pos]
        precert = r.vector(3, "pre_certificate") if entry.entry_type == "precert" else b""
        fps_raw = r.vector(2, "certificate_chain")
        if len(fps_raw) % 32:
            raise WireError("data tile: certificate_chain is not a list of 32-byte fingerprints")
        fps = [fps_raw[i : i + 32] for i in range(0, len(fps_raw), 32)]
        out.append(TileLeaf(entry, precert, fps, merkle_leaf))
    return out


def encode_tile_leaf(leaf: TileLeaf) -> bytes:
    out = encode_timestamped_entry(leaf.entry)
    if leaf.entry.entry_type == "precert":
        out += _vec(leaf.pre_certificate, 3)
    return out + _vec(b"".join(leaf.chain_fingerprints), 2)


# static-ct-api "SCT Extension": CtExtensions is a list of (uint8 type, opaque data<0..2^16-1>);
# leaf_index(0) carries a big-endian uint40.
EXT_LEAF_INDEX = 0


def encode_leaf_index_extension(index: int) -> bytes:
    return bytes([EXT_LEAF_INDEX]) + _vec(index.to_bytes(5, "big"), 2)


def leaf_index_from_extensions(extensions: bytes) -> int | None:
    if len(extensions) == 8 and extensions[:3] == b"\x00\x00\x05":
        return int.from_bytes(extensions[3:], "big")  # the usual: only a leaf_index
    r = Reader(extensions, "CtExtensions")
    found: int | None = None
    while not r.at_end():
        ext_type = r.uint(1, "extension_type")
        data = r.vector(2, "extension_data")
        if ext_type == EXT_LEAF_INDEX:
            if len(data) != 5 or found is not None:
                raise WireError("CtExtensions: bad or duplicate leaf_index")
            found = int.from_bytes(data, "big")
    return found


# RFC 5246 §4.7 digitally-signed: HashAlgorithm, SignatureAlgorithm, opaque signature<0..2^16-1>.
HASH_SHA256 = 4
SIG_RSA = 1
SIG_ECDSA = 3


@dataclass(frozen=True, slots=True)
class DigitallySigned:
    hash_alg: int
    sig_alg: int
    signature: bytes

    def encode(self) -> bytes:
        return bytes([self.hash_alg, self.sig_alg]) + _vec(self.signature, 2)


def parse_digitally_signed(data: bytes, what: str = "signature") -> DigitallySigned:
    r = Reader(data, what)
    ds = DigitallySigned(r.uint(1, "hash"), r.uint(1, "signature algorithm"), b"")
    sig = r.vector(2, "signature")
    r.expect_end()
    return DigitallySigned(ds.hash_alg, ds.sig_alg, sig)


def tree_head_signature_input(timestamp_ms: int, tree_size: int, root_hash: bytes) -> bytes:
    """RFC 6962 §3.5 TreeHeadSignature: version v1, signature_type tree_hash(1), timestamp,
    tree_size, sha256_root_hash — the bytes the log signs."""
    if len(root_hash) != 32:
        raise WireError("root hash must be 32 bytes")
    return struct.pack(">BBQQ", VERSION_V1, 1, timestamp_ms, tree_size) + root_hash


def to_log_entry(
    index: int, leaf_hash: bytes, te: TimestampedEntry, precert: bytes, chain: list[bytes]
) -> LogEntry:
    """The LogEntry for a parsed TimestampedEntry (RFC 6962 §3.4) and its extra data."""
    if te.entry_type == "x509":
        return LogEntry(index, leaf_hash, "x509", te.der, b"", chain, te.timestamp_ms)
    return LogEntry(
        index, leaf_hash, "precert", precert, te.der, chain, te.timestamp_ms, te.issuer_key_hash
    )


def unparsable_entry(index: int, leaf_hash: bytes, error: str) -> LogEntry:
    """An entry whose leaf could not be parsed: kept (for the tree) and flagged."""
    return LogEntry(index, leaf_hash, "x509", b"", b"", [], 0, parse_error=error)
