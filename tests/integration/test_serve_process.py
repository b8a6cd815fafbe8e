"""The ``certyard serve`` process: root certificate, logged URLs, clean stop with requests in
flight (SIGTERM lets the handler that is reading a body finish and answer)."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.server import CertyardServer, certyard_command


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CertyardServer]:
    srv = CertyardServer(tmp_path / "data")
    srv.start()
    yield srv
    srv.stop()


def test_root_written_printed_and_trusted(server: CertyardServer, tmp_path: Path) -> None:
    root = x509.load_pem_x509_certificate(server.root_pem_path.read_bytes())
    env = server.environment()
    printed = subprocess.run(
        [*certyard_command(), "ca", "root"], env=env, capture_output=True, timeout=60, check=True
    ).stdout
    assert x509.load_pem_x509_certificate(printed) == root
    # The listener's certificate chains to that root and names server.hostnames.
    ctx = ssl.create_default_context(cafile=str(server.root_pem_path))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    # The listen address is on it too: https://127.0.0.1:PORT/acme/directory verifies.
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    curl = subprocess.run(
        [
            "curl",
            "-sf",
            "--cacert",
            str(server.root_pem_path),
            f"https://127.0.0.1:{server.port}/acme/directory",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert curl.returncode == 0 and '"newNonce"' in curl.stdout
    # It logs the URLs it serves.
    logged = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    started = next(e for e in logged if e.get("event") == "certyard_started")
    assert started["acme_directory"] == server.directory_url


def test_sigterm_lets_request_in_flight_finish(server: CertyardServer) -> None:
    ctx = ssl.create_default_context(cafile=str(server.root_pem_path))
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    body = b'{"protected": "", "payload": "", "signature": ""}'
    head = (
        f"POST /acme/new-account HTTP/1.1\r\nHost: localhost:{server.port}\r\n"
        f"Content-Type: application/jose+json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    tls.sendall(head + body[:10])  # the handler is now waiting for the rest of the body
    time.sleep(0.3)  # let the request reach the handler before the signal (no polling handle)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    tls.sendall(body[10:])
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = tls.recv(65536)
        if not chunk:
            break
        response += chunk
    tls.close()
    status_line = response.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 400"), response[:300]
    assert b"application/problem+json" in response
    assert server.process.wait(timeout=30) == 0
    # New connections are refused once it is stopping or stopped.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
