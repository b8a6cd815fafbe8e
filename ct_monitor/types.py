"""Interfaces shared by the CT protocol core and the monitor.

The monitor (watchlist/state/monitor) codes only against what is declared here:

* ``LogDescription`` — one log from the v3 log list (``ct_monitor.loglist.load_log_list``) with
  the per-log overrides from ``[ct]`` already applied.
* ``LogClient`` — the protocol both clients satisfy: ``ct_monitor.rfc6962.RFC6962Client`` and
  ``ct_monitor.static_ct.StaticCTClient``. Build one with
  ``ct_monitor.clients.open_client(description, user_agent=...)``.
* ``TreeHead`` / ``LogEntry`` — what the clients return. A ``TreeHead`` returned by a client has
  had its signature verified against the log's key; ``LogEntry.leaf_hash`` is the RFC 6962 §2.1
  leaf hash the monitor appends to its ``ct_monitor.merkle.CompactRange``.
* Errors: ``LogError`` (transient or malformed answers: retry later), ``LogMisbehaviour`` (bad
  signature, inconsistent tree: a high-severity alert naming the log and the tree sizes),
  ``RateLimited`` (429/503 with Retry-After that the client did not absorb itself).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

LogKind = Literal["rfc6962", "tiled"]
EntryType = Literal["x509", "precert"]


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A signed tree head (RFC 6962 §3.5) or a static-ct-api checkpoint.

    ``signature`` is the raw ``digitally-signed`` TreeHeadSignature bytes (RFC 5246 §4.7 encoding:
    hash alg, signature alg, 2-byte length, signature). It is kept so an alert can carry the
    evidence. ``root_hash`` is 32 bytes.
    """

    tree_size: int
    root_hash: bytes
    timestamp_ms: int
    signature: bytes

    def describe(self) -> str:
        return f"size={self.tree_size} root={self.root_hash.hex()} ts={self.timestamp_ms}"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log entry, parsed from a MerkleTreeLeaf (RFC 6962 §3.4) or a static-ct-api TileLeaf.

    * ``leaf_hash``: SHA-256(0x00 || MerkleTreeLeaf) — RFC 6962 §2.1 leaf hash, for the tree.
    * ``entry_type == "x509"``: ``cert_der`` is the leaf certificate; ``tbs_der`` is ``b""``.
    * ``entry_type == "precert"``: ``tbs_der`` is the TBSCertificate from the leaf (already
      without poison extension, issuer possibly rewritten for a precert-signing CA, RFC 6962
      §3.2); ``cert_der`` is the precertificate (with poison) from extra_data / the TileLeaf
      when the log provided it, else ``b""``; ``issuer_key_hash`` is SHA-256 of the issuer SPKI.
    * ``chain_der``: the issuing chain, leaf's issuer first (may be empty).
    * ``timestamp_ms``: the SCT timestamp (ms since the epoch).
    * ``parse_error``: non-empty when the leaf (or its extra_data) could not be parsed. The
      entry still carries the right ``leaf_hash`` (hashed over the raw leaf, so tree
      verification is unaffected) and must be treated fail-safe (reported, not dropped).
    """

    index: int
    leaf_hash: bytes
    entry_type: EntryType
    cert_der: bytes
    tbs_der: bytes
    chain_der: list[bytes]
    timestamp_ms: int
    issuer_key_hash: bytes = b""
    parse_error: str = ""


@dataclass(frozen=True, slots=True)
class LogDescription:
    """A log to watch.

    ``url`` identifies the log everywhere (state rows, alerts, metrics): the log URL for RFC 6962
    logs and the monitoring prefix for tiled logs, always ending in ``/``. ``key_der`` is the
    DER SubjectPublicKeyInfo; ``log_id`` = SHA-256(key_der) (RFC 6962 §3.2). ``mmd`` in seconds.
    """

    url: str
    kind: LogKind
    key_der: bytes
    log_id: bytes
    mmd: int = 86400
    description: str = ""
    operator: str = ""
    state: str = "usable"
    submission_url: str = ""
    monitoring_url: str = ""
    batch_size: int = 256
    parallel_downloads: int = 4
    requests_per_second: float = 0.0  # 0 = unlimited
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        """static-ct-api checkpoint origin: submission prefix without scheme and trailing '/'."""
        base = self.submission_url or self.url
        return base.split("://", 1)[-1].rstrip("/")

    @staticmethod
    def compute_log_id(key_der: bytes) -> bytes:
        return hashlib.sha256(key_der).digest()


class LogError(Exception):
    """A log answered with an error, garbage or not at all. Transient: try again later."""

    def __init__(self, log_url: str, detail: str) -> None:
        super().__init__(f"{log_url}: {detail}")
        self.log_url = log_url
        self.detail = detail


class LogMisbehaviour(LogError):
    """The log provably misbehaved: bad signature, inconsistent tree, wrong root, split view.

    ``sizes`` names the tree sizes involved (e.g. (verified_size, new_size)).
    """

    def __init__(self, log_url: str, detail: str, sizes: tuple[int, ...] = ()) -> None:
        super().__init__(log_url, detail)
        self.sizes = sizes


class RateLimited(LogError):
    """429/503 that the client did not wait out itself; wait ``retry_after_s`` seconds."""

    def __init__(self, log_url: str, retry_after_s: float, detail: str = "rate limited") -> None:
        super().__init__(log_url, f"{detail} (retry after {retry_after_s:.1f}s)")
        self.retry_after_s = retry_after_s


@runtime_checkable
class LogClient(Protocol):
    """What the monitor needs from a log, RFC 6962 or tiled.

    Clients honour Retry-After themselves for short waits (up to ``max_wait`` seconds, with a
    per-log token bucket for requests per second) and raise ``RateLimited`` beyond that.
    """

    url: str
    description: LogDescription

    async def get_tree_head(self) -> TreeHead:
        """Latest STH/checkpoint, signature verified; ``LogMisbehaviour`` if it does not verify."""
        ...

    async def get_entries(self, start: int, end_inclusive: int) -> list[LogEntry]:
        """Entries start..end_inclusive, in order from ``start``. May return fewer than asked
        (never zero unless the log returned none: the caller continues from the next index)."""
        ...

    async def get_consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 6962 §2.1.2 consistency proof between two tree sizes (not yet verified)."""
        ...

    async def aclose(self) -> None: ...
