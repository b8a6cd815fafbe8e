"""The scheduler loop: every tick, each instance looks for due jobs; for each it takes the job's
lease (storage/repositories/leases.py, name "scheduler:<job>"), claims the due period in the
database and runs the job's handler, renewing the lease while it runs.

Two guards make a period run once: the lease (one instance at a time per job) and the claim's
compare-and-set on ``next_run_at`` with the unique (job, scheduled_for) of the run. After
downtime that spanned several periods, a job with ``catch_up`` runs once (flagged catch-up),
then keeps its grid; without it the missed periods are recorded as one "skipped" run.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler import store
from scheduler.config import SchedulerSettings
from scheduler.registry import JobRegistry, UnknownJobKind
from storage.repositories import leases

log = structlog.get_logger("certyard.scheduler")

Clock = Callable[[], dt.datetime]


class SchedulerConfigError(ValueError):
    """A configured job cannot run (its kind has no handler): one line, at start."""


def check_kinds(settings: SchedulerSettings, registry: JobRegistry) -> None:
    """Raise SchedulerConfigError (one line) if an enabled job's kind has no handler: call it
    before starting the scheduler task so a bad config stops the process at once."""
    jobs = settings.jobs
    unknown = sorted({j.kind for j in jobs if j.enabled and j.kind not in registry})
    if unknown:
        known = ", ".join(registry.kinds()) or "none"
        raise SchedulerConfigError(
            f"scheduler: no handler for job kind(s) {', '.join(unknown)} (known: {known})"
        )


def lease_name(job: str) -> str:
    return f"scheduler:{job}"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Scheduler:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: JobRegistry,
        settings: SchedulerSettings,
        instance_id: str,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.sessions = sessions
        self.registry = registry
        self.settings = settings
        self.instance = instance_id[:64]
        self._clock = clock or _utc_now
        self._ttl = dt.timedelta(seconds=settings.lease_seconds)
        self._running: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Check that every enabled job has a handler, then sync the jobs table."""
        check_kinds(self.settings, self.registry)
        await store.sync_jobs(self.sessions, self.settings.jobs, self._clock())

    async def tick(self) -> list[asyncio.Task[None]]:
        """Start every job that is due and that this instance wins; returns the started runs."""
        started: list[asyncio.Task[None]] = []
        for job in await store.due_jobs(self.sessions, self._clock()):
            if job.name in self._running:
                continue  # still running here: its lease is ours, the next period waits
            task = await self._try_start(job.name)
            if task is not None:
                started.append(task)
        return started

    async def _try_start(self, name: str) -> asyncio.Task[None] | None:
        lease = lease_name(name)
        if not await leases.acquire(self.sessions, lease, self.instance, self._clock(), self._ttl):
            return None
        try:
            claim = await store.claim_period(self.sessions, name, self.instance, self._clock())
        except BaseException:
            await leases.release(self.sessions, lease, self.instance)
            raise
        if claim is None or claim.run_id is None:
            if claim is not None:
                log.info("scheduler_skipped_missed", job=name, missed=claim.missed)
            await leases.release(self.sessions, lease, self.instance)
            return None
        task = asyncio.create_task(self._run(claim), name=f"scheduler:{name}")
        self._running[name] = task
        task.add_done_callback(lambda _t: self._running.pop(name, None))
        return task

    async def _heartbeat(self, name: str, runner: asyncio.Task[None], lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                held = await leases.acquire(
                    self.sessions, lease_name(name), self.instance, self._clock(), self._ttl
                )
            except Exception:
                log.exception("scheduler_lease_renewal_failed", job=name)
                continue
            if not held:
                # Another instance took the lapsed lease and may run the job: stop ours.
                lost.set()
                runner.cancel()
                return

    async def _run(self, claim: store.Claim) -> None:
        job = claim.job
        assert claim.run_id is not None
        me = asyncio.current_task()
        assert me is not None
        lost = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(job.name, me, lost))
        status, error, summary = "ok", None, None
        cancelled = False
        log.info("scheduler_run_started", job=job.name, kind=job.kind, catch_up=claim.catch_up)
        timeout = asyncio.timeout(job.timeout_seconds)
        try:
            handler = self.registry.get(job.kind)
            async with timeout:
                summary = await handler(dict(job.params))
        except UnknownJobKind as exc:
            status, error = "failed", str(exc)
        except TimeoutError as exc:
            if timeout.expired():
                status, error = "timeout", f"did not finish within {job.timeout_seconds:g} s"
            else:
                status, error = "failed", f"TimeoutError: {exc}"
        except asyncio.CancelledError:
            if lost.is_set():
                me.uncancel()
                status, error = "lease_lost", "another instance took over the job's lease"
            else:
                cancelled = True
                status, error = "cancelled", "the scheduler stopped"
        except Exception as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        log.info("scheduler_run_finished", job=job.name, status=status, error=error)
        try:
            await store.finish_run(
                self.sessions,
                claim.run_id,
                status=status,
                now=self._clock(),
                error=error,
                summary=summary,
            )
            if not lost.is_set():
                await leases.release(self.sessions, lease_name(job.name), self.instance)
        except Exception:
            log.exception("scheduler_record_failed", job=job.name)
        if cancelled:
            raise asyncio.CancelledError

    async def wait_idle(self) -> None:
        """Wait for the runs in progress here (tests; a graceful stop)."""
        while self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel the runs in progress (recorded "cancelled") and give their leases back."""
        for task in list(self._running.values()):
            task.cancel()
        await self.wait_idle()


async def run_scheduler(
    sessions: async_sessionmaker[AsyncSession],
    registry: JobRegistry,
    settings: SchedulerSettings,
    instance_id: str,
    stop: asyncio.Event,
    *,
    clock: Clock | None = None,
) -> None:
    """Run the scheduler until ``stop`` is set. Raises SchedulerConfigError at once if a job's
    kind has no handler. A failing tick (database away) is logged and retried next tick."""
    if not settings.enabled:
        return
    scheduler = Scheduler(sessions, registry, settings, instance_id, clock=clock)
    await scheduler.start()
    log.info("scheduler_started", instance=instance_id, jobs=[j.name for j in settings.jobs])
    if not any(job.enabled for job in settings.jobs):
        await stop.wait()  # nothing to run: no need to poll the database
        return
    try:
        while not stop.is_set():
            try:
                await scheduler.tick()
            except Exception:
                log.exception("scheduler_tick_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.tick_seconds)
    finally:
        await scheduler.stop()
