"""Nonces are single-use across instances and expire (RFC 8555 §6.5)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from acme_server.nonces import NonceService
from storage.engine import create_engine, migrate, session_factory


@pytest.fixture
async def engines(db_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    # Two engines on one database stand for two certyard instances.
    first, second = create_engine(db_url), create_engine(db_url)
    await migrate(first)
    yield first, second
    await first.dispose()
    await second.dispose()


def clock_at(now: list[dt.datetime]) -> NonceClock:
    return NonceClock(now)


class NonceClock:
    def __init__(self, now: list[dt.datetime]) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now[0]


async def test_issued_by_one_used_once_on_either(engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    now = [dt.datetime.now(dt.UTC)]
    a = NonceService(session_factory(engines[0]), clock_at(now), dt.timedelta(minutes=5))
    b = NonceService(session_factory(engines[1]), clock_at(now), dt.timedelta(minutes=5))
    nonce = await a.issue()
    assert len(nonce) >= 22
    assert await b.consume(nonce) is True
    assert await a.consume(nonce) is False
    assert await b.consume(nonce) is False


async def test_concurrent_use_succeeds_exactly_once(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    now = [dt.datetime.now(dt.UTC)]
    a = NonceService(session_factory(engines[0]), clock_at(now), dt.timedelta(minutes=5))
    b = NonceService(session_factory(engines[1]), clock_at(now), dt.timedelta(minutes=5))
    nonce = await a.issue()
    results = await asyncio.gather(*[(a if i % 2 else b).consume(nonce) for i in range(10)])
    assert results.count(True) == 1


async def test_expired_and_unknown(engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    now = [dt.datetime.now(dt.UTC)]
    service = NonceService(session_factory(engines[0]), clock_at(now), dt.timedelta(seconds=30))
    nonce = await service.issue()
    now[0] += dt.timedelta(seconds=31)
    assert await service.consume(nonce) is False
    assert await service.consume("AAAAAAAAAAAAAAAAAAAAAA") is False
    assert await service.consume("") is False
    assert await service.consume("x" * 500) is False
    stale = await service.issue()
    now[0] += dt.timedelta(seconds=31)
    assert await service.purge_expired() >= 1
    assert await service.consume(stale) is False


async def test_nonces_are_unpredictable(engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    service = NonceService(
        session_factory(engines[0]), lambda: dt.datetime.now(dt.UTC), dt.timedelta(minutes=5)
    )
    values = {await service.issue() for _ in range(50)}
    assert len(values) == 50
