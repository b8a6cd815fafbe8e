"""Storage on SQLite and PostgreSQL: migrations, time zones, and the constraints that keep data
consistent between instances."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import create_engine, migrate, session_factory
from storage.models import Account, Nonce


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    await migrate(eng)
    yield eng
    await eng.dispose()


async def test_migrations_create_every_table_and_are_idempotent(engine: AsyncEngine) -> None:
    await migrate(engine)  # a second start applies nothing and does not fail
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert {
        "accounts",
        "nonces",
        "orders",
        "authorizations",
        "order_authorizations",
        "challenges",
        "validation_jobs",
        "certificates",
        "issuers",
        "alembic_version",
    } <= tables


async def test_datetimes_come_back_in_utc(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    when = dt.datetime(2030, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    async with sessions.begin() as session:
        session.add(Nonce(value="n" * 22, expires_at=when))
    async with sessions() as session:
        stored = (await session.execute(select(Nonce.expires_at))).scalar_one()
    assert stored == when and stored.tzinfo == dt.UTC


async def test_one_account_per_key(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    now = dt.datetime.now(dt.UTC)

    def account(account_id: str) -> Account:
        return Account(
            id=account_id,
            key_thumbprint="t" * 43,
            jwk={},
            status="valid",
            contact=[],
            tos_agreed=True,
            created_at=now,
        )

    async with sessions.begin() as session:
        session.add(account("a1"))
    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:
            session.add(account("a2"))
    async with sessions() as session:
        ids = (await session.execute(select(Account.id))).scalars().all()
    assert ids == ["a1"]  # nothing half-written
