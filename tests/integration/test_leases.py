"""Database leases: of several instances one holds a schedule, and another takes over when
the holder stops renewing."""

from __future__ import annotations

import asyncio
import datetime as dt

from storage.engine import create_engine, migrate, session_factory
from storage.repositories import leases


async def test_one_holder_and_takeover(db_url: str) -> None:
    first, second = create_engine(db_url), create_engine(db_url)
    await migrate(first)
    a, b = session_factory(first), session_factory(second)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ttl = dt.timedelta(seconds=60)
    try:
        results = await asyncio.gather(
            *[leases.acquire(a if i % 2 else b, "job", f"i{i}", now, ttl) for i in range(6)]
        )
        assert results.count(True) == 1
        holder = f"i{results.index(True)}"
        other = "i0" if holder != "i0" else "i1"
        assert await leases.acquire(a, "job", holder, now + ttl / 2, ttl)  # renew
        assert not await leases.acquire(b, "job", other, now + ttl, ttl)  # still held
        # The holder stopped renewing: after the TTL another instance takes over.
        assert await leases.acquire(b, "job", other, now + ttl * 3, ttl)
        await leases.release(b, "job", other)
        assert await leases.acquire(a, "job", holder, now + ttl * 3, ttl)
    finally:
        await first.dispose()
        await second.dispose()
