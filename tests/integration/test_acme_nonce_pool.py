"""Nonces handed out from a batch (acme_server/nonces.py): still stored before a client sees
them, single use across instances, and never handed out from a stale batch."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from acme_server.nonces import BATCH_SIZE, MAX_BATCH_AGE, NonceService
from storage.engine import create_engine, migrate, session_factory


@pytest.fixture
async def engines(db_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    # Two engines on one database stand for two certyard instances.
    first, second = create_engine(db_url), create_engine(db_url)
    await migrate(first)
    yield first, second
    await first.dispose()
    await second.dispose()


def _services(
    engines: tuple[AsyncEngine, AsyncEngine], now: list[dt.datetime], lifetime: dt.timedelta
) -> tuple[NonceService, NonceService]:
    def clock() -> dt.datetime:
        return now[0]

    return (
        NonceService(session_factory(engines[0]), clock, lifetime),
        NonceService(session_factory(engines[1]), clock, lifetime),
    )


async def test_every_pooled_nonce_is_stored_and_single_use(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    now = [dt.datetime.now(dt.UTC)]
    a, b = _services(engines, now, dt.timedelta(minutes=5))
    issued = [await a.issue() for _ in range(BATCH_SIZE + 5)]  # more than one batch
    assert len(set(issued)) == len(issued)
    for nonce in issued:
        assert await b.consume(nonce) is True  # the other instance sees it at once
        assert await a.consume(nonce) is False


async def test_concurrent_issue_gives_distinct_nonces(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    now = [dt.datetime.now(dt.UTC)]
    a, b = _services(engines, now, dt.timedelta(minutes=5))
    issued = await asyncio.gather(*(a.issue() for _ in range(3 * BATCH_SIZE)))
    assert len(set(issued)) == len(issued)
    results = await asyncio.gather(*(b.consume(n) for n in issued))
    assert all(results)


async def test_a_stale_batch_is_not_handed_out(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    lifetime = dt.timedelta(minutes=10)
    now = [dt.datetime.now(dt.UTC)]
    a, b = _services(engines, now, lifetime)
    first = await a.issue()
    now[0] += MAX_BATCH_AGE + dt.timedelta(seconds=1)
    later = await a.issue()
    # The nonce handed out later lives a full lifetime from when its batch was made.
    now[0] += lifetime - dt.timedelta(seconds=30)
    assert await b.consume(first) is False  # expired
    assert await b.consume(later) is True


async def test_short_lifetimes_refresh_at_half_life(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    lifetime = dt.timedelta(seconds=30)
    now = [dt.datetime.now(dt.UTC)]
    a, b = _services(engines, now, lifetime)
    await a.issue()
    now[0] += dt.timedelta(seconds=16)  # past half of the 30 s lifetime
    nonce = await a.issue()
    now[0] += dt.timedelta(seconds=29)
    assert await b.consume(nonce) is True
