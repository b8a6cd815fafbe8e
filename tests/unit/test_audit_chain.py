"""Chain verification in memory: continuity, hashes, checkpoints, the first broken entry."""

from __future__ import annotations

import dataclasses
import datetime as dt

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from audit.chain import (
    GENESIS_HASH,
    AuditEntry,
    ChainChecker,
    Checkpoint,
    check_checkpoint,
    signature_valid,
)
from audit.keys import key_id

T0 = dt.datetime(2026, 11, 25, 6, 0, tzinfo=dt.UTC)


def chain(count: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev = GENESIS_HASH
    for seq in range(1, count + 1):
        entry = AuditEntry(
            seq=seq,
            time=T0 + dt.timedelta(seconds=seq),
            actor="acme:acct",
            action="certificate.issue",
            target=f"serial:{seq:02x}",
            outcome="success",
            details={"names": [f"h{seq}.example.com"]},
            request_id=f"req-{seq}",
            prev_hash=prev,
        )
        entry = dataclasses.replace(entry, entry_hash=entry.compute_hash())
        entries.append(entry)
        prev = entry.entry_hash
    return entries


def check(entries: list[AuditEntry]) -> ChainChecker:
    checker = ChainChecker()
    checker.feed(entries)
    return checker


def test_an_intact_chain_verifies() -> None:
    checker = check(chain(6))
    assert checker.broken is None and checker.count == 6 and checker.last_seq == 6


def test_altered_details_name_that_entry() -> None:
    entries = chain(6)
    entries[2] = dataclasses.replace(entries[2], details={"names": ["evil.example.com"]})
    broken = check(entries).broken
    assert broken is not None and broken.seq == 3 and "altered" in broken.problem
    assert str(broken).startswith("entry 3:")


def test_a_rehashed_entry_breaks_the_next_link() -> None:
    entries = chain(6)
    forged = dataclasses.replace(entries[2], actor="someone-else")
    entries[2] = dataclasses.replace(forged, entry_hash=forged.compute_hash())
    broken = check(entries).broken
    assert broken is not None and broken.seq == 4 and "prev_hash" in broken.problem


def test_a_deleted_entry_is_a_gap() -> None:
    entries = chain(6)
    del entries[3]
    broken = check(entries).broken
    assert broken is not None and broken.seq == 4 and "entry 4 is missing" in broken.problem


def test_the_first_entry_must_follow_the_genesis_hash() -> None:
    broken = check(chain(3)[1:]).broken
    assert broken is not None and broken.seq == 1


def _signed(key: ec.EllipticCurvePrivateKey, seq: int, entry_hash: str) -> Checkpoint:
    draft = Checkpoint(seq=seq, entry_hash=entry_hash, time=T0, key_id=key_id(key.public_key()))
    signature = key.sign(draft.payload(), ec.ECDSA(hashes.SHA256()))
    return dataclasses.replace(draft, signature=signature)


def test_checkpoints_catch_a_chain_rewritten_consistently() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    entries = chain(5)
    checkpoint = _signed(key, 4, entries[3].entry_hash)
    checker = ChainChecker(wanted={4})
    checker.feed(entries)
    assert check_checkpoint(checkpoint, checker, key.public_key()) is None
    # Rewrite entry 2 and re-link everything after it: the chain alone looks fine ...
    rewritten = entries[:1]
    for entry in entries[1:]:
        changed = dataclasses.replace(entry, prev_hash=rewritten[-1].entry_hash)
        if entry.seq == 2:
            changed = dataclasses.replace(changed, details={"names": ["evil.example.com"]})
        rewritten.append(dataclasses.replace(changed, entry_hash=changed.compute_hash()))
    checker = ChainChecker(wanted={4})
    checker.feed(rewritten)
    assert checker.broken is None
    # ... but no longer matches what the audit key signed.
    broken = check_checkpoint(checkpoint, checker, key.public_key())
    assert broken is not None and broken.seq == 4


def test_a_forged_checkpoint_fails() -> None:
    key, other = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    entries = chain(3)
    good = _signed(key, 3, entries[2].entry_hash)
    assert signature_valid(good, key.public_key())
    assert not signature_valid(good, other.public_key())
    altered = dataclasses.replace(good, seq=2, entry_hash=entries[1].entry_hash)
    assert not signature_valid(altered, key.public_key())
    checker = ChainChecker(wanted={2, 3})
    checker.feed(entries)
    broken = check_checkpoint(altered, checker, key.public_key())
    assert broken is not None and broken.seq == 2 and "signature" in broken.problem
    assert check_checkpoint(good, checker, None) is not None  # unknown key
