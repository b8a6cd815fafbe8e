"""``certyard scan --resume ID``: a scan killed halfway (SIGKILL, nothing flushed) and resumed
ends with the same result as an uninterrupted scan, and repeats no finished work."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_scan_fleet import Fleet, _start, build_fleet, observed
from tests.support.server import certyard_command

SILENT_NET = "127.95.0."
SILENT = 6  # endpoints that accept TCP and never answer: each holds the scan for --timeout


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    built = await build_fleet(tmp_path)
    try:
        for n in range(1, SILENT + 1):
            ip = f"{SILENT_NET}{n}"
            port = await _start(built, ip, None, None)
            built.targets.append(f"{ip}:{port}")
            built.expected[(ip, port, None)] = ("no_tls", None)
        yield built
    finally:
        built.close()


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db, timeout=10) as conn:
        return conn.execute(sql).fetchall()


async def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *certyard_command(), *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_killed_scan_resumes_to_the_uninterrupted_result(
    fleet: Fleet, tmp_path: Path
) -> None:
    assert fleet.trust is not None
    data = tmp_path / "data"
    db = data / "certyard.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTYARD__")}
    env["CERTYARD__SERVER__DATA_DIR"] = str(data)
    scan_args = [
        "scan", *fleet.targets, "--trust", str(fleet.trust), "--timeout", "1",
        "--retries", "0", "--concurrency", "1", "--seed", "11", "--out", str(tmp_path / "r.json"),
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *certyard_command(), *scan_args, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    total = len(fleet.expected)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    recorded = 0
    while loop.time() < deadline:
        if db.exists():
            try:
                recorded = int(_query(db, "SELECT count(*) FROM scan_observations")[0][0])  # type: ignore[call-overload]
            except sqlite3.OperationalError:
                recorded = 0  # tables not migrated yet
        if recorded >= total // 3:
            break
        await asyncio.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    ((scan_id, status),) = _query(db, "SELECT id, status FROM scan_runs")
    assert status == "running", "the scan finished before it could be killed"
    before = int(_query(db, "SELECT count(*) FROM scan_observations")[0][0])  # type: ignore[call-overload]
    assert 0 < before < total

    code, out, err = await _run(env, "scan", "--resume", str(scan_id))
    assert code == 0, err
    resumed = json.loads(out)
    assert resumed["scan"]["id"] == scan_id
    assert observed(resumed["endpoints"]) == fleet.expected
    # Each (ip, port, sni) observed once in this scan: nothing repeated, nothing lost.
    rows = _query(db, "SELECT count(*), count(DISTINCT endpoint_id) FROM scan_observations")
    assert rows[0][0] == rows[0][1] == total
    ((status,),) = _query(db, "SELECT status FROM scan_runs")
    assert status == "done"

    code, out, err = await _run(env, "report", "--scan", str(scan_id))
    assert code == 0, err
    assert observed(json.loads(out)["endpoints"]) == fleet.expected

    code, _, err = await _run(env, "scan", "--resume", str(scan_id))
    assert code == 2 and "nothing to resume" in err
