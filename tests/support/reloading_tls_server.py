"""A TLS server that re-reads its certificate and key from files on SIGHUP, like nginx or
haproxy do: the "service" a deployment target reloads.

Run as a process (the deploy tests start it; its reload command is ``kill -HUP <pid>``):

    python -m tests.support.reloading_tls_server --listen 127.0.0.1:8443 \
        --cert fullchain.pem --key key.pem --pid-file server.pid

A reload that cannot load the files keeps serving what it had (as nginx does) and says so on
stderr. Each connection gets the context current when it was accepted, so a scan after the
reload sees the new certificate. The answer is a fixed HTTP/1.1 200.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n"


class ReloadingServer:
    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self.context = self._load()

    def _load(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def reload(self) -> None:
        try:
            self.context = self._load()
        except (OSError, ssl.SSLError) as exc:
            print(f"reload failed, keeping the old certificate: {exc}", file=sys.stderr)
            return
        print("reloaded", file=sys.stderr, flush=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                # Server side: the stream was accepted by start_server (Python 3.11+).
                await writer.start_tls(self.context)
                with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                    await reader.readuntil(b"\r\n\r\n")
                    writer.write(RESPONSE)
                    await writer.drain()
        except (OSError, ssl.SSLError, TimeoutError, EOFError):
            pass  # scanners hang up right after the handshake
        finally:
            writer.transport.abort()


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--pid-file", type=Path, required=True)
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    server = ReloadingServer(args.cert, args.key)
    listener = await asyncio.start_server(server.handle, host, int(port))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Written once listening: the test waits for this file.
    tmp = args.pid_file.with_name(args.pid_file.name + ".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(args.pid_file)
    async with listener:
        await stop.wait()


class ReloadingTlsProcess:
    """The test side: start the server as a process, wait until it listens, stop it."""

    def __init__(self, cert: Path, key: Path, port: int, pid_file: Path, log: Path) -> None:
        self.cert, self.key, self.port, self.pid_file, self.log = cert, key, port, pid_file, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.pid_file.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "tests.support.reloading_tls_server",
                    "--listen", f"127.0.0.1:{self.port}", "--cert", str(self.cert),
                    "--key", str(self.key), "--pid-file", str(self.pid_file),
                ],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.pid_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"TLS server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


if __name__ == "__main__":
    asyncio.run(main())


def install_near_expiry_certificate(srv: Path, name: str) -> str:
    """Write the certificate in service before certyard manages it into ``srv`` (cert.pem,
    fullchain.pem, key.pem): self-signed for ``name``, 88 of its 90 days gone. Returns its
    SHA-256."""
    import datetime as dt
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=88))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (srv / "cert.pem").write_bytes(pem)
    (srv / "fullchain.pem").write_bytes(pem)
    (srv / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(srv / "key.pem", 0o600)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def served_sha256(port: int, sni: str) -> str:
    """What the endpoint serves for ``sni``, seen by a plain TLS client (independent of
    certyard): the SHA-256 of the leaf's DER."""
    import hashlib
    import socket

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()
