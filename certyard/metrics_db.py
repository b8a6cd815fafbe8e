"""Gauges read from the database: certificates by state and days to expiry, CT lag per log, scan
runs, and whether the CA key backend answers.

Why a background task: prometheus-client calls collectors synchronously, inside the scrape,
while the database is only reachable through the async engine. So ``start_db_gauges`` runs a
task that reads a :class:`DbSnapshot` every ``interval`` seconds (15 by default - the scrape
interval of conf/prometheus/prometheus.yml - which doubles as a cache: a scrape never queries
the database, however many Prometheus servers scrape), and :class:`DbGaugeCollector` turns the
latest snapshot into metric families at scrape time. A failed refresh keeps the previous
snapshot, counts ``certyard_db_gauges_refresh_errors_total`` and leaves
``certyard_db_gauges_refresh_timestamp_seconds`` behind, which an alert can watch.

Every instance of a multi-instance deployment reads the same shared database and exports the
same values: aggregate these with ``max``, never ``sum`` (conf/prometheus/certyard-rules.yml).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ca.keys import KeyBackend
from certyard.metrics import REGISTRY, set_hsm_up
from storage.models import Certificate, ScanObservation, ScanRun
from storage.models_ct import CTLogState

log = structlog.get_logger("certyard.metrics")

DEFAULT_INTERVAL = 15.0
# Windows of certyard_certificates_expiring{within_days}: cumulative, like histogram buckets,
# chosen for the usual renewal points (ACME clients renew at 1/3 of 90 days = 30 days left).
EXPIRY_WINDOWS_DAYS = (1, 7, 14, 30, 60, 90)
CERTIFICATE_STATES = ("valid", "expired", "revoked", "signing")
SCAN_STATUSES = ("running", "done", "interrupted")

REFRESH_ERRORS = Counter(
    "certyard_db_gauges_refresh_errors_total",
    "Failed reads of the database gauges (the previous values stay exported).",
    registry=REGISTRY,
)


@dataclass(frozen=True)
class CtLog:
    lag_entries: int
    last_success: dt.datetime | None


@dataclass(frozen=True)
class DbSnapshot:
    """One consistent-enough read of the gauges (each group is one query)."""

    taken_at: dt.datetime
    certificates: Mapping[str, int]  # state -> count, every CERTIFICATE_STATES key
    expiring: Mapping[int, int]  # window in days -> valid certificates expiring within it
    next_expiry: dt.datetime | None  # the earliest not_after among valid certificates
    ct_logs: Mapping[str, CtLog] = field(default_factory=dict)  # log URL -> state
    scan_runs: Mapping[str, int] = field(default_factory=dict)  # status -> count
    scan_running_endpoints: int = 0  # endpoints recorded so far by running scans
    scan_last_finished: dt.datetime | None = None


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def read_snapshot(
    sessions: async_sessionmaker[AsyncSession], now: dt.datetime | None = None
) -> DbSnapshot:
    """Read every gauge from the database (read-only; a few aggregate queries)."""
    now = now or _utc_now()
    async with sessions() as session:
        certificates, expiring, next_expiry = await _certificates(session, now)
        scan_runs, running_endpoints, last_finished = await _scans(session)
    ct_logs = await _ct_logs(sessions)
    return DbSnapshot(
        taken_at=now,
        certificates=certificates,
        expiring=expiring,
        next_expiry=next_expiry,
        ct_logs=ct_logs,
        scan_runs=scan_runs,
        scan_running_endpoints=running_endpoints,
        scan_last_finished=last_finished,
    )


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    # SUM(CASE ...) instead of COUNT(*) FILTER (...): one pass, and the same SQL on every backend.
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


async def _certificates(
    session: AsyncSession, now: dt.datetime
) -> tuple[dict[str, int], dict[int, int], dt.datetime | None]:
    issued = Certificate.state == "issued"
    unrevoked = and_(issued, Certificate.status != "revoked")
    valid = and_(unrevoked, Certificate.not_after > now)
    columns = [
        _count(Certificate.state != "issued").label("signing"),
        _count(and_(issued, Certificate.status == "revoked")).label("revoked"),
        _count(and_(unrevoked, Certificate.not_after <= now)).label("expired"),
        _count(valid).label("valid"),
        *(
            _count(and_(valid, Certificate.not_after <= now + dt.timedelta(days=days))).label(
                f"within_{days}"
            )
            for days in EXPIRY_WINDOWS_DAYS
        ),
        func.min(case((valid, Certificate.not_after))).label("next_expiry"),
    ]
    row = (await session.execute(select(*columns))).one()
    states = {state: int(getattr(row, state)) for state in CERTIFICATE_STATES}
    expiring = {days: int(getattr(row, f"within_{days}")) for days in EXPIRY_WINDOWS_DAYS}
    next_expiry = row.next_expiry
    if isinstance(next_expiry, dt.datetime) and next_expiry.tzinfo is None:
        next_expiry = next_expiry.replace(tzinfo=dt.UTC)  # stored as naive UTC (storage/types.py)
    return states, expiring, next_expiry if isinstance(next_expiry, dt.datetime) else None


async def _scans(session: AsyncSession) -> tuple[dict[str, int], int, dt.datetime | None]:
    rows = await session.execute(select(ScanRun.status, func.count()).group_by(ScanRun.status))
    runs = dict.fromkeys(SCAN_STATUSES, 0)
    for status, count in rows:
        runs[str(status)] = int(count)
    running = await session.scalar(
        select(func.count())
        .select_from(ScanObservation)
        .join(ScanRun, ScanRun.id == ScanObservation.scan_id)
        .where(ScanRun.status == "running")
    )
    last = await session.scalar(
        select(func.max(ScanRun.finished_at)).where(ScanRun.status == "done")
    )
    return runs, int(running or 0), last


async def _ct_logs(sessions: async_sessionmaker[AsyncSession]) -> dict[str, CtLog]:
    """CT monitor progress; an own session, because a database without the CT tables (its
    migration not applied) fails the query, and on PostgreSQL that aborts the transaction."""
    try:
        async with sessions() as session:
            rows = await session.execute(
                select(
                    CTLogState.log_url,
                    CTLogState.tree_size_seen,
                    CTLogState.position,
                    CTLogState.last_success,
                )
            )
            # Lag = entries the log has published that the monitor has not processed yet.
            return {
                url: CtLog(max(0, int(seen) - int(position)), last)
                for url, seen, position, last in rows
            }
    except DBAPIError as exc:
        log.warning("metrics_ct_state_unreadable", error=type(exc.orig).__name__)
        return {}


class DbGaugeCollector(Collector):
    """Exports the latest :class:`DbSnapshot` (nothing until the first refresh)."""

    def __init__(self) -> None:
        self.snapshot: DbSnapshot | None = None

    def describe(self) -> Iterator[Metric]:
        return iter(_families(None))

    def collect(self) -> Iterator[Metric]:
        return iter(_families(self.snapshot))


def _families(snap: DbSnapshot | None) -> list[Metric]:
    def ts(value: dt.datetime | None) -> float | None:
        return None if value is None else value.timestamp()

    certificates = GaugeMetricFamily(
        "certyard_certificates",
        "Certificates issued by certyard, by state (valid, expired, revoked; signing = an "
        "issuance record whose signature is in flight or failed).",
        labels=["state"],
    )
    expiring = GaugeMetricFamily(
        "certyard_certificates_expiring",
        "Valid (unrevoked, unexpired) certificates expiring within the number of days given "
        "by within_days (cumulative).",
        labels=["within_days"],
    )
    next_expiry = GaugeMetricFamily(
        "certyard_certificate_next_expiry_timestamp_seconds",
        "Unix time of the earliest expiry among valid certificates (absent when there is none).",
    )
    ct_lag = GaugeMetricFamily(
        "certyard_ct_log_lag_entries",
        "Entries a CT log has published (tree size seen) that the monitor has not processed.",
        labels=["log"],
    )
    ct_success = GaugeMetricFamily(
        "certyard_ct_log_last_success_timestamp_seconds",
        "Unix time of the CT monitor's last successful poll of the log.",
        labels=["log"],
    )
    scan_runs = GaugeMetricFamily(
        "certyard_scan_runs",
        "Recorded scan runs by status (running, done, interrupted).",
        labels=["status"],
    )
    scan_running = GaugeMetricFamily(
        "certyard_scan_running_endpoints_scanned",
        "Endpoints scanned so far by the scans now running (any instance or CLI).",
    )
    scan_last = GaugeMetricFamily(
        "certyard_scan_last_finished_timestamp_seconds",
        "Unix time the most recent completed scan finished.",
    )
    refreshed = GaugeMetricFamily(
        "certyard_db_gauges_refresh_timestamp_seconds",
        "Unix time of the last successful read of the database gauges.",
    )
    families: list[Metric] = [
        certificates, expiring, next_expiry, ct_lag, ct_success,
        scan_runs, scan_running, scan_last, refreshed,
    ]  # fmt: skip
    if snap is None:
        return families
    for state, count in snap.certificates.items():
        certificates.add_metric([state], count)
    for days, count in snap.expiring.items():
        expiring.add_metric([str(days)], count)
    if snap.next_expiry is not None:
        next_expiry.add_metric([], snap.next_expiry.timestamp())
    for url, ct_log in sorted(snap.ct_logs.items()):
        ct_lag.add_metric([url], ct_log.lag_entries)
        success = ts(ct_log.last_success)
        if success is not None:
            ct_success.add_metric([url], success)
    for status, count in snap.scan_runs.items():
        scan_runs.add_metric([status], count)
    scan_running.add_metric([], snap.scan_running_endpoints)
    last = ts(snap.scan_last_finished)
    if last is not None:
        scan_last.add_metric([], last)
    refreshed.add_metric([], snap.taken_at.timestamp())
    return families


COLLECTOR = DbGaugeCollector()
REGISTRY.register(COLLECTOR)


async def refresh_db_gauges(
    sessions: async_sessionmaker[AsyncSession],
    *,
    key_backend: KeyBackend | None = None,
    now: dt.datetime | None = None,
) -> DbSnapshot:
    """Read the key backend's health and the database gauges once, and publish them."""
    if key_backend is not None:  # first: the HSM's state is news even when the database is down
        try:
            up = (await key_backend.health()).ok
        except Exception as exc:  # health() should answer ok=False, but never trust a probe
            log.warning("metrics_hsm_health_failed", error=type(exc).__name__)
            up = False
        set_hsm_up(key_backend.name, up)
    snapshot = await read_snapshot(sessions, now)
    COLLECTOR.snapshot = snapshot
    return snapshot


def start_db_gauges(
    sessions: async_sessionmaker[AsyncSession],
    stop_event: asyncio.Event,
    *,
    interval: float = DEFAULT_INTERVAL,
    key_backend: KeyBackend | None = None,
    clock: Callable[[], dt.datetime] = _utc_now,
) -> asyncio.Task[None]:
    """Refresh the gauges now and every ``interval`` seconds until ``stop_event`` is set (or the
    task is cancelled). Started by ``certyard serve``; a failure is logged and retried at the
    next interval, never raised."""

    async def loop() -> None:
        while not stop_event.is_set():
            try:
                await refresh_db_gauges(sessions, key_backend=key_backend, now=clock())
            except Exception as exc:
                REFRESH_ERRORS.inc()
                log.warning("metrics_db_refresh_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), interval)

    return asyncio.create_task(loop(), name="certyard-metrics-db-gauges")
