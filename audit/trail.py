"""The append-only, hash-chained audit trail in the database (docs/audit.md).

Appending (``append`` in the caller's transaction, ``record`` in one of its own):

1. ``UPDATE audit_head SET seq = seq + 1 ... RETURNING seq, entry_hash`` - the first statement
   of the transaction, so it takes the head row's lock on PostgreSQL (other instances wait
   until this transaction ends, then see the new head: READ COMMITTED re-reads an updated row)
   and the database write lock on SQLite (busy_timeout waits for it). Entries are therefore
   numbered without gaps and each one names the hash of the one before it.
2. the entry is hashed (``audit.chain``) and inserted; the head takes its hash.

A failed write raises :class:`AuditError` and leaves nothing behind (the transaction rolls
back, the sequence number included). After an entry commits, ``record`` makes a signed
checkpoint when one is due (``audit.config.AuditSettings``); a failed checkpoint is logged and
retried with the next entry, it never fails the entry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import getpass
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit.canonical import normalize
from audit.chain import AuditEntry, Checkpoint
from audit.config import AuditSettings
from audit.errors import AuditError
from audit.keys import AuditSigner
from storage.models_audit import HEAD_ID, AuditCheckpointRow, AuditEntryRow, AuditHead

log = structlog.get_logger("certyard.audit")

MAX_ACTOR = 255
MAX_ACTION = 64
MAX_TARGET = 1024
MAX_OUTCOME = 32
MAX_REQUEST_ID = 128
BATCH = 500
CHECKPOINT_RETRY_SECONDS = 60.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def cli_actor() -> str:
    """Who runs a command line: "cli:<login name>"."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli:unknown"


