"""The database gauges on SQLite and PostgreSQL: certificates by state and days to expiry, CT
lag per log, scan runs; the background refresh task and its failure handling."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ca.kek import FileKek
from ca.software_keys import SoftwareKeyBackend
from certyard.metrics import REGISTRY
from certyard.metrics_db import (
    COLLECTOR,
    read_snapshot,
    refresh_db_gauges,
    start_db_gauges,
)
from storage.engine import create_engine, migrate, session_factory
from storage.models import Certificate, Issuer, ScanEndpoint, ScanObservation, ScanRun
from storage.models_ct import CTLogState

pytestmark = pytest.mark.timeout(120)

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
LOG = "https://ct.example.test/2026/"


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(db_url)
    await migrate(engine)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


def _certificate(days_left: float, *, state: str = "issued", status: str = "valid") -> Certificate:
    not_after = NOW + dt.timedelta(days=days_left)
    return Certificate(
        id=secrets.token_hex(8),
        serial=secrets.token_hex(16),
        issuer_id="int-1",
        names=["www.example.com"],
        profile="tls-server",
        not_before=not_after - dt.timedelta(days=90),
        not_after=not_after,
        spki_sha256="00" * 32,
        status=status,
        created_at=NOW,
        state=state,
        tbs_sha256=secrets.token_hex(32),
        requester="cli",
    )


async def _populate(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        session.add(
            Issuer(
                id="int-1",
                role="intermediate",
                cert_pem="-",
                key_backend="software",
                key_ref="software:int-1",
                created_at=NOW,
            )
        )
        await session.flush()
        session.add_all(
            [
                _certificate(0.5),  # within 1 day
                _certificate(3),  # within 7
                _certificate(10),  # within 14
                _certificate(45),  # within 60
                _certificate(200),  # beyond every window
                _certificate(-2),  # expired
                _certificate(-30),  # expired
                _certificate(5, status="revoked"),  # revoked: not counted as expiring
                _certificate(20, state="signing"),  # in flight: not counted as expiring
            ]
        )
        session.add(
            CTLogState(
                log_url=LOG,
                kind="rfc6962",
                position=1000,
                compact_range=[],
                verified_size=900,
                verified_range=[],
                tree_size_seen=1500,
                last_success=NOW - dt.timedelta(minutes=2),
                updated_at=NOW,
            )
        )
        session.add_all(
            [
                ScanRun(id="s1", started_at=NOW, status="done", parameters={}, finished_at=NOW),
                ScanRun(id="s2", started_at=NOW, status="running", parameters={}),
            ]
        )
        endpoints = [
            ScanEndpoint(
                ip=f"192.0.2.{i}", port=443, sni="", protocol="tls", first_seen=NOW, last_seen=NOW
            )
            for i in (1, 2)
        ]
        session.add_all(endpoints)
        await session.flush()
        session.add_all(
            ScanObservation(
                scan_id="s2",
                endpoint_id=endpoint.id,
                status="refused",
                chain=[],
                first_seen=NOW,
                last_seen=NOW,
            )
            for endpoint in endpoints
        )


async def test_gauges_count_certificates_by_state_and_expiry(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _populate(sessions)
    snapshot = await refresh_db_gauges(sessions, now=NOW)
    assert dict(snapshot.certificates) == {"valid": 5, "expired": 2, "revoked": 1, "signing": 1}
    assert dict(snapshot.expiring) == {1: 1, 7: 2, 14: 3, 30: 3, 60: 4, 90: 4}
    assert snapshot.next_expiry == NOW + dt.timedelta(days=0.5)
    # The same figures, as Prometheus reads them.
    assert value("certyard_certificates", state="valid") == 5
    assert value("certyard_certificates", state="expired") == 2
    assert value("certyard_certificates_expiring", within_days="7") == 2
    assert value("certyard_certificates_expiring", within_days="90") == 4
    next_expiry = value("certyard_certificate_next_expiry_timestamp_seconds")
    assert next_expiry == (NOW + dt.timedelta(hours=12)).timestamp()
    assert value("certyard_ct_log_lag_entries", log=LOG) == 500
    last_success = (NOW - dt.timedelta(minutes=2)).timestamp()
    assert value("certyard_ct_log_last_success_timestamp_seconds", log=LOG) == last_success
    assert value("certyard_scan_runs", status="running") == 1
    assert value("certyard_scan_runs", status="done") == 1
    assert value("certyard_scan_runs", status="interrupted") == 0
    assert value("certyard_scan_running_endpoints_scanned") == 2
    assert value("certyard_scan_last_finished_timestamp_seconds") == NOW.timestamp()
    assert value("certyard_db_gauges_refresh_timestamp_seconds") == NOW.timestamp()


async def test_empty_database_has_zero_counts_and_no_next_expiry(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    snapshot = await read_snapshot(sessions, NOW)
    assert set(snapshot.certificates.values()) == {0}
    assert set(snapshot.expiring.values()) == {0}
    assert snapshot.next_expiry is None
    assert snapshot.ct_logs == {}
    assert snapshot.scan_running_endpoints == 0


async def test_background_refresh_runs_until_stopped(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await _populate(sessions)
    backend = SoftwareKeyBackend(FileKek(tmp_path / "kek", create_if_missing=True))
    COLLECTOR.snapshot = None  # forget what earlier tests published
    stop = asyncio.Event()
    task = start_db_gauges(sessions, stop, interval=0.05, key_backend=backend, clock=lambda: NOW)
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while value("certyard_db_gauges_refresh_timestamp_seconds") != NOW.timestamp():
            assert asyncio.get_running_loop().time() < deadline, "no refresh within 20 s"
            await asyncio.sleep(0.02)
        assert value("certyard_hsm_up", backend="software") == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)  # the task ends by itself once stop is set
    assert task.done() and task.exception() is None


async def test_refresh_failure_is_counted_and_not_raised(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/empty.db")  # no tables: reads fail
    try:
        stop = asyncio.Event()
        before = value("certyard_db_gauges_refresh_errors_total") or 0.0
        task = start_db_gauges(session_factory(engine), stop, interval=0.05)
        deadline = asyncio.get_running_loop().time() + 20
        while (
            value("certyard_db_gauges_refresh_errors_total") or 0.0
        ) < before + 2:  # failed, and tried again
            assert asyncio.get_running_loop().time() < deadline, "no failed refresh counted"
            await asyncio.sleep(0.02)
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        await engine.dispose()
