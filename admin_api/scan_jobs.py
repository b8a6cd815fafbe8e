"""Scans started through the admin API, running as tasks of this process.

The ScanRun row is written first (so the API can answer 202 with its id at once); the scan then
runs as ``scanner.scan.scan(..., resume_id=id)``, which continues that recorded run: nothing of
it is done yet, so every endpoint is probed. Cancelling cancels the task; the scanner records the
run as "interrupted" on its way out. Only the instance running a scan can cancel it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from certyard.metrics_scan import ScanProgress
from scanner.scan import ScanRequest, scan
from storage.models import ScanRun

log = structlog.get_logger("certyard.admin")


class ScanJobs:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def running(self, scan_id: str) -> bool:
        task = self._tasks.get(scan_id)
        return task is not None and not task.done()

    def start(
        self,
        scan_id: str,
        request: ScanRequest,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], dt.datetime],
        anchors: Sequence[Path],
    ) -> None:
        async def run() -> None:
            try:
                with ScanProgress() as progress:  # scan progress metrics (docs/metrics.md)
                    await scan(
                        request,
                        sessions=sessions,
                        clock=clock,
                        extra_anchors=[p for p in anchors if p.is_file()],
                        resume_id=scan_id,
                        observer=progress,
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("admin_scan_failed", scan=scan_id)
            finally:
                # A scan that failed before its runner started never recorded an end: say so.
                with contextlib.suppress(Exception):
                    async with sessions.begin() as session:
                        await session.execute(
                            update(ScanRun)
                            .where(ScanRun.id == scan_id, ScanRun.status == "running")
                            .values(status="interrupted", finished_at=clock())
                        )
                self._tasks.pop(scan_id, None)

        self._tasks[scan_id] = asyncio.create_task(run(), name=f"admin-scan-{scan_id}")

    async def cancel(self, scan_id: str) -> bool:
        task = self._tasks.get(scan_id)
        if task is None or task.done():
            return False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    async def close(self) -> None:
        for scan_id in list(self._tasks):
            await self.cancel(scan_id)
