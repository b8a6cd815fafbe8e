"""The scheduler on SQLite and PostgreSQL: two instances run a job once per period, a crashed
instance's run is taken over, downtime is caught up with one run, and every run is in the
history. Time is an injected clock moved by the test, never a sleep."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest

from scheduler import store
from scheduler.config import SchedulerSettings
from scheduler.history import format_runs, list_jobs, list_runs
from scheduler.registry import JobRegistry
from scheduler.runner import Scheduler, SchedulerConfigError, lease_name, run_scheduler
from storage.repositories import leases
from tests.support.notify_db import FakeClock, migrated, opened

T0 = dt.datetime(2026, 5, 4, 3, 0, tzinfo=dt.UTC)


class Calls:
    """Job handlers that record who ran them, and when (by the test's clock)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.runs: list[tuple[str, str, dt.datetime]] = []

    def registry(self, instance: str) -> JobRegistry:
        registry = JobRegistry()

        async def handler(params: dict[str, Any]) -> Mapping[str, Any]:
            await asyncio.sleep(0)  # let the other instance interleave
            self.runs.append((instance, params.get("what", "?"), self.clock()))
            return {"checked": 3}

        async def broken(params: dict[str, Any]) -> None:
            raise RuntimeError("scanner target list is empty")

        async def hangs(params: dict[str, Any]) -> None:
            await asyncio.Event().wait()

        registry.register("scan", handler)
        registry.register("crl", handler)
        registry.register("broken", broken)
        registry.register("hangs", hangs)
        return registry


def settings(*jobs: dict[str, Any]) -> SchedulerSettings:
    return SchedulerSettings.model_validate({"jobs": list(jobs), "tick_seconds": 0.01})


async def test_two_instances_run_each_period_once(db_url: str) -> None:
    clock = FakeClock(T0)
    calls = Calls(clock)
    config = settings({"name": "sweep", "kind": "scan", "every": "1m", "params": {"what": "net"}})
    async with migrated(db_url) as first, opened(db_url) as second:
        a = Scheduler(first, calls.registry("a"), config, "instance-a", clock=clock)
        b = Scheduler(second, calls.registry("b"), config, "instance-b", clock=clock)
        await asyncio.gather(a.start(), b.start())
        for _ in range(5):
            for _ in range(3):  # several ticks within one period, both instances at once
                await asyncio.gather(a.tick(), b.tick())
                await asyncio.gather(a.wait_idle(), b.wait_idle())
                clock.advance(seconds=15)
            clock.advance(seconds=15)
        history = await list_runs(first, job="sweep")
    assert len(calls.runs) == 5
    assert [when for _, _, when in calls.runs] == [T0 + dt.timedelta(minutes=i) for i in range(5)]
    assert sorted(r.scheduled_for for r in history) == [
        T0 + dt.timedelta(minutes=i) for i in range(5)
    ]
    assert {r.status for r in history} == {"ok"}
    assert all(r.summary == {"checked": 3} and r.finished_at is not None for r in history)
    assert {r.instance for r in history} <= {"instance-a", "instance-b"}


async def test_running_job_is_not_started_twice(db_url: str) -> None:
    """While one instance runs a job (holding its lease), the next period does not start it
    on the other instance; after the holder crashes, the lapsed lease is taken over."""
    clock = FakeClock(T0)
    calls = Calls(clock)
    config = settings(
        {"name": "stuck", "kind": "hangs", "every": 60}, {"name": "crl", "kind": "crl", "every": 60}
    )
    config.lease_seconds = 300  # the fake clock jumps; the real heartbeat never fires here
    async with migrated(db_url) as first, opened(db_url) as second:
        a = Scheduler(first, calls.registry("a"), config, "instance-a", clock=clock)
        b = Scheduler(second, calls.registry("b"), config, "instance-b", clock=clock)
        await a.start()
        started = await a.tick()
        assert len(started) == 2
        clock.advance(seconds=90)  # the next period of "stuck" is due, its lease still held
        assert [t.get_name() for t in await b.tick()] == ["scheduler:crl"]
        await b.wait_idle()
        # Instance a "crashes": its run stays "running", its lease is no longer renewed.
        a._running.clear()
        clock.advance(seconds=400)
        taken = await b.tick()
        assert "scheduler:stuck" in [t.get_name() for t in taken]
        await b.stop()  # b's run is cancelled and recorded as such
        for task in started:
            task.cancel()
        await asyncio.gather(*started, return_exceptions=True)
        runs = {(r.job, r.instance, r.status) for r in await list_runs(first)}
    assert ("stuck", "instance-a", "abandoned") in runs
    assert ("stuck", "instance-b", "cancelled") in runs
    assert ("crl", "instance-b", "ok") in runs


async def test_catch_up_after_downtime(db_url: str) -> None:
    clock = FakeClock(T0)
    calls = Calls(clock)
    config = settings(
        {"name": "renew", "kind": "scan", "every": "1h", "params": {"what": "renew"}},
        {"name": "ct", "kind": "scan", "every": "1h", "catch_up": False, "params": {"what": "ct"}},
    )
    async with migrated(db_url) as sessions:
        first = Scheduler(sessions, calls.registry("a"), config, "before", clock=clock)
        await first.start()
        await first.tick()
        await first.wait_idle()
    assert sorted(what for _, what, _ in calls.runs) == ["ct", "renew"]

    clock.advance(hours=5, minutes=30)  # down for five and a half periods
    async with opened(db_url) as sessions:
        after = Scheduler(sessions, calls.registry("b"), config, "after", clock=clock)
        await after.start()
        for _ in range(3):
            await after.tick()
            await after.wait_idle()
        assert [what for inst, what, _ in calls.runs if inst == "b"] == ["renew"]  # once
        clock.now = T0 + dt.timedelta(hours=6)  # the grid continues: 09:00
        await after.tick()
        await after.wait_idle()
        history = await list_runs(sessions)
        jobs = {job.name: job for job in await list_jobs(sessions)}
    assert sorted(what for inst, what, _ in calls.runs if inst == "b") == ["ct", "renew", "renew"]
    renew = sorted((r for r in history if r.job == "renew"), key=lambda r: r.scheduled_for)
    assert [(r.status, r.catch_up) for r in renew] == [("ok", False), ("ok", True), ("ok", False)]
    assert renew[1].summary == {"missed_periods": 5, "checked": 3}
    ct = sorted((r for r in history if r.job == "ct"), key=lambda r: r.scheduled_for)
    assert [r.status for r in ct] == ["ok", "skipped", "ok"]
    assert ct[1].summary == {"missed_periods": 5}
    assert jobs["renew"].next_run_at == T0 + dt.timedelta(hours=7)


async def test_run_scheduler_loop_two_instances(db_url: str) -> None:
    """The real loops of two instances side by side; the test moves the clock."""
    clock = FakeClock(T0)
    calls = Calls(clock)
    config = settings({"name": "crl", "kind": "crl", "every": 600})
    stop = asyncio.Event()
    async with migrated(db_url) as first, opened(db_url) as second:
        loops = [
            asyncio.create_task(run_scheduler(s, calls.registry(n), config, n, stop, clock=clock))
            for s, n in ((first, "one"), (second, "two"))
        ]
        loop = asyncio.get_running_loop()
        for period in range(1, 4):
            deadline = loop.time() + 10
            while len(await list_runs(first)) < period:
                assert loop.time() < deadline, "the scheduler did not run the job"
                await asyncio.sleep(0.01)
            # Both loops keep ticking within the period (each tick reads the clock); nothing
            # more may start.
            seen = clock.calls
            while clock.calls < seen + 20:
                assert loop.time() < deadline, "the scheduler loops stopped ticking"
                await asyncio.sleep(0.01)
            assert len(calls.runs) == period
            clock.advance(seconds=600)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loops), 10)
        assert len(await list_runs(first)) == 3


