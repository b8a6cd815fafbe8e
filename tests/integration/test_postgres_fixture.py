"""The db_url fixture itself: each parameter yields a database SQLAlchemy can use."""

from __future__ import annotations

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support import postgres


async def test_db_url_connects(db_url: str) -> None:
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


def test_fresh_database_is_dropped(postgres_admin_url: str) -> None:
    with postgres.fresh_database(postgres_admin_url) as url:
        name = url.rsplit("/", 1)[1]
        assert name.startswith("t_")

    async def exists() -> bool:
        conn = await asyncpg.connect(postgres.asyncpg_dsn(postgres_admin_url))
        try:
            found = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        finally:
            await conn.close()
        return found == 1

    assert not postgres.run_async(exists)