def current_request_id() -> str | None:
    """The request id bound with ``structlog.contextvars.bind_contextvars(request_id=...)`` by
    the front end serving the current request, if any."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return None if value is None else str(value)[:MAX_REQUEST_ID]


class AuditTrail:
    """Implements :class:`audit.recorder.AuditRecorder` on the database.

    ``signer`` signs checkpoints; without one (a CLI command that only appends) no checkpoint
    is made here and the server makes the next one."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: AuditSettings | None = None,
        *,
        signer: AuditSigner | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self._sessions = sessions
        self._settings = settings or AuditSettings()
        self._signer = signer
        self._clock = clock
        self._checkpoint_lock = asyncio.Lock()
        # The last checkpoint this process knows of (seq, monotonic time); refreshed from the
        # database before making one, so instances do not sign the same head twice.
        self._last_checkpoint: tuple[int, float] | None = None
        self._started = time.monotonic()
        self._retry_at = 0.0  # after a failed checkpoint (HSM down), wait before trying again

    async def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str = "success",
        details: dict[str, Any] | None = None,
    ) -> None:
        await self.record_entry(
            actor=actor, action=action, target=target, outcome=outcome, details=details
        )

    async def record_entry(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str = "success",
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> AuditEntry:
        """``record``, returning the entry written."""
        try:
            async with self._sessions() as session, session.begin():
                entry = await self.append(
                    session,
                    actor=actor,
                    action=action,
                    target=target,
                    outcome=outcome,
                    details=details,
                    request_id=request_id,
                )
        except SQLAlchemyError as exc:
            log.error("audit_write_failed", action=action, error=type(exc).__name__)
            raise AuditError("the audit entry could not be written", exc) from exc
        await self._maybe_checkpoint(entry.seq)
        return entry

    async def append(
        self,
        session: AsyncSession,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str = "success",
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> AuditEntry:
        """Append in ``session``'s transaction (see :func:`append_entry`)."""
        return await append_entry(
            session,
            now=self._clock(),
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            details=details,
            request_id=request_id,
        )

    # --- checkpoints ---------------------------------------------------------------------------

    async def checkpoint(self) -> Checkpoint | None:
        """Sign the current head now (``certyard audit checkpoint``). None when the trail is
        empty or its head is already checkpointed."""
        if self._signer is None:
            raise AuditError("no audit key backend: checkpoints need the CA's key backend")
        async with self._checkpoint_lock:
            try:
                async with self._sessions() as session:
                    head = (
                        await session.execute(
                            select(AuditEntryRow.seq, AuditEntryRow.entry_hash)
                            .order_by(AuditEntryRow.seq.desc())
                            .limit(1)
                        )
                    ).one_or_none()
                    done = await session.scalar(select(func.max(AuditCheckpointRow.seq)))
            except SQLAlchemyError as exc:
                raise AuditError("the audit head could not be read", exc) from exc
            if head is None or (done is not None and done >= head[0]):
                self._last_checkpoint = (int(done or 0), time.monotonic())
                return None
            key = await self._signer.key()
            draft = Checkpoint(
                seq=int(head[0]), entry_hash=str(head[1]), time=self._clock(), key_id=key.id
            )
            _, signature = await self._signer.sign(draft.payload())
            made = dataclasses.replace(draft, signature=signature)
            try:
                async with self._sessions() as session, session.begin():
                    session.add(
                        AuditCheckpointRow(
                            seq=made.seq,
                            entry_hash=made.entry_hash,
                            time=made.time,
                            key_id=made.key_id,
                            algorithm=made.algorithm,
                            signature=made.signature,
                        )
                    )
            except IntegrityError:
                # Another instance checkpointed the same head first: that one stands.
                self._last_checkpoint = (made.seq, time.monotonic())
                return None
            except SQLAlchemyError as exc:
                raise AuditError("the audit checkpoint could not be stored", exc) from exc
            self._last_checkpoint = (made.seq, time.monotonic())
            log.info("audit_checkpoint", seq=made.seq, key=made.key_id)
            return made

    def checkpoint_due(self, seq: int) -> bool:
        every_entries = self._settings.checkpoint_every_entries
        every_seconds = self._settings.checkpoint_every_seconds
        last_seq, last_time = self._last_checkpoint or (0, self._started)
        if seq <= last_seq:
            return False
        if every_entries and seq - last_seq >= every_entries:
            return True
        return bool(every_seconds) and time.monotonic() - last_time >= every_seconds

    async def _maybe_checkpoint(self, seq: int) -> None:
        if self._signer is None or not self.checkpoint_due(seq):
            return
        if time.monotonic() < self._retry_at:
            return
        if self._last_checkpoint is None:
            await self._load_last_checkpoint()
            if not self.checkpoint_due(seq):
                return
        try:
            await self.checkpoint()
        except AuditError as exc:
            # The entry is safely written; an entry after the back-off (or the periodic task)
            # tries again, so a dead HSM does not add its timeout to every entry.
            self._retry_at = time.monotonic() + CHECKPOINT_RETRY_SECONDS
            log.warning("audit_checkpoint_failed", error=exc.detail)

    async def _load_last_checkpoint(self) -> None:
        try:
            async with self._sessions() as session:
                done = await session.scalar(select(func.max(AuditCheckpointRow.seq)))
        except SQLAlchemyError:
            return
        if done is not None:
            self._last_checkpoint = (int(done), self._started)

    async def run_checkpoints(self, interval: float | None = None) -> None:
        """Run forever (a server task; cancel it to stop): every ``interval`` seconds (default
        checkpoint_every_seconds) sign the head if it has new entries since the last
        checkpoint."""
        period = interval or self._settings.checkpoint_every_seconds
        if not period or self._signer is None:
            return
        while True:
            await asyncio.sleep(period)
            try:
                await self.checkpoint()
            except AuditError as exc:
                log.warning("audit_checkpoint_failed", error=exc.detail)

    # --- reading -------------------------------------------------------------------------------

    async def entries(self, since: int = 0) -> AsyncIterator[AuditEntry]:
        """Every entry with seq > ``since``, in order, read in batches."""
        async for entry in iter_entries(self._sessions, since):
            yield entry


async def append_entry(
    session: AsyncSession,
    *,
    now: dt.datetime,
    actor: str,
    action: str,
    target: str,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> AuditEntry:
    """Append in ``session``'s transaction: the entry commits or rolls back with the change it
    records. Locks the chain head until that transaction ends - keep it short. Raises
    AuditError on bad fields, SQLAlchemyError from the database."""
    fields = _checked(actor, action, target, outcome, request_id or current_request_id())
    clean = normalize(details or {})
    if not isinstance(clean, dict):
        raise AuditError("audit details must be a JSON object")
    head = (
        await session.execute(
            update(AuditHead)
            .where(AuditHead.id == HEAD_ID)
            .values(seq=AuditHead.seq + 1)
            .returning(AuditHead.seq, AuditHead.entry_hash)
        )
    ).one_or_none()
    if head is None:
        raise AuditError("the audit head row is missing (run certyard db upgrade)")
    entry = AuditEntry(
        seq=int(head[0]),
        time=now.astimezone(dt.UTC),
        actor=fields[0],
        action=fields[1],
        target=fields[2],
        outcome=fields[3],
        details=clean,
        request_id=fields[4],
        prev_hash=str(head[1]),
    )
    entry = dataclasses.replace(entry, entry_hash=entry.compute_hash())
    session.add(
        AuditEntryRow(
            seq=entry.seq,
            time=entry.time,
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            outcome=entry.outcome,
            details=entry.details,
            request_id=entry.request_id,
            prev_hash=entry.prev_hash,
            entry_hash=entry.entry_hash,
        )
    )
    await session.execute(
        update(AuditHead).where(AuditHead.id == HEAD_ID).values(entry_hash=entry.entry_hash)
    )
    await session.flush()
    return entry


async def iter_entries(
    sessions: async_sessionmaker[AsyncSession], since: int = 0
) -> AsyncIterator[AuditEntry]:
    last = since
    while True:
        async with sessions() as session:
            rows = (
                await session.execute(
                    select(AuditEntryRow)
                    .where(AuditEntryRow.seq > last)
                    .order_by(AuditEntryRow.seq)
                    .limit(BATCH)
                )
            ).scalars()
            batch = [entry_of(row) for row in rows]
        if not batch:
            return
        for entry in batch:
            yield entry
        last = batch[-1].seq


def entry_of(row: AuditEntryRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        time=row.time,
        actor=row.actor,
        action=row.action,
        target=row.target,
        outcome=row.outcome,
        details=row.details if isinstance(row.details, dict) else {"_": row.details},
        request_id=row.request_id,
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
    )


def _checked(
    actor: str, action: str, target: str, outcome: str, request_id: str | None
) -> tuple[str, str, str, str, str | None]:
    for name, value, limit in (
        ("actor", actor, MAX_ACTOR),
        ("action", action, MAX_ACTION),
        ("target", target, MAX_TARGET),
        ("outcome", outcome, MAX_OUTCOME),
    ):
        if not isinstance(value, str) or not 0 < len(value) <= limit:
            raise AuditError(f"audit {name} must be 1 to {limit} characters")
    return actor, action, target, outcome, request_id
