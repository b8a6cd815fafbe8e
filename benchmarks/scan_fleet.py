"""Scanner benchmark (issue 5): endpoints per second and peak memory for a loopback fleet of
1,000 and 10,000 TLS endpoints, side by side in one run with sslyze (``--certinfo`` only) and
nmap (``--script ssl-cert``) on the same fleet; and SYN packets per second with ``--syn``.

The fleet is one helper process (this script with ``--serve``) listening on N addresses
127.101.x.y, one port, each answering TLS 1.3 with the same ECDSA P-256 certificate. Every tool
reads the same target list. certyard runs with what matches "certificate information only":
no inventory, no TLS 1.1 probe, no OCSP stapling handshake, no known-name lookups (its defaults
do more per endpoint). Peak memory is each tool process's maximum resident set (``wait4``, read
by a small launcher process so that this script's own size does not leak into the figure).

sslyze is installed in its own virtualenv (benchmarks/.venv-sslyze: its pinned cryptography
must not meet certyard's); nmap is Debian's. A missing peer is reported as missing, not faked.
Is the fleet the bottleneck? Each run records the fleet process's CPU seconds
(``fleet_cpu_seconds``) next to the tool's own (``cpu_seconds``) and the wall time. On the
2-core benchmark machine the fleet spends 0.6-0.7 ms of CPU per TLS 1.3 handshake, less than
any of the three tools spends per endpoint, and it serves every tool alike (sslyze costs it more
because sslyze makes several connections per endpoint). So one asyncio process is kept: on two
cores more server processes, or HAProxy terminating TLS, would only take CPU from the tool being
measured, whose wall rate is bounded by (tool CPU + fleet CPU) / 2 cores. When the machine is
shared, wall time exceeds that: compare the tools within one run, and their ``cpu_seconds``.

Figures go to stdout as one JSON object; progress to stderr. Run as root from the repository
root (``--syn`` needs raw sockets)::

    .venv/bin/python benchmarks/scan_fleet.py                  # 1,000 and 10,000 endpoints
    .venv/bin/python benchmarks/scan_fleet.py --sizes 200      # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PORT = 8443


def log(message: str) -> None:
    print(f"scan_fleet: {message}", file=sys.stderr, flush=True)


def address(index: int) -> str:
    return f"127.101.{index // 250}.{index % 250 + 1}"


# --- the fleet ---------------------------------------------------------------------------------


def make_certificate(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleet.bench.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("fleet.bench.test")]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fleet.pem", directory / "fleet.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def serve(count: int, port: int, cert: Path, key: Path) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    servers = [
        await asyncio.start_server(handle, address(i), port, ssl=ctx, backlog=64)
        for i in range(count)
    ]
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), closed.set)  # the parent closes stdin to stop us
    await closed.wait()
    for server in servers:
        server.close()


class Fleet:
    def __init__(self, count: int, work: Path, cert: Path, key: Path) -> None:
        self.count = count
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(count), "--cert", str(cert),
             "--key", str(key)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError("the fleet did not start")
        self.targets = work / f"targets-{count}.txt"
        self.targets.write_text("".join(f"{address(i)}:{PORT}\n" for i in range(count)))
        self.hosts = work / f"hosts-{count}.txt"
        self.hosts.write_text("".join(f"{address(i)}\n" for i in range(count)))

    def cpu_seconds(self) -> float:
        """CPU time the fleet process has used so far (user + system, /proc/PID/stat)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- running one tool --------------------------------------------------------------------------


# Each tool is started by this small launcher, which reports the tool's own rusage. Linux folds
# the forking process's peak RSS into the child's ru_maxrss across exec, so a tool forked straight
# from this (large, growing) process would get this process's size as a floor under its figure.
LAUNCHER = """
import json, os, sys, time
out, command = sys.argv[1], sys.argv[2:]
start = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(command[0], command)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as f:
    json.dump({"seconds": time.monotonic() - start, "status": status,
               "maxrss_kib": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime}, f)
"""


