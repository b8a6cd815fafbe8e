"""``certyard serve`` runs the scheduler's jobs (docs/scheduler.md): a CRL job defined in the
configuration runs periodically and its runs are recorded; an unknown job kind stops the start
with one line."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from pathlib import Path

from tests.support.server import CertyardServer, certyard_command


def _runs(db: Path) -> list[tuple[str, str]]:
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return [
                (str(job), str(status))
                for job, status in conn.execute("SELECT job_name, status FROM scheduler_runs")
            ]
    except sqlite3.OperationalError:
        return []


async def test_serve_runs_a_configured_job(tmp_path: Path) -> None:
    jobs = json.dumps([{"name": "crl-often", "kind": "crl", "every": "1s"}])
    server = CertyardServer(tmp_path / "data", extra_env={"CERTYARD__SCHEDULER__JOBS": jobs})
    with server:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while loop.time() < deadline:
            done = [r for r in _runs(server.data_dir / "certyard.db") if r[1] == "ok"]
            if len(done) >= 2:
                break
            await asyncio.sleep(0.2)
        assert len(done) >= 2, server.log_tail()
        assert {job for job, _ in done} == {"crl-often"}


def test_unknown_job_kind_stops_the_start(tmp_path: Path) -> None:
    env = CertyardServer(tmp_path / "data").environment()
    env["CERTYARD__SCHEDULER__JOBS"] = json.dumps([{"name": "x", "kind": "nope", "every": 60}])
    result = subprocess.run(
        [*certyard_command(), "serve"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "nope" in result.stderr and "Traceback" not in result.stderr
