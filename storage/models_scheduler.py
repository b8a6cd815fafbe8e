"""Scheduler tables (migration 0012): the configured jobs and the history of their runs.

``scheduler_jobs`` is synced from the [scheduler] configuration at start; ``next_run_at`` is the
next point of the job's grid (a run advances it in the same transaction that records the run, so
of several instances exactly one runs a period). ``scheduler_runs`` has one row per run:
status running | ok | failed | timeout | skipped | abandoned | cancelled; the unique
(job, scheduled_for) is a second guard against one period running twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class SchedulerJob(Base):
    __tablename__ = "scheduler_jobs"

    name: Mapped[str] = mapped_column(String(48), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    every_seconds: Mapped[float] = mapped_column(Float)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    catch_up: Mapped[bool] = mapped_column(Boolean)
    timeout_seconds: Mapped[float | None] = mapped_column(Float)
    enabled: Mapped[bool] = mapped_column(Boolean)
    next_run_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class SchedulerRun(Base):
    __tablename__ = "scheduler_runs"
    __table_args__ = (
        UniqueConstraint("job_name", "scheduled_for", name="uq_scheduler_runs_job_period"),
        Index("ix_scheduler_runs_started_at", "started_at"),
        Index("ix_scheduler_runs_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_name: Mapped[str] = mapped_column(String(48))
    kind: Mapped[str] = mapped_column(String(32))
    scheduled_for: Mapped[dt.datetime]
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    instance: Mapped[str] = mapped_column(String(64))
    catch_up: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