async def test_failures_history_and_config(db_url: str) -> None:
    clock = FakeClock(T0)
    config = settings(
        {"name": "bad", "kind": "broken", "every": 300},
        {"name": "slow", "kind": "hangs", "every": 300, "timeout": 0.2},
    )
    async with migrated(db_url) as sessions:
        scheduler = Scheduler(sessions, Calls(clock).registry("a"), config, "i1", clock=clock)
        await scheduler.start()
        await scheduler.tick()
        await scheduler.wait_idle()
        runs = {r.job: r for r in await list_runs(sessions)}
        # Both leases were given back: another instance may take the next period at once.
        for job in ("bad", "slow"):
            assert await leases.acquire(
                sessions, lease_name(job), "other", clock(), dt.timedelta(seconds=5)
            )
    assert (runs["bad"].status, runs["bad"].error) == (
        "failed",
        "RuntimeError: scanner target list is empty",
    )
    assert runs["slow"].status == "timeout"
    table = format_runs(list(runs.values()))
    assert "bad" in table and "timeout" in table
    assert runs["bad"].as_json()["started_at"] == T0.isoformat()

    # A job kind without a handler: a precise error before anything is written.
    async with opened(db_url) as sessions:
        unknown = settings({"name": "x", "kind": "backup", "every": "1d"})
        with pytest.raises(SchedulerConfigError, match=r"no handler for job kind.*backup"):
            await run_scheduler(sessions, JobRegistry(), unknown, "i", asyncio.Event())
        assert "x" not in {j.name for j in await list_jobs(sessions)}

        # Sync: a changed period is updated, a job removed from the config is disabled.
        two = settings(
            {"name": "a", "kind": "scan", "every": 60}, {"name": "b", "kind": "scan", "every": 60}
        )
        await store.sync_jobs(sessions, two.jobs, T0)
        await store.sync_jobs(sessions, [*two.jobs, *config.jobs], T0)
        one = settings({"name": "a", "kind": "scan", "every": 30})
        await store.sync_jobs(sessions, one.jobs, T0 + dt.timedelta(seconds=5))
        jobs = {j.name: j for j in await list_jobs(sessions)}
    assert jobs["a"].every_seconds == 30 and jobs["a"].enabled
    assert jobs["a"].next_run_at == T0  # still due: the first run has not happened
    assert not jobs["b"].enabled  # removed from the config: disabled, history kept
    assert not jobs["bad"].enabled
