"""The monitor's storage: watch list, per-log state and matches, one transaction per batch.

``commit_batch`` writes a log's new position and compact range together with the matches and
names found in the entries up to it, so a monitor killed at any point resumes from the last
committed position: the entries after it were not recorded, the ones before it were recorded
exactly once (and ``tbs_sha256`` is UNIQUE, so even a replayed batch cannot add a second row).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ct_monitor.merkle import CompactRange
from ct_monitor.watchlist import WatchItem, parse_watch_item
from storage.models import Certificate, Issuer
from storage.models_ct import CTLogState, CTMatch, CTNameSeen, CTWatch

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class LogState:
    """In-memory copy of a ``ct_log_state`` row; ``compact_range.size`` is the position."""

    log_url: str
    kind: str
    compact_range: CompactRange = field(default_factory=CompactRange)
    verified_range: CompactRange = field(default_factory=CompactRange)
    verified_root: bytes | None = None
    verified_timestamp_ms: int | None = None
    tree_size_seen: int = 0
    last_success: dt.datetime | None = None
    last_error: str | None = None
    last_error_at: dt.datetime | None = None

    @property
    def position(self) -> int:
        return self.compact_range.size

    @property
    def verified_size(self) -> int:
        return self.verified_range.size

    @property
    def lag(self) -> int:
        """Entries the log has (per the latest tree head seen) that are not verified yet."""
        return max(0, self.tree_size_seen - self.verified_size)


@dataclass(frozen=True)
class MatchRecord:
    """A matched entry, ready to be stored (one ``ct_matches`` row per ``tbs_sha256``)."""

    log_url: str
    entry_index: int
    entry_type: str
    names: list[str]
    issuer: str
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    tbs_sha256: str
    cert_sha256: str | None
    der: bytes | None
    finding: str | None
    serial: str | None
    notes: list[str]


def _hexes(cr: CompactRange) -> list[str]:
    return [h.hex() for h in cr.hashes]


def _range(size: int, hexes: Sequence[object]) -> CompactRange:
    return CompactRange(size, [bytes.fromhex(str(h)) for h in hexes])


def _state_from_row(row: CTLogState) -> LogState:
    return LogState(
        log_url=row.log_url,
        kind=row.kind,
        compact_range=_range(row.position, row.compact_range),
        verified_range=_range(row.verified_size, row.verified_range),
        verified_root=bytes.fromhex(row.verified_root) if row.verified_root else None,
        verified_timestamp_ms=row.verified_timestamp_ms,
        tree_size_seen=row.tree_size_seen,
        last_success=row.last_success,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
    )


def _sni_name(name: str) -> str | None:
    """A concrete DNS name worth offering to the scanner (no wildcard, no garbage)."""
    text = name.strip().rstrip(".").lower()
    if not text or "*" in text or "?" in text or " " in text or not text.isascii():
        return None
    return text


class CTStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock = utcnow) -> None:
        self._sessions = sessions
        self._clock = clock
        # Logs run concurrently in one process; serialising the batch transactions keeps two
        # logs from racing to insert the same tbs_sha256 (SQLite has one writer anyway).
        self._write_lock = asyncio.Lock()
        self._issuer_names: dict[str, str] | None = None

    # -- watch list ---------------------------------------------------------------------------

    async def watch_add(self, text: str) -> tuple[str, bool]:
        """Normalise and add; (canonical pattern, True if it was new). WatchListError if bad."""
        pattern = parse_watch_item(text).pattern
        async with self._sessions.begin() as session:
            if await session.get(CTWatch, pattern) is not None:
                return pattern, False
            session.add(CTWatch(pattern=pattern, created_at=self._clock()))
        return pattern, True

    async def watch_remove(self, text: str) -> tuple[str, bool]:
        pattern = parse_watch_item(text).pattern
        async with self._sessions.begin() as session:
            row = await session.get(CTWatch, pattern)
            if row is None:
                return pattern, False
            await session.delete(row)
        return pattern, True

    async def watch_items(self) -> list[WatchItem]:
        async with self._sessions() as session:
            patterns = (await session.scalars(select(CTWatch.pattern).order_by("pattern"))).all()
        return [parse_watch_item(p) for p in patterns]

    # -- log state ----------------------------------------------------------------------------

    async def load_state(self, log_url: str, kind: str) -> LogState:
        async with self._sessions() as session:
            row = await session.get(CTLogState, log_url)
        return LogState(log_url, kind) if row is None else _state_from_row(row)

    async def all_states(self) -> list[LogState]:
        async with self._sessions() as session:
            rows = (await session.scalars(select(CTLogState).order_by(CTLogState.log_url))).all()
        return [_state_from_row(r) for r in rows]

    def _write_state(self, row: CTLogState, state: LogState) -> None:
        row.kind = state.kind
        row.position = state.position
        row.compact_range = _hexes(state.compact_range)
        row.verified_size = state.verified_size
        row.verified_range = _hexes(state.verified_range)
        row.verified_root = state.verified_root.hex() if state.verified_root else None
        row.verified_timestamp_ms = state.verified_timestamp_ms
        row.tree_size_seen = state.tree_size_seen
        row.last_success = state.last_success
        row.last_error = state.last_error
        row.last_error_at = state.last_error_at
        row.updated_at = self._clock()

    async def _upsert_state(self, session: AsyncSession, state: LogState) -> None:
        row = await session.get(CTLogState, state.log_url)
        if row is None:
            row = CTLogState(log_url=state.log_url)
            session.add(row)
        self._write_state(row, state)

    async def save_state(self, state: LogState) -> None:
        async with self._write_lock, self._sessions.begin() as session:
            await self._upsert_state(session, state)

    async def commit_batch(self, state: LogState, matches: Sequence[MatchRecord]) -> list[int]:
        """Store the state and the batch's matches atomically; the ids of new rows that carry
        a finding (the alerts to send). Retried once if another writer inserted the same
        ``tbs_sha256`` concurrently (UNIQUE violation)."""
        for attempt in (1, 2):
            try:
                async with self._write_lock, self._sessions.begin() as session:
                    new_ids = await self._store_matches(session, matches)
                    await self._upsert_state(session, state)
                return new_ids
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _store_matches(
        self, session: AsyncSession, matches: Sequence[MatchRecord]
    ) -> list[int]:
        if not matches:
            return []
        now = self._clock()
        by_tbs: dict[str, CTMatch] = {}
        wanted = sorted({m.tbs_sha256 for m in matches})
        existing = (
            await session.scalars(select(CTMatch).where(CTMatch.tbs_sha256.in_(wanted)))
        ).all()
        by_tbs.update({row.tbs_sha256: row for row in existing})
        created: list[CTMatch] = []
        names: set[str] = set()
        for m in matches:
            names.update(n for n in (_sni_name(x) for x in m.names) if n)
            row = by_tbs.get(m.tbs_sha256)
            if row is None:
                row = CTMatch(
                    log_url=m.log_url,
                    entry_index=m.entry_index,
                    entry_type=m.entry_type,
                    names=list(m.names),
                    issuer=m.issuer,
                    not_before=m.not_before,
                    not_after=m.not_after,
                    tbs_sha256=m.tbs_sha256,
                    cert_sha256=m.cert_sha256,
                    der=m.der,
                    finding=m.finding,
                    created_at=now,
                    serial=m.serial,
                    notes=list(m.notes) or None,
                )
                session.add(row)
                by_tbs[m.tbs_sha256] = row
                created.append(row)
            elif m.cert_sha256 and not row.cert_sha256:
                # The final certificate of an issuance first seen as a precertificate: same
                # row (RFC 6962 §3.1), now with the certificate itself.
                row.cert_sha256 = m.cert_sha256
                row.der = m.der
        await self._touch_names(session, names, now)
        await session.flush()
        return [row.id for row in created if row.finding]

    async def _touch_names(self, session: AsyncSession, names: set[str], now: dt.datetime) -> None:
        if not names:
            return
        ordered = sorted(names)
        seen = set(
            await session.scalars(select(CTNameSeen.name).where(CTNameSeen.name.in_(ordered)))
        )
        if seen:
            await session.execute(
                update(CTNameSeen).where(CTNameSeen.name.in_(sorted(seen))).values(last_seen=now)
            )
        for name in ordered:
            if name not in seen:
                session.add(CTNameSeen(name=name, first_seen=now, last_seen=now))

    async def record_error(self, state: LogState, message: str) -> None:
        state.last_error = message[:2000]
        state.last_error_at = self._clock()
        await self.save_state(state)

    # -- matches and alerts -------------------------------------------------------------------

    async def matches(self) -> list[CTMatch]:
        async with self._sessions() as session:
            return list((await session.scalars(select(CTMatch).order_by(CTMatch.id))).all())

    async def unnotified(self, ids: Sequence[int] | None = None) -> list[CTMatch]:
        """Rows with a finding whose alert was not handed to the sink yet (at-least-once)."""
        query = select(CTMatch).where(CTMatch.finding.is_not(None), CTMatch.notified_at.is_(None))
        if ids is not None:
            query = query.where(CTMatch.id.in_(list(ids)))
        async with self._sessions() as session:
            return list((await session.scalars(query.order_by(CTMatch.id))).all())

    async def mark_notified(self, match_id: int) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(CTMatch).where(CTMatch.id == match_id).values(notified_at=self._clock())
            )

    async def names_seen(self) -> list[CTNameSeen]:
        async with self._sessions() as session:
            return list((await session.scalars(select(CTNameSeen).order_by(CTNameSeen.name))).all())

    # -- did certyard issue it? ---------------------------------------------------------------

    async def issued_by_certyard(self, tbs_sha256: str, serial: str | None, issuer: str) -> bool:
        """certyard records the SHA-256 of every TBS it signs (ca/issuance.py); its certificates
        carry no CT extensions, so that is our tbs_sha256. Fallback: same serial from an issuer
        of ours with the same subject name (a certificate re-signed with SCTs, say)."""
        async with self._sessions() as session:
            hit = await session.scalar(
                select(Certificate.id).where(Certificate.tbs_sha256 == tbs_sha256).limit(1)
            )
            if hit is not None:
                return True
            if serial is None:
                return False
            issuer_id = await session.scalar(
                select(Certificate.issuer_id).where(Certificate.serial == serial)
            )
            if issuer_id is None:
                return False
            if self._issuer_names is None or issuer_id not in self._issuer_names:
                self._issuer_names = {}
                for row in (await session.scalars(select(Issuer))).all():
                    try:
                        name = x509.load_pem_x509_certificate(row.cert_pem.encode()).subject
                        self._issuer_names[row.id] = name.rfc4514_string()
                    except ValueError:
                        continue
            return self._issuer_names.get(issuer_id) == issuer
