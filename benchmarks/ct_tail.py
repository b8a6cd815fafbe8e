"""CT tailing throughput and lag: certyard (RFC 6962 and tiled) side by side with certspotter.

    python benchmarks/ct_tail.py --entries 1000000 [--grow-per-second 2000 --grow-seconds 30]

1. Serves the suite's test log (tests/support/ctlog.py) with ``--entries`` template
   certificates in a separate process, as an RFC 6962 log and as a static-ct-api log of the
   same tree.
2. Tails it from index 0 with certyard's monitor (in this process, SQLite state, a watch list
   that matches nothing, so every entry is downloaded, hashed into the compact range, parsed
   and matched, and the root verified against the signed tree head) once per log kind, then
   with certspotter (``/usr/bin/certspotter``, RFC 6962 only) reading the same log with the
   same watch list, until its state file shows the tree verified.
3. Lag: a second log that grows at ``--grow-per-second``; each monitor runs for
   ``--grow-seconds`` and the lag (published tree size - verified position) is sampled.

Prints one JSON object. The log server is Python too: at high rates it, not the monitor, can be
the limit; ``server_cpu_seconds`` in the output tells how busy it was. On a shared machine the
wall-clock rate depends on the load; ``entries_per_cpu_second`` (entries / CPU seconds of the
monitor process: certyard's includes its SQLite writes, certspotter's its whole process) does
much less.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ct_monitor.clients import open_client  # noqa: E402
from ct_monitor.config import CTSettings  # noqa: E402
from ct_monitor.loglist import load_log_list  # noqa: E402
from ct_monitor.monitor import Monitor  # noqa: E402
from ct_monitor.state import CTStore  # noqa: E402
from storage.engine import create_engine, migrate, session_factory  # noqa: E402

WATCH = ["example.org", ".example.com"]  # matches none of the template certificates


@contextlib.contextmanager
def log_server(entries: int, grow: float, workdir: Path) -> Iterator[dict[str, Any]]:
    log_list = workdir / f"logs-{entries}-{grow}.json"
    cmd = [sys.executable, "-m", "tests.support.ctlog", "--entries", str(entries)]
    cmd += ["--log-list", str(log_list)]
    if grow:
        cmd += ["--grow-per-second", str(grow)]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        info: dict[str, Any] = json.loads(proc.stdout.readline())
        data = json.loads(log_list.read_text())
        for kind, key in (("rfc6962", "tiled_logs"), ("tiled", "logs")):
            only = json.loads(json.dumps(data))
            for op in only["operators"]:
                op.pop(key, None)
            path = workdir / f"{log_list.stem}-{kind}.json"
            path.write_text(json.dumps(only))
            info[f"log_list_{kind}"] = str(path)
        info["pid"] = proc.pid
        yield info
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def certyard_monitor(
    log_list: str, workdir: Path, name: str, cfg: CTSettings
) -> tuple[Monitor, Any]:
    engine = create_engine(f"sqlite+aiosqlite:///{workdir}/{name}.db")
    await migrate(engine)
    store = CTStore(session_factory(engine))
    for w in WATCH:
        await store.watch_add(w)
    logs = await load_log_list(cfg, log_list)
    clients = [open_client(d, cfg) for d in logs.logs]
    return Monitor(store, clients, cfg), engine


async def certyard_tail(log_list: str, workdir: Path, name: str, size: int) -> dict[str, Any]:
    cfg = CTSettings(default_batch_size=1000, default_parallel_downloads=4)
    monitor, engine = await certyard_monitor(log_list, workdir, name, cfg)
    t0, c0 = time.monotonic(), time.process_time()
    result = await monitor.run(once=True)
    elapsed, cpu = time.monotonic() - t0, time.process_time() - c0
    [status] = monitor.statuses()
    for client in monitor.clients:
        await client.aclose()
    await engine.dispose()
    return {
        "monitor": f"certyard ({name})",
        "entries": status.verified_size,
        "seconds": round(elapsed, 2),
        "entries_per_second": round(size / elapsed),
        "monitor_cpu_seconds": round(cpu, 2),
        "entries_per_cpu_second": round(size / cpu) if cpu else None,
        "error": next(iter(result.values())),
    }


def certspotter_state(state_dir: Path) -> tuple[int, int]:
    """(download size, verified size) from certspotter's state.json (0.16 layout)."""
    for path in state_dir.glob("logs/*/state.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        return data["download_position"]["size"], data["verified_position"]["size"]
    return 0, 0


def start_certspotter(
    log_list: str, workdir: Path, name: str
) -> tuple[subprocess.Popen[bytes], Path]:
    state = workdir / f"certspotter-{name}"
    state.mkdir()
    watch = workdir / "watchlist"
    watch.write_text("\n".join(WATCH) + "\n")
    cmd = [
        "certspotter", "-logs", log_list, "-watchlist", str(watch), "-state_dir", str(state),
        "-start_at_end=false", "-stdout", "-no_save",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, state


def certspotter_tail(log_list: str, workdir: Path, size: int, timeout: float) -> dict[str, Any]:
    t0 = time.monotonic()
    proc, state = start_certspotter(log_list, workdir, "tail")
    verified = 0
    try:
        while time.monotonic() - t0 < timeout:
            _, verified = certspotter_state(state)
            if verified >= size:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
    return {
        "monitor": "certspotter 0.16 (rfc6962)",
        "entries": verified,
        "seconds": round(elapsed, 2),
        "entries_per_second": round(size / elapsed) if verified >= size else None,
        "monitor_cpu_seconds": round(cpu, 2),
        "entries_per_cpu_second": round(size / cpu) if cpu and verified >= size else None,
        "error": None if verified >= size else f"timed out after {timeout}s at {verified}",
    }


async def published_size(log_list: str) -> int:
    cfg = CTSettings()
    [desc] = (await load_log_list(cfg, log_list)).logs
    client = open_client(desc, cfg)
    try:
        return (await client.get_tree_head()).tree_size
    finally:
        await client.aclose()


def lag_summary(samples: list[int], rate: float) -> dict[str, Any]:
    if not samples:
        return {}
    ordered = sorted(samples)
    return {
        "samples": len(samples),
        "mean_entries": round(statistics.mean(samples)),
        "p95_entries": ordered[int(0.95 * (len(ordered) - 1))],
        "max_entries": ordered[-1],
        "mean_seconds": round(statistics.mean(samples) / rate, 2) if rate else None,
    }


async def certyard_lag(
    log_list: str, workdir: Path, name: str, rate: float, seconds: float
) -> dict[str, Any]:
    cfg = CTSettings(default_batch_size=1000, poll_seconds=1.0)
    monitor, engine = await certyard_monitor(log_list, workdir, f"lag-{name}", cfg)
    task = asyncio.create_task(monitor.run(once=False))
    samples: list[int] = []
    t0 = time.monotonic()
    await asyncio.sleep(3)  # the first catch-up is throughput, not lag
    while time.monotonic() - t0 < seconds + 3:
        size = await published_size(log_list)
        statuses = monitor.statuses()
        verified = statuses[0].verified_size if statuses else 0
        samples.append(max(0, size - verified))
        await asyncio.sleep(0.5)
    monitor.stop()
    await task
    for client in monitor.clients:
        await client.aclose()
    await engine.dispose()
    return {"monitor": f"certyard ({name})", **lag_summary(samples, rate)}


async def certspotter_lag(
    log_list: str, workdir: Path, rate: float, seconds: float
) -> dict[str, Any]:
    proc, state = start_certspotter(log_list, workdir, "lag")
    samples: list[int] = []
    t0 = time.monotonic()
    try:
        await asyncio.sleep(3)
        while time.monotonic() - t0 < seconds + 3:
            size = await published_size(log_list)
            samples.append(max(0, size - certspotter_state(state)[1]))
            await asyncio.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait()
    return {"monitor": "certspotter 0.16 (rfc6962)", **lag_summary(samples, rate)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="ct-tail-"))
    out: dict[str, Any] = {"entries": args.entries, "cpus": os.cpu_count(), "throughput": []}
    have_certspotter = shutil.which("certspotter") is not None and not args.skip_certspotter
    try:
        with log_server(args.entries, 0, workdir) as info:
            out["log_build_seconds"] = info["build_seconds"]
            size = info["tree_size"]
            c0 = cpu_seconds(info["pid"])
            for kind in ("rfc6962", "tiled"):
                s0 = cpu_seconds(info["pid"])
                row = await certyard_tail(info[f"log_list_{kind}"], workdir, kind, size)
                row["server_cpu_seconds"] = round(cpu_seconds(info["pid"]) - s0, 2)
                out["throughput"].append(row)
            if have_certspotter:
                s0 = cpu_seconds(info["pid"])
                row = certspotter_tail(info["log_list_rfc6962"], workdir, size, args.timeout)
                row["server_cpu_seconds"] = round(cpu_seconds(info["pid"]) - s0, 2)
                out["throughput"].append(row)
            out["server_cpu_seconds_total"] = round(cpu_seconds(info["pid"]) - c0, 2)
        if args.grow_seconds > 0:
            out["lag"] = {"grow_per_second": args.grow_per_second, "seconds": args.grow_seconds}
            runs = []
            for kind in ("rfc6962", "tiled"):
                with log_server(args.grow_initial, args.grow_per_second, workdir) as info:
                    runs.append(
                        await certyard_lag(
                            info[f"log_list_{kind}"], workdir, kind, args.grow_per_second,
                            args.grow_seconds,
                        )
                    )  # fmt: skip
            if have_certspotter:
                with log_server(args.grow_initial, args.grow_per_second, workdir) as info:
                    runs.append(
                        await certspotter_lag(
                            info["log_list_rfc6962"], workdir, args.grow_per_second,
                            args.grow_seconds,
                        )
                    )  # fmt: skip
            out["lag"]["runs"] = runs
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--grow-per-second", type=float, default=2000.0)
    p.add_argument("--grow-seconds", type=float, default=20.0, help="0: skip the lag runs")
    p.add_argument("--grow-initial", type=int, default=10_000)
    p.add_argument("--timeout", type=float, default=1800.0, help="certspotter catch-up limit")
    p.add_argument("--skip-certspotter", action="store_true")
    print(json.dumps(asyncio.run(main(p.parse_args())), indent=2))
