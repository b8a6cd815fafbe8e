"""Audit entries, their hash chain and signed checkpoints: pure functions, no database.

An entry's hash (docs/audit.md, "Chain format") is SHA-256 over the RFC 8785 encoding
(``audit.canonical``) of the object::

    {"v": 1, "seq": 7, "time": "2026-11-25T05:39:30.123456Z", "actor": "acme:Ab3...",
     "action": "certificate.issue", "target": "serial:4f...", "outcome": "success",
     "details": {...}, "request_id": null, "prev_hash": "<hex hash of entry 6>"}

Entry 1's ``prev_hash`` is :data:`GENESIS_HASH` (64 zeros). ``seq`` starts at 1 and grows by
exactly one, so a deleted entry is a gap, and a changed one no longer matches its hash or the
next entry's ``prev_hash``.

A checkpoint signs the RFC 8785 encoding of ``{"v": 1, "type": "certyard-audit-checkpoint",
"seq": S, "entry_hash": H, "time": T, "key_id": K}`` with ECDSA P-256 / SHA-256 (FIPS 186-4;
DER ECDSA-Sig-Value, RFC 3279 §2.2.3) by the audit key whose SPKI SHA-256 is ``K``: whoever
rewrites the chain up to ``S`` cannot make ``H`` match without that key, which lives on the HSM.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from audit.canonical import canonical_json, sha256_hex

FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64
CHECKPOINT_TYPE = "certyard-audit-checkpoint"
CHECKPOINT_ALGORITHM = "ecdsa-p256-sha256"


def format_time(when: dt.datetime) -> str:
    """RFC 3339 UTC with microseconds, the only time form that goes into a hash."""
    if when.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def truncate_time(when: dt.datetime) -> dt.datetime:
    """What both databases store: UTC, microseconds (PostgreSQL's timestamp precision)."""
    return when.astimezone(dt.UTC)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    time: dt.datetime
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]
    request_id: str | None
    prev_hash: str
    entry_hash: str = ""

    def hashed_fields(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "seq": self.seq,
            "time": format_time(self.time),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "details": self.details,
            "request_id": self.request_id,
            "prev_hash": self.prev_hash,
        }

    def compute_hash(self) -> str:
        return sha256_hex(canonical_json(self.hashed_fields()))

    def to_json(self) -> dict[str, Any]:
        """The export form (one JSON line per entry for a SIEM): the hashed fields plus the
        entry's own hash, so a consumer can re-check the chain."""
        return self.hashed_fields() | {"entry_hash": self.entry_hash}


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    entry_hash: str
    time: dt.datetime
    key_id: str  # hex SHA-256 of the audit key's DER SubjectPublicKeyInfo
    signature: bytes = b""
    algorithm: str = CHECKPOINT_ALGORITHM

    def payload(self) -> bytes:
        return canonical_json(
            {
                "v": FORMAT_VERSION,
                "type": CHECKPOINT_TYPE,
                "seq": self.seq,
                "entry_hash": self.entry_hash,
                "time": format_time(self.time),
                "key_id": self.key_id,
            }
        )


def signature_valid(checkpoint: Checkpoint, public_key: PublicKeyTypes) -> bool:
    if checkpoint.algorithm != CHECKPOINT_ALGORITHM:
        return False
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return False
    if not isinstance(public_key.curve, ec.SECP256R1):
        return False
    try:
        public_key.verify(checkpoint.signature, checkpoint.payload(), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Break:
    """The first thing found wrong: ``seq`` names the entry (or the checkpoint's entry)."""

    seq: int
    problem: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.problem}"


@dataclass
class ChainChecker:
    """Feed entries in ``seq`` order; remembers the first break and the hashes checkpoints
    need. Streaming, so a long trail is checked without holding it in memory (only the
    hashes at checkpointed sequence numbers are kept)."""

    wanted: set[int] = field(default_factory=set)  # seqs that have a checkpoint
    count: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    broken: Break | None = None
    hashes: dict[int, str] = field(default_factory=dict)

    def feed(self, entries: Iterable[AuditEntry]) -> None:
        for entry in entries:
            if self.broken is not None:
                return
            self._check(entry)

    def _check(self, entry: AuditEntry) -> None:
        expected = self.last_seq + 1
        if entry.seq != expected:
            if entry.seq > expected:
                missing = (
                    f"entry {expected} is missing"
                    if entry.seq == expected + 1
                    else f"entries {expected}..{entry.seq - 1} are missing"
                )
                self.broken = Break(expected, f"{missing} (the next entry is {entry.seq})")
            else:
                self.broken = Break(entry.seq, f"sequence number out of order after {expected - 1}")
            return
        if entry.compute_hash() != entry.entry_hash:
            self.broken = Break(entry.seq, "its contents do not match its entry_hash (altered)")
            return
        if entry.prev_hash != self.last_hash:
            previous = "the genesis hash" if entry.seq == 1 else f"entry {entry.seq - 1}'s hash"
            self.broken = Break(entry.seq, f"prev_hash does not match {previous}")
            return
        self.count += 1
        self.last_seq = entry.seq
        self.last_hash = entry.entry_hash
        if entry.seq in self.wanted:
            self.hashes[entry.seq] = entry.entry_hash


def check_checkpoint(
    checkpoint: Checkpoint, chain: ChainChecker, public_key: PublicKeyTypes | None
) -> Break | None:
    """A checkpoint against the verified chain and the audit public key it names."""
    if public_key is None:
        return Break(checkpoint.seq, f"checkpoint signed by unknown audit key {checkpoint.key_id}")
    if not signature_valid(checkpoint, public_key):
        return Break(checkpoint.seq, "checkpoint signature does not verify (forged or altered)")
    if checkpoint.seq > chain.last_seq:
        return Break(
            chain.last_seq + 1,
            f"missing: a signed checkpoint covers entry {checkpoint.seq} but the trail ends at "
            f"{chain.last_seq} (entries deleted)",
        )
    if chain.hashes.get(checkpoint.seq) != checkpoint.entry_hash:
        return Break(
            checkpoint.seq,
            "its hash differs from the signed checkpoint (the chain was rewritten up to here)",
        )
    return None
