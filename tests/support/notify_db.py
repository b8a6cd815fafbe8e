"""A migrated database for the notification and scheduler tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.engine import create_engine, migrate, session_factory


def sqlite_url(tmp_path: Path) -> str:
    """For tests of a hook or a command rather than of storage: the ledger's behaviour on both
    databases is covered by the db_url tests (test_notify_webhook, test_scheduler)."""
    return f"sqlite+aiosqlite:///{tmp_path}/notify.db"


@asynccontextmanager
async def migrated(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(db_url)
    try:
        await migrate(engine)
        yield session_factory(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def opened(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A second connection pool on the same (already migrated) database: another instance."""
    engine = create_engine(db_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


class FakeClock:
    """An injectable clock the test moves by hand."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start
        self.calls = 0  # how often it was read: a loop that reads it is making progress

    def __call__(self) -> dt.datetime:
        self.calls += 1
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


async def no_wait(_seconds: float) -> None:
    """Backoff sleep for tests: the delay is recorded by the caller, not waited."""
    return None


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
