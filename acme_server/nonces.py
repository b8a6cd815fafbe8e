"""Anti-replay nonces (RFC 8555 §6.5), kept in the database so every instance shares them.

A nonce is 128 random bits from ``secrets``; it is a row until it is used or expires. Consuming
is a single ``DELETE ... WHERE value = :v AND expires_at > now``: the database guarantees that
exactly one request, on whichever instance, sees the row go away.

Every ACME response carries a fresh nonce (§6.5), so issuing is on every request's path. Rather
than one INSERT transaction per response, an instance inserts a batch of nonces in one
transaction and hands them out from memory: a nonce is always in the database before any client
sees it, so single use across instances is unchanged. A batch older than ``MAX_BATCH_AGE`` (or
half the lifetime, if shorter) is dropped unused (its rows expire and are purged), so a nonce
handed out keeps at least ``lifetime - MAX_BATCH_AGE`` of its lifetime.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
from collections.abc import Callable

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Nonce

# RFC 8555 §6.5.1: the nonce is base64url without padding.
_NONCE_SHAPE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
# Nonces inserted per transaction, and how long a batch is handed out (see the module doc).
BATCH_SIZE = 32
MAX_BATCH_AGE = dt.timedelta(seconds=60)


class NonceService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], dt.datetime],
        lifetime: dt.timedelta,
        *,
        batch: int = BATCH_SIZE,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._lifetime = lifetime
        self._batch = batch
        self._max_age = min(MAX_BATCH_AGE, lifetime / 2)
        self._pool: list[str] = []
        self._pool_made: dt.datetime | None = None
        self._lock = asyncio.Lock()

    async def issue(self) -> str:
        async with self._lock:
            now = self._clock()
            made = self._pool_made
            if not self._pool or made is None or not made <= now < made + self._max_age:
                values = [secrets.token_urlsafe(16) for _ in range(self._batch)]
                async with self._sessions.begin() as session:
                    expires_at = now + self._lifetime
                    session.add_all([Nonce(value=v, expires_at=expires_at) for v in values])
                # Only once they are committed: a nonce is never handed out before it is stored.
                self._pool, self._pool_made = values, now
            return self._pool.pop()

    async def consume(self, value: str) -> bool:
        """Use a nonce up: True exactly once for a nonce this service issued and that is live."""
        async with self._sessions.begin() as session:
            return await self.consume_in(session, value)

    async def consume_in(self, session: AsyncSession, value: str) -> bool:
        """:meth:`consume` inside the caller's transaction: used up once that commits."""
        if not _NONCE_SHAPE.match(value):
            return False
        result = await session.execute(
            delete(Nonce).where(Nonce.value == value, Nonce.expires_at > self._clock())
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def purge_expired(self) -> int:
        async with self._sessions.begin() as session:
            result = await session.execute(delete(Nonce).where(Nonce.expires_at <= self._clock()))
            return int(result.rowcount)  # type: ignore[attr-defined]