def timed(command: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``command``; wall seconds, peak RSS (MiB) and CPU seconds of that process, exit
    status."""
    with tempfile.TemporaryDirectory(prefix="scan-fleet-run-") as tmp:
        usage_path, stderr_path = Path(tmp) / "usage.json", Path(tmp) / "stderr"
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", LAUNCHER, str(usage_path), *command],
                stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True,
            )  # fmt: skip
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the tool
                proc.wait()
                return {"timed_out_after_seconds": timeout}
        usage = json.loads(usage_path.read_text())
        tail = stderr_path.read_text(errors="replace").strip().splitlines()[-3:]
    return {
        "seconds": round(usage["seconds"], 2),
        "peak_rss_mib": round(usage["maxrss_kib"] / 1024, 1),  # Linux: KiB
        # CPU the tool itself used: on a shared machine wall time also counts other work.
        "cpu_seconds": round(usage["cpu"], 2),
        "exit_status": os.waitstatus_to_exitcode(usage["status"]),
        "stderr_tail": tail,
    }


def run_certyard(fleet: Fleet, work: Path, timeout: float) -> dict[str, Any]:
    out = work / f"certyard-{fleet.count}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTYARD__")}
    env["CERTYARD__SERVER__DATA_DIR"] = str(work / "certyard-data")
    result = timed(
        [str(REPO / ".venv" / "bin" / "certyard"), "scan", "--targets-file", str(fleet.targets),
         "--no-inventory", "--no-legacy-probe", "--no-ocsp-stapling", "--no-known-names",
         "--timeout", "10", "--retries", "1", "--concurrency", "512", "--per-host", "2",
         "--out", str(out)],
        timeout, env,
    )  # fmt: skip
    if out.exists():
        document = json.loads(out.read_text())
        result["certificates_read"] = sum(1 for e in document["endpoints"] if e.get("certificate"))
    return result


def run_sslyze(fleet: Fleet, work: Path, timeout: float) -> dict[str, Any]:
    sslyze = REPO / "benchmarks" / ".venv-sslyze" / "bin" / "sslyze"
    if not sslyze.exists():
        return {"missing": "sslyze (python3 -m venv benchmarks/.venv-sslyze && "
                           "benchmarks/.venv-sslyze/bin/pip install sslyze)"}  # fmt: skip
    out = work / f"sslyze-{fleet.count}.json"
    result = timed(
        [str(sslyze), "--certinfo", "--quiet", f"--targets_in={fleet.targets}",
         f"--json_out={out}"],
        timeout,
    )  # fmt: skip
    if out.exists():
        document = json.loads(out.read_text())
        result["certificates_read"] = sum(
            1
            for r in document.get("server_scan_results", [])
            if (r.get("scan_result") or {}).get("certificate_info", {}).get("status") == "COMPLETED"
        )
    return result


def run_nmap(fleet: Fleet, work: Path, timeout: float) -> dict[str, Any]:
    nmap = shutil.which("nmap")
    if nmap is None:
        return {"missing": "nmap (apt-get install nmap)"}
    out = work / f"nmap-{fleet.count}.xml"
    result = timed(
        [nmap, "-n", "-Pn", "-T4", "-p", str(PORT), "--script", "ssl-cert",
         "-iL", str(fleet.hosts), "-oX", str(out)],
        timeout,
    )  # fmt: skip
    if out.exists():
        result["certificates_read"] = len(re.findall(r'<script id="ssl-cert"', out.read_text()))
    return result


async def syn_rate(fleet: Fleet, rate: int) -> dict[str, Any]:
    from scanner.jobs import Status
    from scanner.syn import SynScanner, can_syn_scan

    if not can_syn_scan():
        return {"missing": "raw sockets (run as root)"}
    scanner = SynScanner(rate=rate, timeout=2.0, retries=0)
    start = time.perf_counter()
    states = await scanner.scan((address(i), PORT) for i in range(fleet.count))
    seconds = time.perf_counter() - start - 0.0
    return {
        "rate_cap_pps": rate,
        "packets_sent": scanner.sent,
        "seconds_including_answer_wait": round(seconds, 2),
        "open_found": sum(1 for s in states.values() if s is Status.OK),
        "endpoints": fleet.count,
    }


def rates(entry: dict[str, Any], count: int) -> dict[str, Any]:
    if "seconds" in entry and "timed_out_after_seconds" not in entry:
        entry["endpoints_per_second"] = round(count / entry["seconds"], 1)
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--peer-timeout", type=float, default=900.0, help="seconds per peer run")
    parser.add_argument("--syn-rate", type=int, default=20000)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cert", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.serve:
        asyncio.run(serve(args.serve, PORT, args.cert, args.key))
        return 0
    report: dict[str, Any] = {
        "benchmark": "scan_fleet",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "certyard_options": "--no-inventory --no-legacy-probe --no-ocsp-stapling "
        "--no-known-names --concurrency 512 --per-host 2 --timeout 10 --retries 1",
        "sslyze_options": "--certinfo",
        "nmap_options": "-n -Pn -T4 -p 8443 --script ssl-cert",
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="scan-fleet-") as tmp:
        work = Path(tmp)
        cert, key = make_certificate(work)
        for size in (int(s) for s in args.sizes.split(",")):
            log(f"fleet of {size} endpoints")
            fleet = Fleet(size, work, cert, key)
            try:
                for tool, runner in (
                    ("certyard", run_certyard),
                    ("sslyze", run_sslyze),
                    ("nmap", run_nmap),
                ):
                    log(f"  {tool}")
                    fleet_cpu = fleet.cpu_seconds()
                    entry = rates(runner(fleet, work, args.peer_timeout), size)
                    # The fleet's own CPU during the run: were it near the wall time, the
                    # fleet, not the tool, would be the bottleneck.
                    entry["fleet_cpu_seconds"] = round(fleet.cpu_seconds() - fleet_cpu, 2)
                    report["runs"].append({"tool": tool, "endpoints": size, **entry})
                    log(f"    {entry}")
                log("  certyard --syn pre-scan")
                report.setdefault("syn", []).append(asyncio.run(syn_rate(fleet, args.syn_rate)))
            finally:
                fleet.stop()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
