"""Anti-replay nonces (RFC 8555 §6.5), kept in the database so every instance shares them.

A nonce is 128 random bits from ``secrets``; it is a row until it is used or expires. Consuming
is a single ``DELETE ... WHERE value = :v AND expires_at > now``: the database guarantees that
exactly one request, on whichever instance, sees the row go away.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Nonce

# RFC 8555 §6.5.1: the nonce is base64url without padding.
_NONCE_SHAPE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


class NonceService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], dt.datetime],
        lifetime: dt.timedelta,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._lifetime = lifetime

    async def issue(self) -> str:
        value = secrets.token_urlsafe(16)
        async with self._sessions.begin() as session:
            session.add(Nonce(value=value, expires_at=self._clock() + self._lifetime))
        return value

    async def consume(self, value: str) -> bool:
        """Use a nonce up: True exactly once for a nonce this service issued and that is live."""
        if not _NONCE_SHAPE.match(value):
            return False
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(Nonce).where(Nonce.value == value, Nonce.expires_at > self._clock())
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def purge_expired(self) -> int:
        async with self._sessions.begin() as session:
            result = await session.execute(delete(Nonce).where(Nonce.expires_at <= self._clock()))
            return int(result.rowcount)  # type: ignore[attr-defined]
