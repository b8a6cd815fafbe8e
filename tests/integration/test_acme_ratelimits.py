"""ACME rate limits: shared token buckets, rateLimited with Retry-After, overrides."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from acme_server.ratelimits import Limit, RateLimitConfig, RateLimiter, registered_domain
from storage.engine import create_engine, migrate, session_factory
from tests.support.acme_app import running_acme


def test_registered_domain_uses_the_public_suffix_list() -> None:
    assert registered_domain("a.b.example.co.uk") == "example.co.uk"
    assert registered_domain("*.www.example.com") == "example.com"
    assert registered_domain("example.com") == "example.com"


async def test_orders_per_domain_and_account_over_http(db_url: str, tmp_path: Path) -> None:
    limits = {
        "new_orders_per_domain": {"capacity": 2, "period_seconds": 3600},
        "new_orders_per_account": {"capacity": 3, "period_seconds": 3600},
    }
    async with running_acme(db_url, tmp_path / "data", rate_limits=limits) as acme:
        client = await acme.client()
        await client.register()
        assert (await client.new_order(["a.one.test"])).status == 201
        assert (await client.new_order(["b.one.test"])).status == 201
        refused = await client.new_order(["c.one.test"])
        assert refused.problem_type == "rateLimited" and refused.status == 429
        assert int(refused.headers["Retry-After"]) > 0
        assert "one.test" in refused.json()["detail"]
        assert (await client.new_order(["a.two.test"])).status == 201  # another domain
        # The account's own bucket (3) is empty now.
        account = await client.new_order(["a.three.test"])
        assert account.problem_type == "rateLimited"
        assert "account" in account.json()["detail"]


async def test_new_accounts_per_ip(db_url: str, tmp_path: Path) -> None:
    limits = {"new_accounts_per_ip": {"capacity": 2, "period_seconds": 3600}}
    async with running_acme(db_url, tmp_path / "data", rate_limits=limits) as acme:
        replies = [await (await acme.client()).register() for _ in range(3)]
        assert [r.status for r in replies[:2]] == [201, 201]
        assert replies[2].problem_type == "rateLimited"
        # An existing account is found again without spending a token.
        first = await acme.client()
        assert (await first.register()).problem_type == "rateLimited"


async def test_buckets_are_shared_refill_and_overrides(db_url: str) -> None:
    # Two limiters on two engines stand for two instances.
    first_engine, second_engine = create_engine(db_url), create_engine(db_url)
    await migrate(first_engine)
    config = RateLimitConfig(
        new_orders_per_account=Limit(2, dt.timedelta(seconds=100)),
        overrides={"account:big": 3.0},
    )
    a = RateLimiter(session_factory(first_engine), config)
    b = RateLimiter(session_factory(second_engine), config)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    try:
        await a.new_order("acct", None, ["x.test"], now)
        await b.new_order("acct", None, ["y.test"], now)
        from acme_server.errors import AcmeError

        try:
            await a.new_order("acct", None, ["z.test"], now)
            raise AssertionError("third order in the bucket should be refused")
        except AcmeError as exc:
            assert exc.type == "rateLimited" and exc.headers["Retry-After"] == "50"
        # One token comes back every 50 s.
        await b.new_order("acct", None, ["z.test"], now + dt.timedelta(seconds=50))
        # An override triples the capacity for one account.
        for i in range(6):
            await a.new_order("big", None, [f"n{i}.test"], now)
    finally:
        await first_engine.dispose()
        await second_engine.dispose()


async def test_failed_validations_block_new_orders(db_url: str) -> None:
    engine = create_engine(db_url)
    await migrate(engine)
    limiter = RateLimiter(
        session_factory(engine),
        RateLimitConfig(failed_validations_per_account=Limit(2, dt.timedelta(hours=1))),
    )
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    try:
        await limiter.failed_validation("acct", now)
        await limiter.new_order("acct", None, ["a.test"], now)  # one failure: still fine
        await limiter.failed_validation("acct", now)
        from acme_server.errors import AcmeError

        try:
            await limiter.new_order("acct", None, ["a.test"], now)
            raise AssertionError("an account with too many failures should be refused")
        except AcmeError as exc:
            assert exc.type == "rateLimited" and "failed validations" in exc.detail
    finally:
        await engine.dispose()
