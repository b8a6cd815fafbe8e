"""Validation job leases: a job is claimed by one worker; a job whose worker died (lease run
out) is claimed again by another."""

from __future__ import annotations

import asyncio
import datetime as dt

from storage.engine import create_engine, migrate, session_factory
from storage.models import Account, Authorization, Challenge, ValidationJob
from storage.repositories import acme as repo


async def test_claim_once_and_take_over_after_the_lease(db_url: str) -> None:
    first, second = create_engine(db_url), create_engine(db_url)
    await migrate(first)
    a, b = session_factory(first), session_factory(second)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    lease = dt.timedelta(seconds=10)
    try:
        async with a.begin() as session:
            session.add(
                Account(
                    id="acct",
                    key_thumbprint="t",
                    jwk={},
                    status="valid",
                    contact=[],
                    tos_agreed=True,
                    created_at=now,
                )
            )
            session.add(
                Authorization(
                    id="az",
                    account_id="acct",
                    identifier_type="dns",
                    identifier_value="a.test",
                    wildcard=False,
                    status="pending",
                    expires_at=now + lease * 100,
                    created_at=now,
                )
            )
            await session.flush()
            session.add(
                Challenge(
                    id="ch",
                    authorization_id="az",
                    type="http-01",
                    token="x",
                    status="processing",
                    validated_at=None,
                    error=None,
                    validation_records=None,
                )
            )
            await session.flush()
            session.add(
                ValidationJob(
                    challenge_id="ch",
                    state="queued",
                    lease_owner=None,
                    lease_until=None,
                    attempts=0,
                    created_at=now,
                )
            )

        async def claim(sessions: object, owner: str, at: dt.datetime) -> list[str]:
            async with sessions.begin() as session:  # type: ignore[attr-defined]
                return await repo.claim_validation_jobs(session, owner, at, lease, 5)

        got = await asyncio.gather(claim(a, "w1", now), claim(b, "w2", now))
        assert sorted(len(g) for g in got) == [0, 1]
        # While the lease holds nobody else gets it; after it runs out another worker does.
        assert await claim(b, "w3", now + lease / 2) == []
        assert await claim(b, "w3", now + lease * 2) == ["ch"]
        async with a() as session:
            job = await session.get(ValidationJob, "ch")
            assert job is not None and job.lease_owner == "w3" and job.attempts == 2
    finally:
        await first.dispose()
        await second.dispose()
