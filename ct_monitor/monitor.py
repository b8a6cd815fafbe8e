"""Tail CT logs: download every entry, verify the tree, match the watch list, store, alert.

Per log (certspotter's design):

1. Fetch the latest tree head (the client verified its signature). Against the verified tree
   head stored: the same size with another root, or a consistency proof (RFC 6962 §2.1.2,
   verified per RFC 9162 §2.1.4.2) that fails, is a split view -> ``LogMisbehaviour``.
2. Download entries from the stored position up to the tree head, ``batch_size`` a request,
   ``parallel_downloads`` requests at a time; short answers are continued from the next index.
3. Batches are processed strictly in order: each leaf hash is appended to the compact range
   (RFC 6962 §2.1), each certificate matched; the new position, compact range and the batch's
   matches are committed in one transaction.
4. When the compact range reaches the tree head's size its root must equal the signed root:
   then the tree head becomes the verified one. A different root -> ``LogMisbehaviour``: a
   high-severity alert naming the log and the sizes, ``last_error`` recorded, and the position
   rewound to the verified tree head (the verified position never advances past a bad root).

Rate limits: ``RateLimited`` (the client waits out short Retry-After values itself) makes this
log wait ``max(Retry-After, backoff)``, the backoff doubling up to ``max_backoff_seconds``;
other logs carry on. ``lag()`` = latest tree size seen - verified position.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog

from ct_monitor.certinfo import entry_info, parse_entry
from ct_monitor.config import CTSettings
from ct_monitor.feed import (
    AllowList,
    classify,
    match_record,
    misbehaviour_alert,
    unknown_issuance_alert,
)
from ct_monitor.merkle import ProofError, verify_consistency
from ct_monitor.state import CTStore, LogState, MatchRecord, utcnow
from ct_monitor.static_ct import TILE_WIDTH
from ct_monitor.types import (
    LogClient,
    LogEntry,
    LogError,
    LogMisbehaviour,
    RateLimited,
    TreeHead,
)
from ct_monitor.watchlist import WatchItem, match_names
from notify.events import Notification, NotificationSink, NullSink

log = structlog.get_logger("ct_monitor")

Sleep = Callable[[float], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class LogStatus:
    log_url: str
    kind: str
    tree_size: int
    position: int
    verified_size: int
    lag: int
    last_success: dt.datetime | None
    last_error: str | None


class Monitor:
    """Tails a set of logs into a ``CTStore``; alerts go to ``sink``."""

    def __init__(
        self,
        store: CTStore,
        clients: Sequence[LogClient],
        settings: CTSettings,
        *,
        sink: NotificationSink | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.store = store
        self.clients = list(clients)
        self.settings = settings
        self.sink: NotificationSink = sink or NullSink()
        self.allow = AllowList.parse(settings.authorized_issuers)
        self._clock = clock
        self._states: dict[str, LogState] = {}
        self._watch: list[WatchItem] = []
        self._stop = asyncio.Event()
        self._last_sth: dict[str, TreeHead] = {}
        self._committed_at: dict[str, float] = {}  # monotonic time of the last state commit
        self._clock_s = time.monotonic

    # -- public -------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def lag(self, log_url: str) -> int:
        """Entries behind the latest tree head seen (for metrics and ``ct status``)."""
        state = self._states.get(log_url)
        return state.lag if state else 0

    def statuses(self) -> list[LogStatus]:
        return [status_of(s) for s in self._states.values()]

    async def run(self, *, once: bool = False) -> dict[str, str | None]:
        """Tail every log; with ``once`` return when each is caught up (or gave up).

        Returns ``{log_url: last error or None}`` for the logs of this run.
        """
        self._watch = await self.store.watch_items()
        await self._resend_alerts()
        results = await asyncio.gather(*(self._run_log(c, once) for c in self.clients))
        return dict(zip((c.url for c in self.clients), results, strict=True))

    async def sync_once(self, client: LogClient) -> TreeHead:
        """Catch one log up to its latest tree head and verify it (raises on failure)."""
        state = await self._state(client)
        sth = await client.get_tree_head()
        self._last_sth[client.url] = sth
        state.tree_size_seen = max(state.tree_size_seen, sth.tree_size)
        await self._check_against_verified(client, state, sth)
        if sth.tree_size > state.position:
            await self._download(client, state, sth)
        elif sth.tree_size == state.position and state.verified_size < sth.tree_size:
            # Killed after the last batch but before verifying: verify now.
            await self._verify_root(client, state, sth, [])
        else:
            state.last_success = self._clock()
            state.last_error = None
            await self.store.save_state(state)
        return sth

    # -- per log loop -------------------------------------------------------------------------

    async def _run_log(self, client: LogClient, once: bool) -> str | None:
        backoff = 1.0
        errors = 0
        while not self._stop.is_set():
            try:
                await self.sync_once(client)
            except LogMisbehaviour as exc:
                await self._misbehaviour(client, exc)
                if once:
                    return exc.detail
                await self._sleep(self.settings.poll_seconds)
                continue
            except RateLimited as exc:
                errors += 1
                wait = max(exc.retry_after_s, backoff)
                backoff = min(backoff * 2, self.settings.max_backoff_seconds)
                log.info("ct_rate_limited", log=client.url, wait_s=round(wait, 2))
                await self._note_error(client, exc.detail)
                if once and errors >= self.settings.once_max_errors:
                    return exc.detail
                await self._sleep(wait)
                continue
            except (LogError, ValueError, OSError) as exc:
                # ValueError/OSError: a client or parser surprise on this log's data or socket;
                # one log must not stop the others (counted and backed off like a log error).
                detail = exc.detail if isinstance(exc, LogError) else f"{type(exc).__name__}: {exc}"
                errors += 1
                log.warning("ct_log_error", log=client.url, error=detail)
                await self._note_error(client, detail)
                if once and errors >= self.settings.once_max_errors:
                    return detail
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.settings.max_backoff_seconds)
                continue
            errors = 0
            backoff = 1.0
            if once:
                return None
            await self._sleep(self.settings.poll_seconds)
            self._watch = await self.store.watch_items()  # pick up watch list edits
            await self._resend_alerts()
        return None

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _state(self, client: LogClient) -> LogState:
        state = self._states.get(client.url)
        if state is None:
            state = await self.store.load_state(client.url, client.description.kind)
            self._states[client.url] = state
        return state

    async def _note_error(self, client: LogClient, message: str) -> None:
        state = await self._state(client)
        await self.store.record_error(state, message)

    # -- verification -------------------------------------------------------------------------

    async def _check_against_verified(
        self, client: LogClient, state: LogState, sth: TreeHead
    ) -> None:
        """Split-view checks between the new tree head and the verified one."""
        vsize, vroot = state.verified_size, state.verified_root
        if vroot is None or vsize == 0 or sth.tree_size == 0:
            return
        if sth.tree_size == vsize:
            if sth.root_hash != vroot:
                raise LogMisbehaviour(
                    client.url,
                    f"two signed roots for tree size {vsize}: {vroot.hex()} and "
                    f"{sth.root_hash.hex()}",
                    (vsize, sth.tree_size),
                )
            return
        first, second = sorted((vsize, sth.tree_size))
        first_root, second_root = (
            (vroot, sth.root_hash) if vsize < sth.tree_size else (sth.root_hash, vroot)
        )
        proof = await client.get_consistency_proof(first, second)
        try:
            verify_consistency(first, second, first_root, second_root, proof)
        except ProofError as exc:
            raise LogMisbehaviour(
                client.url,
                f"tree size {second} is not consistent with tree size {first}: {exc}",
                (vsize, sth.tree_size),
            ) from None

    async def _verify_root(
        self, client: LogClient, state: LogState, sth: TreeHead, matches: list[MatchRecord]
    ) -> None:
        """The compact range has reached ``sth.tree_size``: its root must be the signed one."""
        computed = state.compact_range.root()
        if computed != sth.root_hash:
            detail = (
                f"entries 0..{sth.tree_size - 1} hash to {computed.hex()}, "
                f"the signed tree head says {sth.root_hash.hex()}"
            )
            # Keep what the entries matched (fail-safe), but rewind to the verified position.
            state.compact_range = state.verified_range.copy()
            state.last_error = f"log misbehaviour: {detail}"
            state.last_error_at = self._clock()
            await self._commit(state, matches)
            raise LogMisbehaviour(client.url, detail, (state.verified_size, sth.tree_size))
        state.verified_range = state.compact_range.copy()
        state.verified_root = sth.root_hash
        state.verified_timestamp_ms = sth.timestamp_ms
        state.last_success = self._clock()
        state.last_error = None
        await self._commit(state, matches)

    async def _misbehaviour(self, client: LogClient, exc: LogMisbehaviour) -> None:
        state = await self._state(client)
        log.error("ct_log_misbehaviour", log=client.url, sizes=list(exc.sizes), detail=exc.detail)
        if not (state.last_error or "").endswith(exc.detail):
            await self.store.record_error(state, f"log misbehaviour: {exc.detail}")
        sth = self._last_sth.get(client.url)
        evidence: dict[str, object] = {
            "verified_size": state.verified_size,
            "verified_root": state.verified_root.hex() if state.verified_root else None,
            "tree_size_seen": state.tree_size_seen,
            "signed_size": sth.tree_size if sth else None,
            "signed_root": sth.root_hash.hex() if sth else None,
            "signed_timestamp_ms": sth.timestamp_ms if sth else None,
            "signature": sth.signature.hex() if sth else None,
        }
        await self._notify(misbehaviour_alert(client.url, exc.detail, exc.sizes, evidence))

    # -- download and process -----------------------------------------------------------------

    async def _download(self, client: LogClient, state: LogState, sth: TreeHead) -> None:
        desc = client.description
        batch = max(1, desc.batch_size)
        parallel = max(1, desc.parallel_downloads)
        start, end = state.position, sth.tree_size
        if desc.kind == "tiled":
            # static-ct-api serves whole data tiles of 256 entries (c2sp.org/static-ct-api):
            # batches aligned to tiles fetch each tile once.
            batch = -(-batch // TILE_WIDTH) * TILE_WIDTH
        chunks: list[tuple[int, int]] = []
        lo = start
        while lo < end:
            hi = min(end, (lo // batch + 1) * batch)  # aligned: the first chunk may be shorter
            chunks.append((lo, hi))
            lo = hi
        pending: list[asyncio.Task[list[LogEntry]]] = []
        next_chunk = 0
        try:
            while next_chunk < len(chunks) or pending:
                while next_chunk < len(chunks) and len(pending) < parallel:
                    lo, hi = chunks[next_chunk]
                    pending.append(asyncio.create_task(self._fetch(client, lo, hi)))
                    next_chunk += 1
                entries = await pending.pop(0)
                await self._process(client, state, sth, entries)
                if self._stop.is_set():
                    await self._commit(state, [])  # keep the progress; resume from here
                    return
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def _fetch(self, client: LogClient, start: int, end: int) -> list[LogEntry]:
        """Entries [start, end), continuing after short answers (RFC 6962 §4.6)."""
        out: list[LogEntry] = []
        index = start
        while index < end:
            got = await client.get_entries(index, end - 1)
            if not got:
                raise LogError(client.url, f"no entries returned for {index}..{end - 1}")
            for entry in got:
                if index >= end:
                    break  # a log answering more than asked: ignore the extra
                if entry.index != index:
                    raise LogError(client.url, f"asked for entry {index}, got {entry.index}")
                out.append(entry)
                index += 1
        return out

    async def _process(
        self, client: LogClient, state: LogState, sth: TreeHead, entries: list[LogEntry]
    ) -> None:
        matches: list[MatchRecord] = []
        for entry in entries:
            state.compact_range.append(entry.leaf_hash)
            if self._watch:
                record = await self._match(client, entry)
                if record is not None:
                    matches.append(record)
        if state.position == sth.tree_size:
            await self._verify_root(client, state, sth, matches)
        elif matches or self._clock_s() - self._committed_at.get(client.url, 0.0) >= (
            self.settings.state_commit_seconds
        ):
            await self._commit(state, matches)

    async def _match(self, client: LogClient, entry: LogEntry) -> MatchRecord | None:
        parsed = parse_entry(entry)
        result = match_names(parsed.names, self._watch)
        if result is None:
            return None
        info = entry_info(entry, parsed)
        finding = await classify(self.store, self.allow, info, result)
        log.info(
            "ct_match",
            log=client.url,
            index=entry.index,
            names=result.names,
            finding=finding,
            tbs_sha256=info.tbs_sha256,
        )
        return match_record(client.url, entry.index, info, result, finding)

    async def _commit(self, state: LogState, matches: list[MatchRecord]) -> None:
        new_ids = await self.store.commit_batch(state, matches)
        self._committed_at[state.log_url] = self._clock_s()
        if new_ids:
            await self._send_alerts(new_ids)

    async def _send_alerts(self, ids: Sequence[int] | None) -> None:
        # After the commit: an alert always refers to a stored match. If the process dies
        # before notified_at is set, the next start sends it again (same idempotency key).
        for row in await self.store.unnotified(ids):
            if await self._notify(unknown_issuance_alert(row)):
                await self.store.mark_notified(row.id)

    async def _notify(self, event: Notification) -> bool:
        try:
            await self.sink.notify(event)
        except Exception as exc:  # a broken notifier must not stop the monitor; retried later
            log.error(
                "ct_notify_failed", kind=event.kind, key=event.idempotency_key, error=str(exc)
            )
            return False
        return True

    async def _resend_alerts(self) -> None:
        await self._send_alerts(None)


def status_of(state: LogState) -> LogStatus:
    return LogStatus(
        log_url=state.log_url,
        kind=state.kind,
        tree_size=state.tree_size_seen,
        position=state.position,
        verified_size=state.verified_size,
        lag=state.lag,
        last_success=state.last_success,
        last_error=state.last_error,
    )
