"""Reading the scheduler's jobs and run history (for a CLI, the admin API or a test)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.store import JobState, job_state
from storage.models_scheduler import SchedulerJob, SchedulerRun


@dataclass(frozen=True)
class RunRecord:
    id: str
    job: str
    kind: str
    scheduled_for: dt.datetime
    started_at: dt.datetime
    finished_at: dt.datetime | None
    status: str
    instance: str
    catch_up: bool
    error: str | None
    summary: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        def iso(value: dt.datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "id": self.id,
            "job": self.job,
            "kind": self.kind,
            "scheduled_for": iso(self.scheduled_for),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "status": self.status,
            "instance": self.instance,
            "catch_up": self.catch_up,
            "error": self.error,
            "summary": self.summary,
        }


async def list_runs(
    sessions: async_sessionmaker[AsyncSession],
    *,
    job: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[RunRecord]:
    """Runs, newest first."""
    query = (
        select(SchedulerRun)
        .order_by(SchedulerRun.started_at.desc(), SchedulerRun.scheduled_for.desc())
        .limit(limit)
    )
    if job is not None:
        query = query.where(SchedulerRun.job_name == job)
    if status is not None:
        query = query.where(SchedulerRun.status == status)
    async with sessions() as session:
        rows = (await session.scalars(query)).all()
    return [
        RunRecord(
            id=r.id,
            job=r.job_name,
            kind=r.kind,
            scheduled_for=r.scheduled_for,
            started_at=r.started_at,
            finished_at=r.finished_at,
            status=r.status,
            instance=r.instance,
            catch_up=r.catch_up,
            error=r.error,
            summary=r.summary,
        )
        for r in rows
    ]


async def list_jobs(sessions: async_sessionmaker[AsyncSession]) -> list[JobState]:
    async with sessions() as session:
        rows = await session.scalars(select(SchedulerJob).order_by(SchedulerJob.name))
        return [job_state(row) for row in rows.all()]


def format_runs(runs: list[RunRecord]) -> str:
    """A plain-text table, one run a line (what a `history` command prints)."""
    header = f"{'STARTED (UTC)':<20} {'JOB':<20} {'KIND':<8} {'STATUS':<10} {'INSTANCE':<16} NOTE"
    lines = [header]
    for run in runs:
        note = run.error or ""
        if run.catch_up:
            note = ("catch-up " + note).strip()
        if run.summary and not note:
            note = ", ".join(f"{k}={v}" for k, v in sorted(run.summary.items()))
        lines.append(
            f"{run.started_at:%Y-%m-%d %H:%M:%S} {run.job[:20]:<20} {run.kind[:8]:<8} "
            f"{run.status:<10} {run.instance[:16]:<16} {note[:80]}"
        )
    return "\n".join(lines)
