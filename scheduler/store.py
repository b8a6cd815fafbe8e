"""Database side of the scheduler: syncing jobs from the config, claiming a due period,
recording runs. Every claim is one transaction that moves ``next_run_at`` forward only if
nobody else did (compare-and-set), and inserts the run whose (job, scheduled_for) is unique."""

from __future__ import annotations

import datetime as dt
import json
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.config import JobSettings
from storage.models_scheduler import SchedulerJob, SchedulerRun

_ERROR_LIMIT = 2000


@dataclass(frozen=True)
class JobState:
    name: str
    kind: str
    every_seconds: float
    params: dict[str, Any]
    catch_up: bool
    timeout_seconds: float | None
    enabled: bool
    next_run_at: dt.datetime


@dataclass(frozen=True)
class Claim:
    """A period this instance won: run it (``run_id`` set) or it was skipped (``run_id`` None)."""

    job: JobState
    run_id: str | None
    scheduled_for: dt.datetime
    catch_up: bool
    missed: int


def job_state(row: SchedulerJob) -> JobState:
    return JobState(
        name=row.name,
        kind=row.kind,
        every_seconds=row.every_seconds,
        params=dict(row.params),
        catch_up=row.catch_up,
        timeout_seconds=row.timeout_seconds,
        enabled=row.enabled,
        next_run_at=row.next_run_at,
    )


async def sync_jobs(
    sessions: async_sessionmaker[AsyncSession], jobs: Sequence[JobSettings], now: dt.datetime
) -> None:
    """Make the table match the config: new jobs are due at once, changed ones updated, jobs no
    longer configured disabled (their history stays)."""
    configured = {job.name: job for job in jobs}
    for job in jobs:
        for _ in range(2):  # a second instance may insert the same new job concurrently
            try:
                async with sessions.begin() as session:
                    row = await session.get(SchedulerJob, job.name)
                    if row is None:
                        session.add(
                            SchedulerJob(
                                name=job.name,
                                kind=job.kind,
                                every_seconds=job.every,
                                params=job.params,
                                catch_up=job.catch_up,
                                timeout_seconds=job.timeout,
                                enabled=job.enabled,
                                next_run_at=now,
                                updated_at=now,
                            )
                        )
                    else:
                        if row.every_seconds != job.every:
                            # A shorter period takes effect now, a longer one after the next run.
                            row.next_run_at = min(
                                row.next_run_at, now + dt.timedelta(seconds=job.every)
                            )
                        row.kind = job.kind
                        row.every_seconds = job.every
                        row.params = job.params
                        row.catch_up = job.catch_up
                        row.timeout_seconds = job.timeout
                        row.enabled = job.enabled
                        row.updated_at = now
                break
            except IntegrityError:
                continue
    async with sessions.begin() as session:
        stale = select(SchedulerJob).where(SchedulerJob.enabled.is_(True))
        for row in (await session.scalars(stale)).all():
            if row.name not in configured:
                row.enabled = False
                row.updated_at = now


async def due_jobs(sessions: async_sessionmaker[AsyncSession], now: dt.datetime) -> list[JobState]:
    async with sessions() as session:
        rows = await session.scalars(
            select(SchedulerJob)
            .where(SchedulerJob.enabled.is_(True), SchedulerJob.next_run_at <= now)
            .order_by(SchedulerJob.next_run_at)
        )
        return [job_state(row) for row in rows.all()]


def next_after(start: dt.datetime, every: float, now: dt.datetime) -> tuple[dt.datetime, int]:
    """The first point of the grid start + k*every strictly after ``now``, and how many grid
    points after ``start`` were passed over (missed periods)."""
    late = (now - start).total_seconds()
    passed = max(0, math.floor(late / every))
    following = start + dt.timedelta(seconds=every * (passed + 1))
    return following, passed


async def claim_period(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    instance: str,
    now: dt.datetime,
) -> Claim | None:
    """Take the due period of job ``name``; None when it is not due (any more) or someone else
    took it. Runs that another instance left "running" (its lease lapsed: it died) are marked
    abandoned first — the caller holds the job's lease, so nobody else is running it."""
    try:
        async with sessions.begin() as session:
            row = await session.get(SchedulerJob, name)
            if row is None or not row.enabled or row.next_run_at > now:
                return None
            job = job_state(row)
            await session.execute(
                update(SchedulerRun)
                .where(SchedulerRun.job_name == name, SchedulerRun.status == "running")
                .values(
                    status="abandoned",
                    finished_at=now,
                    error="the instance running it stopped renewing its lease",
                )
            )
            following, passed = next_after(job.next_run_at, job.every_seconds, now)
            # Late by at least a whole period: the due point and every one passed over since
            # were missed (downtime). One run covers them all, or none with catch_up off.
            missed = passed + 1 if passed else 0
            moved = await session.execute(
                update(SchedulerJob)
                .where(SchedulerJob.name == name, SchedulerJob.next_run_at == job.next_run_at)
                .values(next_run_at=following)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                return None
            skip = missed > 0 and not job.catch_up
            run_id = secrets.token_urlsafe(12)
            session.add(
                SchedulerRun(
                    id=run_id,
                    job_name=name,
                    kind=job.kind,
                    scheduled_for=job.next_run_at,
                    started_at=now,
                    finished_at=now if skip else None,
                    status="skipped" if skip else "running",
                    instance=instance,
                    catch_up=missed > 0 and not skip,
                    summary={"missed_periods": missed} if missed else None,
                )
            )
        return Claim(job, None if skip else run_id, job.next_run_at, missed > 0, missed)
    except IntegrityError:
        return None  # the period's run exists already


def _jsonable(summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    loaded: dict[str, Any] = json.loads(json.dumps(dict(summary), default=str))
    return loaded


async def finish_run(
    sessions: async_sessionmaker[AsyncSession],
    run_id: str,
    *,
    status: str,
    now: dt.datetime,
    error: str | None = None,
    summary: Mapping[str, Any] | None = None,
) -> None:
    async with sessions.begin() as session:
        row = await session.get(SchedulerRun, run_id)
        if row is None or row.status != "running":
            return  # marked abandoned by the instance that took the job over: that stays
        row.status = status
        row.finished_at = now
        row.error = None if error is None else error[:_ERROR_LIMIT]
        merged = dict(row.summary or {})
        merged.update(_jsonable(summary) or {})
        row.summary = merged or None
