"""ACME rate limits: token buckets kept in the database, so every instance sees one budget.

Each limit is a bucket of ``capacity`` tokens refilled evenly over ``period``; a request takes a
token or is refused with ``rateLimited`` and a Retry-After saying when one will be there
(RFC 8555 §6.6). The buckets (Let's Encrypt's limits are the model):

* ``new_orders_per_account``: newOrder per account;
* ``new_orders_per_domain``: newOrder per registered domain (public suffix + 1 label);
* ``new_accounts_per_ip``: newAccount per client IP address;
* ``failed_validations_per_account``: each failed challenge takes a token, and newOrder is
  refused while the bucket is empty.

Overrides multiply a bucket's capacity for one account or one EAB key id.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from publicsuffixlist import PublicSuffixList
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from acme_server.errors import AcmeError
from storage.models import RateLimitBucket

_PSL = PublicSuffixList()


@dataclass(frozen=True)
class Limit:
    capacity: int
    period: dt.timedelta

    @property
    def rate(self) -> float:
        return self.capacity / self.period.total_seconds()


@dataclass(frozen=True)
class RateLimitConfig:
    enabled: bool = True
    new_orders_per_account: Limit = Limit(300, dt.timedelta(hours=3))
    new_orders_per_domain: Limit = Limit(50, dt.timedelta(days=7))
    new_accounts_per_ip: Limit = Limit(10, dt.timedelta(hours=3))
    failed_validations_per_account: Limit = Limit(5, dt.timedelta(hours=1))
    # "account:<id>" or "eab:<kid>" -> capacity multiplier.
    overrides: dict[str, float] = field(default_factory=dict)


def registered_domain(name: str) -> str:
    base = name[2:] if name.startswith("*.") else name
    return _PSL.privatesuffix(base) or base


class RateLimiter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], config: RateLimitConfig) -> None:
        self._sessions = sessions
        self._config = config

    @property
    def config(self) -> RateLimitConfig:
        return self._config

    def _scaled(self, limit: Limit, owners: list[str]) -> Limit:
        factor = max((self._config.overrides.get(o, 1.0) for o in owners), default=1.0)
        return Limit(max(1, int(limit.capacity * factor)), limit.period)

    async def _take_all(
        self, wanted: list[tuple[str, Limit, float, str]], now: dt.datetime
    ) -> None:
        """Take ``cost`` tokens from every bucket in one transaction, or from none.

        ``wanted``: (key, limit, cost, what); a cost of 0 only checks that a token is there.
        A refusal names the first bucket that is short and when it will have enough again.
        """
        for _ in range(3):
            try:
                async with self._sessions.begin() as session:
                    updates: list[tuple[RateLimitBucket, float]] = []
                    for key, limit, cost, what in wanted:
                        bucket = await session.get(RateLimitBucket, key, with_for_update=True)
                        if bucket is None:
                            bucket = RateLimitBucket(
                                key=key, tokens=float(limit.capacity), updated_at=now
                            )
                            session.add(bucket)
                            tokens = float(limit.capacity)
                        else:
                            elapsed = max(0.0, (now - bucket.updated_at).total_seconds())
                            tokens = min(
                                float(limit.capacity), bucket.tokens + elapsed * limit.rate
                            )
                        needed = max(cost, 1.0)
                        if tokens < needed:
                            seconds = max(1, math.ceil((needed - tokens) / limit.rate))
                            raise AcmeError(
                                "rateLimited",
                                f"too many {what}: the limit is {limit.capacity} per "
                                f"{_human(limit.period)}; retry after {seconds} s",
                                headers={"Retry-After": str(seconds)},
                            )
                        updates.append((bucket, tokens - cost))
                    for bucket, tokens in updates:
                        bucket.tokens = tokens
                        bucket.updated_at = now
                return
            except IntegrityError:
                continue  # another instance created a bucket first: read them again

    async def new_account(self, ip: str, now: dt.datetime) -> None:
        if self._config.enabled:
            await self._take_all(
                [
                    (
                        f"acct-ip:{ip}",
                        self._config.new_accounts_per_ip,
                        1.0,
                        "new accounts from this address",
                    )
                ],
                now,
            )

    async def new_order(
        self, account_id: str, eab_kid: str | None, names: list[str], now: dt.datetime
    ) -> None:
        if not self._config.enabled:
            return
        owners = [f"account:{account_id}"] + ([f"eab:{eab_kid}"] if eab_kid else [])
        config = self._config
        wanted: list[tuple[str, Limit, float, str]] = [
            (
                f"failed:{account_id}",
                self._scaled(config.failed_validations_per_account, owners),
                0.0,
                "failed validations for this account",
            ),
            (
                f"orders:{account_id}",
                self._scaled(config.new_orders_per_account, owners),
                1.0,
                "new orders for this account",
            ),
        ]
        for domain in sorted({registered_domain(n) for n in names if not _is_ip(n)}):
            wanted.append(
                (
                    f"orders-domain:{domain}",
                    self._scaled(config.new_orders_per_domain, owners),
                    1.0,
                    f"new orders for {domain}",
                )
            )
        await self._take_all(wanted, now)

    async def failed_validation(self, account_id: str, now: dt.datetime) -> None:
        """Count a failed challenge: it drains the bucket and never refuses anything itself."""
        if not self._config.enabled:
            return
        limit = self._config.failed_validations_per_account
        async with self._sessions.begin() as session:
            bucket = await session.get(
                RateLimitBucket, f"failed:{account_id}", with_for_update=True
            )
            if bucket is None:
                session.add(
                    RateLimitBucket(
                        key=f"failed:{account_id}", tokens=float(limit.capacity) - 1, updated_at=now
                    )
                )
                return
            elapsed = max(0.0, (now - bucket.updated_at).total_seconds())
            tokens = min(float(limit.capacity), bucket.tokens + elapsed * limit.rate)
            bucket.tokens = max(0.0, tokens - 1)
            bucket.updated_at = now


def _is_ip(name: str) -> bool:
    return ":" in name or name.replace(".", "").isdigit()


def _human(period: dt.timedelta) -> str:
    seconds = int(period.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return f"{seconds} s"
