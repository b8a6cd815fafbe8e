"""CA signing benchmark: signatures and issuances per second, HSM (SoftHSM2) and software.

For each CA key algorithm it measures, each for a bounded time (``--seconds``) or count:

* ``raw_sign``: the token's own rate - a bare python-pkcs11 loop on one session, one thread,
  signing a pre-hashed digest with CKM_ECDSA (EC) or 32 bytes with CKM_SHA256_RSA_PKCS (RSA);
  and, when OpenSC's ``pkcs11-tool`` is installed, one ``pkcs11-tool --sign`` process per
  signature (process start-up, module load and login bound: not the token's rate);
* ``sign``: ``KeyBackend.sign`` of a 512-byte message through certyard's PKCS#11 backend
  (executor, serialized module calls, DER re-encoding), one caller and ``--concurrency``
  callers; and through the software backend;
* ``issue_lint_on`` / ``issue_lint_off``: ``IssuanceService.issue_tls_server`` end to end
  (CSR check, build, lint, "signing" record committed, sign, splice, verify, record completed)
  on SQLite, one caller and ``--issue-concurrency`` callers, each with a fresh CSR made before
  the clock starts.

Everything (token, databases) lives in a temporary directory removed at the end. Figures go to
stdout as one JSON object; progress goes to stderr. Run from the repository root::

    .venv/bin/python benchmarks/ca_signing.py            # full run, about 80 s on 2 cores
    .venv/bin/python benchmarks/ca_signing.py --quick    # smoke run, ~10 seconds
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import datetime as dt
import importlib
import importlib.metadata
import inspect
import json
import logging
import math
import os
import platform
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pkcs11
import structlog
from cryptography import x509
from cryptography.hazmat.backends.openssl import backend as openssl_backend
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Mechanism, ObjectClass
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ca.config import CAConfig
from ca.errors import CAError
from ca.hierarchy import Hierarchy, load_or_create_hierarchy
from ca.issuance import IssuanceService
from ca.keys import EC_P256, EC_P384, KEY_ALGORITHMS, RSA_2048, RSA_3072, KeyBackend
from ca.pkcs11_keys import ID_REF, Pkcs11KeyBackend
from ca.softhsm import SoftHsmToken, ensure_softhsm_token
from ca.software_keys import SoftwareKeyBackend
from storage.engine import create_engine, migrate, session_factory

DEFAULT_ALGORITHMS = (EC_P256, EC_P384, RSA_2048, RSA_3072)
QUICK_ALGORITHMS = (EC_P256, RSA_2048)
DEFAULT_SECONDS = 1.3
QUICK_SECONDS = 0.25
MESSAGE = secrets.token_bytes(512)  # about the size of a leaf TBSCertificate
# Upper bounds on the operations of one measurement (per second of it): the count stops a
# measurement early only on a machine far faster than the ones this was written on.
MAX_SIGNS_PER_SECOND = 100_000
MAX_ISSUANCES_PER_SECOND = 400
MAX_TOOL_RUNS = 200
BENCH_URL = "http://ca.bench.example"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Result:
    what: str
    backend: str
    algorithm: str
    concurrency: int
    ops: int
    seconds: float
    latencies: list[float] = field(repr=False)
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        row: dict[str, Any] = {
            "what": self.what,
            "backend": self.backend,
            "algorithm": self.algorithm,
            "concurrency": self.concurrency,
            "ops": self.ops,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.ops / self.seconds, 1) if self.seconds > 0 else None,
            "p50_ms": _percentile_ms(ordered, 0.50),
            "p95_ms": _percentile_ms(ordered, 0.95),
        }
        if self.note:
            row["note"] = self.note
        return row

    def line(self) -> str:
        row = self.as_json()
        return (
            f"  {self.what:<15} {self.backend:<13} {self.algorithm:<9} c={self.concurrency:<2} "
            f"{row['per_second']:>9} /s  p50 {row['p50_ms']} ms  p95 {row['p95_ms']} ms "
            f"({self.ops} in {row['seconds']} s)"
        )


def _percentile_ms(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    value = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
    return round(value * 1000, 3)


async def measure_async(
    op: Callable[[], Awaitable[object]], *, concurrency: int, seconds: float, max_ops: int
) -> tuple[int, float, list[float]]:
    """``concurrency`` callers each run ``op`` until ``seconds`` pass or ``max_ops`` ran."""
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds

    async def caller() -> None:
        while len(latencies) < max_ops and time.perf_counter() < deadline:
            begin = time.perf_counter()
            await op()
            latencies.append(time.perf_counter() - begin)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return len(latencies), time.perf_counter() - started, latencies


def measure_sync(
    op: Callable[[], object], *, seconds: float, max_ops: int
) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    while len(latencies) < max_ops and time.perf_counter() < deadline:
        begin = time.perf_counter()
        op()
        latencies.append(time.perf_counter() - begin)
    return len(latencies), time.perf_counter() - started, latencies


# --- the pieces under test ------------------------------------------------------------------


@dataclass
class CA:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    backend: KeyBackend
    hierarchy: Hierarchy


def ca_config(algorithm: str, *, lint: bool) -> CAConfig:
    return CAConfig(
        key_algorithm=algorithm, crl_base_url=BENCH_URL, ca_issuers_url=BENCH_URL, lint=lint
    )


async def open_ca(db_path: Path, backend: KeyBackend, algorithm: str) -> CA:
    engine = create_engine(f"sqlite+aiosqlite:///{db_path}")
    await migrate(engine)
    sessions = session_factory(engine)
    hierarchy = await load_or_create_hierarchy(
        sessions, backend, ca_config(algorithm, lint=True), utc_now
    )
    return CA(engine, sessions, backend, hierarchy)


def software_backend(workdir: Path) -> tuple[KeyBackend, str]:
    """A SoftwareKeyBackend and how its keys are protected at rest, whichever way its
    constructor currently takes the secret: a key-encryption key (envelope encryption) when it
    takes ``kek`` and ``ca.kek.FileKek`` exists, else a passphrase. Signing never touches the
    stored blob, so the choice does not change the figures."""
    constructor: Any = SoftwareKeyBackend
    if "kek" in inspect.signature(SoftwareKeyBackend).parameters:
        try:
            kek_module = importlib.import_module("ca.kek")
            kek = kek_module.FileKek(workdir / "kek", create_if_missing=True)
            return constructor(kek), "envelope (FileKek)"
        except (ImportError, AttributeError, TypeError):
            pass  # an API this script does not know yet: fall back to a passphrase
    passphrase = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=")
    factory = getattr(SoftwareKeyBackend, "from_passphrase", None)
    if callable(factory):
        return factory(passphrase), "passphrase (from_passphrase)"
    return constructor(passphrase), "passphrase"


def make_csrs(count: int) -> collections.deque[x509.CertificateSigningRequest]:
    """Fresh P-256 subscriber CSRs, made before a measurement starts."""
    csrs: collections.deque[x509.CertificateSigningRequest] = collections.deque()
    for _ in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        csrs.append(
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, hashes.SHA256())
        )
    return csrs


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.results: list[Result] = []
        self.skipped: list[dict[str, str]] = []
        self._names = 0
        self.software_protection: str | None = None

    def record(self, result: Result) -> None:
        self.results.append(result)
        progress(result.line())

    def skip(self, what: str, algorithm: str, reason: str) -> None:
        self.skipped.append({"what": what, "algorithm": algorithm, "reason": reason})
        progress(f"  {what} {algorithm}: skipped ({reason})")

    async def backend_sign(
        self, backend: KeyBackend, key_ref: str, algorithm: str, concurrency: int
    ) -> None:
        async def op() -> None:
            await backend.sign(key_ref, MESSAGE)

        for _ in range(2 * concurrency):  # warm-up: every worker thread opens its session
            await op()
        seconds = self.args.seconds
        ops, elapsed, latencies = await measure_async(
            op, concurrency=concurrency, seconds=seconds,
            max_ops=max(1, int(seconds * MAX_SIGNS_PER_SECOND)),
        )  # fmt: skip
        self.record(Result("sign", backend.name, algorithm, concurrency, ops, elapsed, latencies))

    async def issuance(self, ca: CA, algorithm: str, *, lint: bool, concurrency: int) -> None:
        service = IssuanceService(
            ca.sessions, ca.hierarchy, ca.backend, ca_config(algorithm, lint=lint), utc_now
        )
        seconds = self.args.seconds
        warmup = 2 * concurrency
        csrs = make_csrs(warmup + max(concurrency, int(seconds * MAX_ISSUANCES_PER_SECOND)))

        async def op() -> None:
            self._names += 1
            await service.issue_tls_server(
                csrs.popleft(), dns_names=[f"host-{self._names}.bench.example.com"]
            )

        for _ in range(warmup):
            await op()
        ops, elapsed, latencies = await measure_async(
            op, concurrency=concurrency, seconds=seconds, max_ops=len(csrs)
        )
        what = "issue_lint_on" if lint else "issue_lint_off"
        self.record(Result(what, ca.backend.name, algorithm, concurrency, ops, elapsed, latencies))

    async def issuances(self, ca: CA, algorithm: str) -> None:
        for lint in (True, False):
            for concurrency in (1, self.args.issue_concurrency):
                await self.issuance(ca, algorithm, lint=lint, concurrency=concurrency)

    # --- per algorithm -----------------------------------------------------------------------

    async def run_pkcs11(self, token: SoftHsmToken, algorithm: str) -> None:
        backend = Pkcs11KeyBackend(token.backend_config(sessions=self.args.sessions))
        ca: CA | None = None
        try:
            ca = await open_ca(self.workdir / f"pkcs11-{algorithm}.db", backend, algorithm)
            key_ref = ca.hierarchy.intermediate.key_ref
            for concurrency in (1, self.args.concurrency):
                await self.backend_sign(backend, key_ref, algorithm, concurrency)
            await self.issuances(ca, algorithm)
        finally:
            if ca is not None:
                await ca.engine.dispose()
            # Closing logs out (the last session): the raw loop below logs in on its own.
            await backend.close()
        ckaid = bytes.fromhex(key_ref.removeprefix(ID_REF))
        self.raw_python_pkcs11(token, algorithm, ckaid)
        self.raw_pkcs11_tool(token, algorithm, ckaid)

    async def run_software(self, algorithm: str) -> None:
        try:
            backend, self.software_protection = software_backend(self.workdir)
        except (TypeError, ValueError, CAError) as exc:  # a constructor this script cannot call
            self.skip("software backend", algorithm, f"cannot construct: {exc}")
            return
        ca = await open_ca(self.workdir / f"software-{algorithm}.db", backend, algorithm)
        try:
            await self.backend_sign(backend, ca.hierarchy.intermediate.key_ref, algorithm, 1)
            await self.issuances(ca, algorithm)
        finally:
            await ca.engine.dispose()

    # --- the token's raw rate ----------------------------------------------------------------

    def raw_python_pkcs11(self, token: SoftHsmToken, algorithm: str, ckaid: bytes) -> None:
        """One session, one thread, no certyard code: the token's signing rate as python-pkcs11
        sees it. Only while no certyard backend is open (the login is per process)."""
        os.environ["SOFTHSM2_CONF"] = str(token.conf_path)
        lib = pkcs11.lib(os.path.realpath(token.module))  # already initialized by the backend
        session = lib.get_token(token_label=token.token_label).open(user_pin=token.pin)
        try:
            key: Any = session.get_key(ObjectClass.PRIVATE_KEY, id=ckaid)
            if algorithm.startswith("ec-"):
                digest = hashes.SHA384() if algorithm == EC_P384 else hashes.SHA256()
                hasher = hashes.Hash(digest)
                hasher.update(MESSAGE)
                data, mechanism = hasher.finalize(), Mechanism.ECDSA
            else:
                data, mechanism = secrets.token_bytes(32), Mechanism.SHA256_RSA_PKCS

            def op() -> None:
                key.sign(data, mechanism=mechanism)

            for _ in range(3):
                op()
            seconds = self.args.seconds
            ops, elapsed, latencies = measure_sync(
                op, seconds=seconds, max_ops=max(1, int(seconds * MAX_SIGNS_PER_SECOND))
            )
        finally:
            session.close()
        self.record(Result("raw_sign", "python-pkcs11", algorithm, 1, ops, elapsed, latencies))

    def raw_pkcs11_tool(self, token: SoftHsmToken, algorithm: str, ckaid: bytes) -> None:
        """One ``pkcs11-tool --sign`` process per signature (OpenSC)."""
        tool = shutil.which("pkcs11-tool")
        if tool is None:
            self.skip("raw_sign pkcs11-tool", algorithm, "pkcs11-tool not installed (opensc)")
            return
        if algorithm.startswith("ec-"):
            size = 48 if algorithm == EC_P384 else 32
            mechanism = "ECDSA"
        else:
            size, mechanism = 32, "SHA256-RSA-PKCS"
        input_file = self.workdir / "tool-input.bin"
        output_file = self.workdir / "tool-signature.bin"
        input_file.write_bytes(secrets.token_bytes(size))
        # The PIN goes through the environment, not the command line (visible in /proc).
        env = {**os.environ, "SOFTHSM2_CONF": str(token.conf_path), "BENCH_PKCS11_PIN": token.pin}
        command = [
            tool, "--module", token.module, "--token-label", token.token_label,
            "--pin", "env:BENCH_PKCS11_PIN", "--sign", "--mechanism", mechanism,
            "--id", ckaid.hex(), "--input-file", str(input_file),
            "--output-file", str(output_file),
        ]  # fmt: skip

        def op() -> None:
            done = subprocess.run(command, env=env, capture_output=True, timeout=30, check=False)
            if done.returncode != 0:
                raise RuntimeError(done.stderr.decode(errors="replace").strip())

        try:
            op()
            if not output_file.stat().st_size:
                raise RuntimeError("no signature written")
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            self.skip("raw_sign pkcs11-tool", algorithm, f"pkcs11-tool failed: {exc}")
            return
        ops, elapsed, latencies = measure_sync(
            op, seconds=min(self.args.seconds, 2.0), max_ops=MAX_TOOL_RUNS
        )
        note = "one process per signature: process start, module load and login dominate"
        self.record(Result("raw_sign", "pkcs11-tool", algorithm, 1, ops, elapsed, latencies, note))


# --- the run --------------------------------------------------------------------------------


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _command_output(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def machine() -> dict[str, Any]:
    cpu_model = None
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.partition(":")[2].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cryptography": _version("cryptography"),
        "openssl": openssl_backend.openssl_version_text(),
        "python-pkcs11": _version("python-pkcs11"),
        "pkilint": _version("pkilint"),
        "sqlalchemy": _version("SQLAlchemy"),
        "sqlite": sqlite3.sqlite_version,
        "softhsm": _command_output(["softhsm2-util", "--version"]),
        "opensc": _command_output(["dpkg-query", "-W", "-f=${Version}", "opensc"]),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = utc_now()
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="certyard-bench-"))
    bench = Bench(args, workdir)
    try:
        progress(f"ca_signing: work directory {workdir}, {args.seconds:g} s per measurement")
        token = ensure_softhsm_token(workdir / "softhsm", label="certyard-bench")
        for algorithm in args.algorithms:
            progress(f"{algorithm}:")
            await bench.run_pkcs11(token, algorithm)
            await bench.run_software(algorithm)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    return {
        "benchmark": "ca_signing",
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        # Other processes on the machine skew the figures: the 1-minute load before and after.
        "machine": machine() | {"loadavg_1m": load},
        "parameters": {
            "seconds": args.seconds,
            "algorithms": list(args.algorithms),
            "concurrency": args.concurrency,
            "issue_concurrency": args.issue_concurrency,
            "pkcs11_sessions": args.sessions,
            "message_bytes": len(MESSAGE),
            "database": "SQLite (WAL) in a temporary directory",
            "software_key_protection": bench.software_protection,
        },
        "results": [result.as_json() for result in bench.results],
        "skipped": bench.skipped,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~10 s smoke run")
    parser.add_argument(
        "--seconds", type=float, help=f"time per measurement (default {DEFAULT_SECONDS})"
    )
    parser.add_argument(
        "--algorithms", nargs="+", choices=KEY_ALGORITHMS, metavar="ALG",
        help=f"CA key algorithms (default {' '.join(DEFAULT_ALGORITHMS)}; "
        f"choices {' '.join(KEY_ALGORITHMS)})",
    )  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent sign callers")
    parser.add_argument(
        "--issue-concurrency", type=int, default=4, help="concurrent issuance callers"
    )
    parser.add_argument("--sessions", type=int, default=4, help="PKCS#11 backend sessions")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = QUICK_SECONDS if args.quick else DEFAULT_SECONDS
    if args.algorithms is None:
        args.algorithms = QUICK_ALGORITHMS if args.quick else DEFAULT_ALGORITHMS
    if not 0 < args.seconds <= 60:
        parser.error("--seconds must be in (0, 60]")
    if min(args.concurrency, args.issue_concurrency, args.sessions) < 1:
        parser.error("concurrency and sessions must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # certyard logs each issuance at info level, and structlog prints to stdout by default:
    # keep stdout for the JSON, and only warnings (to stderr).
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    report = asyncio.run(run(args))
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
