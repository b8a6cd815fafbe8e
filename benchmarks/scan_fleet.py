"""Scanner benchmark (issue 5): endpoints per second and peak memory for a loopback fleet of
1,000 and 10,000 TLS endpoints, side by side in one run with sslyze (``--certinfo`` only) and
nmap (``--script ssl-cert``) on the same fleet; and SYN packets per second with ``--syn``.

The fleet is one helper process (this script with ``--serve``) listening on N addresses
127.101.x.y, one port, each answering TLS 1.3 with the same ECDSA P-256 certificate. Every tool
reads the same target list. certyard runs with what matches "certificate information only":
no inventory, no TLS 1.1 probe, no OCSP stapling handshake, no known-name lookups (its defaults
do more per endpoint). Peak memory is each tool process's maximum resident set (``wait4``).

sslyze is installed in its own virtualenv (benchmarks/.venv-sslyze: its pinned cryptography
must not meet certyard's); nmap is Debian's. A missing peer is reported as missing, not faked.
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

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- running one tool --------------------------------------------------------------------------


def timed(command: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``command``; wall seconds, peak RSS (MiB) of that process, exit status."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = start + timeout
    status, usage = 0, None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            return {"timed_out_after_seconds": timeout, "seconds": time.perf_counter() - start}
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "exit_status": os.waitstatus_to_exitcode(status),
        "stderr_tail": stderr.strip().splitlines()[-3:],
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
                    entry = rates(runner(fleet, work, args.peer_timeout), size)
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
