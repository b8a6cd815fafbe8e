"""EST enrollment benchmark: simpleenroll per second against ``certyard serve`` (RFC 7030 §4.2.1).

One enrollment is one POST /.well-known/est/simpleenroll of a fresh P-256 PKCS#10 request
(base64 of DER, RFC 8951) over a *new* TLS connection (a device enrolls once; connection reuse
would hide the handshake), answered with the certificate in a certs-only CMS. The CSRs are made
before the clock starts. Two ways of authenticating, each at concurrency 1, 8 and 32:

* ``mtls``: a TLS client certificate certyard issued (RFC 7030 §3.3.2), looked up per request;
* ``basic``: HTTP Basic, checked against the scrypt hash (N=2^14, r=8, p=1) per request.

The target is one ``certyard serve`` process on SQLite with its CA keys in SoftHSM2 (the
default ``ca.backend = "pkcs11"``; the token is made in the temporary data dir), pkilint on
(the default). The client runs in this process (aiohttp), so it shares the machine's cores
with the server: the figures are for one small box, not a server's ceiling.

Peer: the issue wants a figure no EST server publishes. Cisco libest, the reference server,
is not packaged in Debian (``apt-cache search libest`` finds nothing of it) nor on PyPI (the
``libest`` name there is an unrelated course-submission client), and this workplace can only
install from those registries; so certyard is measured alone and the JSON says so.

    .venv/bin/python benchmarks/est_enroll.py            # full run
    .venv/bin/python benchmarks/est_enroll.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import aiohttp  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs7  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

USER, PASSWORD = "bench-device", "bench-password-123"
HTTP_TIMEOUT = 60


def log(message: str) -> None:
    print(f"est_enroll: {message}", file=sys.stderr, flush=True)


def make_csr(cn: str) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return base64.encodebytes(csr.public_bytes(serialization.Encoding.DER)), key


@dataclass
class Cell:
    auth: str
    concurrency: int
    enrollments: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_error: str | None = None

    def as_json(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def pct(q: float) -> float | None:
            if not ordered:
                return None
            position = (len(ordered) - 1) * q
            low = math.floor(position)
            high = min(low + 1, len(ordered) - 1)
            value = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
            return round(1000 * value, 1)

        return {
            "target": "certyard",
            "auth": self.auth,
            "concurrency": self.concurrency,
            "enrollments": self.enrollments,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "per_second": round(self.enrollments / self.seconds, 2) if self.seconds else None,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "first_error": self.first_error,
        }


async def run_cell(
    url: str,
    ssl_context: ssl.SSLContext,
    headers: dict[str, str],
    auth: str,
    concurrency: int,
    count: int,
    bound_seconds: float,
) -> Cell:
    cell = Cell(auth, concurrency)
    bodies = [make_csr(f"bench-{auth}-{concurrency}-{n}")[0] for n in range(count)]
    # force_close: a new TCP + TLS connection for every enrollment.
    connector = aiohttp.TCPConnector(ssl=ssl_context, limit=concurrency, force_close=True)
    client_timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:

        async def worker() -> None:
            while bodies and time.perf_counter() < deadline:
                body = bodies.pop()
                began = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        answer = await response.read()
                        if response.status != 200:
                            raise RuntimeError(f"HTTP {response.status}: {answer[:200]!r}")
                        pkcs7.load_der_pkcs7_certificates(base64.b64decode(answer))
                except Exception as exc:
                    cell.errors += 1
                    cell.first_error = cell.first_error or f"{type(exc).__name__}: {exc}"[:300]
                    continue
                cell.latencies.append(time.perf_counter() - began)
                cell.enrollments += 1

        started = time.perf_counter()
        deadline = started + bound_seconds
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cell.seconds = time.perf_counter() - started
    return cell


def certyard_cli(env: dict[str, str], *argv: str, stdin: str | None = None) -> None:
    from tests.support.server import certyard_command

    subprocess.run(
        [*certyard_command(), *argv], input=stdin, env=env, check=True, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


async def client_certificate(url: str, root: ssl.SSLContext, work: Path) -> tuple[Path, Path]:
    """One enrollment with Basic: the certificate the mtls cells authenticate with."""
    body, key = make_csr("bench-mtls-client")
    headers = {"Content-Type": "application/pkcs10"}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url, data=body, headers=headers, ssl=root, auth=aiohttp.BasicAuth(USER, PASSWORD)
        ) as response:
            answer = await response.read()
            if response.status != 200:
                raise RuntimeError(f"enrolling the mtls client: HTTP {response.status} {answer!r}")
    (cert,) = pkcs7.load_der_pkcs7_certificates(base64.b64decode(answer))
    cert_path, key_path = work / "client.pem", work / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def versions() -> dict[str, Any]:
    def deb(pkg: str) -> str | None:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True
        )
        return out.stdout or None

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "aiohttp": importlib.metadata.version("aiohttp"),
        "cryptography": importlib.metadata.version("cryptography"),
        "softhsm2": deb("softhsm2"),
        "openssl": ssl.OPENSSL_VERSION,
    }


async def bench(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from tests.support.server import CertyardServer

    labels = {"default": {"profile": "device", "auth": "either"}}
    extra = {"CERTYARD__EST__LABELS": json.dumps(labels), "CERTYARD__LOG__LEVEL": "warning"}
    cells: list[dict[str, Any]] = []
    with CertyardServer(work / "certyard", extra_env=extra) as server:
        env = server.environment()
        await asyncio.to_thread(
            certyard_cli, env, "est", "user", "add", USER, stdin=PASSWORD + "\n"
        )
        url = f"{server.base_url}/.well-known/est/simpleenroll"
        root = ssl.create_default_context(cafile=str(server.root_pem_path))
        cert, key = await client_certificate(url, root, work)
        mtls = ssl.create_default_context(cafile=str(server.root_pem_path))
        mtls.load_cert_chain(cert, key)
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        modes = {
            "mtls": (mtls, {"Content-Type": "application/pkcs10"}),
            "basic": (root, {"Content-Type": "application/pkcs10", "Authorization": basic}),
        }
        for auth in args.auth:
            context, headers = modes[auth]
            for concurrency in args.concurrency:
                count = args.count_1 if concurrency == 1 else args.count
                log(f"{auth} c={concurrency}: up to {count} enrollments")
                cell = await run_cell(
                    url, context, headers, auth, concurrency, count, args.cell_seconds
                )
                cells.append(cell.as_json())
                log(json.dumps(cells[-1]))
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few enrollments")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--auth", nargs="+", default=["mtls", "basic"], choices=["mtls", "basic"])
    parser.add_argument("--count-1", type=int, default=60, help="enrollments at concurrency 1")
    parser.add_argument("--count", type=int, default=200, help="enrollments at concurrency > 1")
    parser.add_argument("--cell-seconds", type=float, default=40.0, help="time bound per cell")
    args = parser.parse_args()
    if args.quick:
        args.count_1, args.count, args.cell_seconds = 5, 16, 15.0
    started = dt.datetime.now(dt.UTC)
    work = Path(tempfile.mkdtemp(prefix="bench-est-"))
    try:
        cells = asyncio.run(bench(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "est_enroll",
                "started": started.isoformat(timespec="seconds"),
                "seconds": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
                "quick": args.quick,
                "target": "certyard serve, SQLite, CA keys in SoftHSM2, pkilint on",
                "connection": "new TLS connection per enrollment",
                "peer": {
                    "name": "Cisco libest",
                    "measured": False,
                    "why": "not packaged in Debian nor on PyPI; only those registries are "
                    "reachable here",
                },
                "machine": versions(),
                "cells": cells,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
