"""OCSP stapling (issue 5 §3, RFC 6066 §8): an ``openssl s_server`` that staples a response is
reported with the response's status; one that does not is reported as not stapling."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from scanner.runner import ScanOptions
from scanner.scan import ScanRequest, scan
from tests.support.server import free_port
from tests.support.tools import require_tool
from tests.unit.test_scan_findings import Pki, ec_key

NET = "127.98.0."


def _pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[list[str], Path, x509.Certificate]]:
    openssl = require_tool("openssl")
    now = dt.datetime.now(dt.UTC)
    pki = Pki(now)
    key = ec_key()
    leaf = pki.leaf("stapled.test", key)
    key_path = tmp_path / "leaf.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf, issuer=pki.intermediate, algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.GOOD, this_update=now,
            next_update=now + dt.timedelta(days=3), revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, pki.intermediate)
        .sign(pki.int_key, hashes.SHA256())
    )  # fmt: skip
    status_file = tmp_path / "ocsp.der"
    status_file.write_bytes(response.public_bytes(serialization.Encoding.DER))
    leaf_pem = _pem(tmp_path / "leaf.pem", leaf)
    chain_pem = _pem(tmp_path / "chain.pem", pki.intermediate)
    trust = _pem(tmp_path / "trust.pem", pki.root)
    procs, targets = [], []
    for n, extra in ((1, ["-status_file", str(status_file)]), (2, [])):
        port = free_port()
        procs.append(
            subprocess.Popen(
                [
                    openssl,
                    "s_server",
                    "-quiet",
                    "-accept",
                    f"{NET}{n}:{port}",
                    "-cert",
                    str(leaf_pem),
                    "-key",
                    str(key_path),
                    "-cert_chain",
                    str(chain_pem),
                    *extra,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        targets.append(f"stapled.test@{NET}{n}:{port}")
    try:
        yield targets, trust, leaf
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


async def _wait_listening(targets: list[str]) -> None:
    loop = asyncio.get_running_loop()
    for target in targets:
        host, port = target.split("@")[1].rsplit(":", 1)
        deadline = loop.time() + 20
        while True:
            try:
                _, writer = await asyncio.open_connection(host, int(port))
                writer.close()
                break
            except OSError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)


async def test_stapled_response_is_reported(
    servers: tuple[list[str], Path, x509.Certificate],
) -> None:
    targets, trust, leaf = servers
    await _wait_listening(targets)
    request = ScanRequest(
        targets=targets,
        trust=[trust],
        system_trust=None,
        options=ScanOptions(timeout=3.0, retries=0, legacy_probe=False),
    )
    outcome = await scan(request)
    stapling = {
        e["ip"]: e["ocsp_stapling"] for e in outcome.document["endpoints"] if e["sni"] is None
    }
    good = stapling[f"{NET}1"]
    assert good is not None and good["stapled"] is True
    assert good["response_status"] == "successful" and good["cert_status"] == "good"
    assert good["serial"] == format(leaf.serial_number, "x") and good["next_update"]
    assert stapling[f"{NET}2"] == {"stapled": False}
