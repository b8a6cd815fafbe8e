"""Verify the whole audit trail: chain, sequence, head, checkpoints (``certyard audit verify``).

Entries are streamed in ``seq`` order through :class:`audit.chain.ChainChecker`; then every
checkpoint is checked against the audit public key it names and against the verified chain.
The answer is the first problem by sequence number, so an operator knows where to look.

Which public keys are trusted: the ones pinned by the caller (``--public-key``), else the
stored ``audit_keys`` rows after the key backend confirmed it holds each key (its public half
read from the token must equal the stored one): a forged key row does not pass.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit.chain import Break, ChainChecker, Checkpoint, check_checkpoint
from audit.errors import AuditError
from audit.keys import key_id
from audit.trail import iter_entries
from ca.errors import CAError
from ca.keys import KeyBackend, spki_der
from storage.models_audit import HEAD_ID, AuditCheckpointRow, AuditHead, AuditKeyRow

# Confirms a stored key row against the key backend; returns the backend's public key.
KeyConfirmer = Callable[[AuditKeyRow], Awaitable[PublicKeyTypes]]


@dataclass(frozen=True)
class VerifyResult:
    entries: int
    checkpoints: int
    broken: Break | None

    @property
    def ok(self) -> bool:
        return self.broken is None


async def load_checkpoints(session: AsyncSession) -> list[Checkpoint]:
    rows = (
        await session.execute(select(AuditCheckpointRow).order_by(AuditCheckpointRow.seq))
    ).scalars()
    return [
        Checkpoint(
            seq=row.seq,
            entry_hash=row.entry_hash,
            time=row.time,
            key_id=row.key_id,
            signature=row.signature,
            algorithm=row.algorithm,
        )
        for row in rows
    ]


def backend_confirmer(backend: KeyBackend) -> KeyConfirmer:
    """Confirms a stored audit key against ``backend``: the key must load there and its public
    half must be the stored one. AuditError otherwise."""

    async def confirm(row: AuditKeyRow) -> PublicKeyTypes:
        if row.key_backend != backend.name:
            raise AuditError(f"audit key {row.id} is in backend {row.key_backend!r}")
        try:
            await backend.load(row.key_ref, row.key_blob)
        except CAError as exc:
            raise AuditError(
                f"audit key {row.id} could not be checked against the key backend ({exc.detail});"
                " pin the key with --public-key to verify without it",
                exc,
            ) from exc
        public_key = backend.public_key(row.key_ref)
        if spki_der(public_key) != row.public_key_der:
            raise AuditError(f"audit key {row.id}: the stored public key is not the backend's")
        return public_key

    return confirm


async def trusted_keys(
    sessions: async_sessionmaker[AsyncSession], confirm: KeyConfirmer
) -> dict[str, PublicKeyTypes]:
    """The stored audit keys, each confirmed by the key backend (see the module docstring)."""
    async with sessions() as session:
        rows = list((await session.execute(select(AuditKeyRow))).scalars())
    keys: dict[str, PublicKeyTypes] = {}
    for row in rows:
        public_key = await confirm(row)
        if key_id(public_key) == row.id:
            keys[row.id] = public_key
    return keys


async def verify_trail(
    sessions: async_sessionmaker[AsyncSession], keys: dict[str, PublicKeyTypes]
) -> VerifyResult:
    try:
        async with sessions() as session:
            checkpoints = await load_checkpoints(session)
            head = await session.get(AuditHead, HEAD_ID)
        # The head is read before the entries: appends made meanwhile only extend the chain.
        head_seq, head_hash = (head.seq, head.entry_hash) if head is not None else (0, "")
        chain = ChainChecker(wanted={c.seq for c in checkpoints} | {head_seq})
        async for entry in iter_entries(sessions):
            chain.feed([entry])
            if chain.broken is not None:
                break
    except SQLAlchemyError as exc:
        raise AuditError("the audit trail could not be read", exc) from exc
    problems: list[Break] = []
    if chain.broken is not None:
        problems.append(chain.broken)
    for checkpoint in checkpoints:
        # Beyond a chain break the chain's hashes are unknown; the break is reported instead.
        if chain.broken is not None and checkpoint.seq >= chain.broken.seq:
            continue
        problem = check_checkpoint(checkpoint, chain, keys.get(checkpoint.key_id))
        if problem is not None:
            problems.append(problem)
    if chain.broken is None and head is not None and head_seq > 0:
        # The head is written with every entry: a trail shorter than its head lost entries.
        if head_seq > chain.last_seq:
            problems.append(
                Break(
                    chain.last_seq + 1,
                    f"missing: the chain head is at entry {head_seq} but the trail ends at "
                    f"{chain.last_seq} (entries deleted)",
                )
            )
        elif chain.hashes.get(head_seq) != head_hash:
            problems.append(Break(head_seq, "its hash differs from the chain head's"))
    broken = min(problems, key=lambda b: b.seq) if problems else None
    return VerifyResult(chain.count, len(checkpoints), broken)
