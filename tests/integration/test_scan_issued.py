"""The scanner meets certificates certyard issued: the inventory links them to their issuance
records, and one that certyard revoked is reported ``revoked`` (issue 5 §5, §6); a later scan
of the bare addresses still tries the SNI names the inventory knows (issue 5 §3)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from scanner.findings import sha256_hex
from scanner.runner import ScanOptions
from scanner.scan import ScanRequest, scan
from storage.models import ScannedCertificate
from tests.integration.test_ca import _open_ca

NET = "127.94.0."


async def _serve(
    tmp: Path, ip: str, key: ec.EllipticCurvePrivateKey, chain_pem: str
) -> tuple[asyncio.Server, int]:
    key_path, cert_path = tmp / f"{ip}.key", tmp / f"{ip}.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_text(chain_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)

    async def handle(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server = await asyncio.start_server(handle, ip, 0, ssl=ctx)
    return server, server.sockets[0].getsockname()[1]


async def test_issued_certificates_are_linked_and_revocation_reported(
    db_url: str, tmp_path: Path
) -> None:
    ca = await _open_ca(db_url)
    servers: list[asyncio.Server] = []
    try:
        issued = {}
        targets = []
        for n, name in ((1, "kept.fleet.test"), (2, "revoked.fleet.test")):
            key = ec.generate_private_key(ec.SECP256R1())
            csr = (
                x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .sign(key, hashes.SHA256())
            )
            cert = await ca.service.issue(
                csr, profile="tls-server", dns_names=[name], requester="cli"
            )
            issued[name] = cert
            server, port = await _serve(tmp_path, f"{NET}{n}", key, cert.chain_pem)
            servers.append(server)
            targets.append(f"{name}@{NET}{n}:{port}")
        await ca.service.revoke(issued["revoked.fleet.test"].id, 1)  # keyCompromise
        root = tmp_path / "root.pem"
        root.write_text(ca.service.root_pem())
        request = ScanRequest(
            targets=targets,
            trust=[root],
            system_trust=None,
            options=ScanOptions(timeout=2.0, retries=0, legacy_probe=False),
        )
        outcome = await scan(request, sessions=ca.sessions)
        # Every handshake with the second address (with and without SNI) serves the revoked
        # leaf; none with the first does.
        revoked = {
            (e["ip"], e["sni"])
            for e in outcome.document["endpoints"]
            for f in e["findings"]
            if f["code"] == "revoked"
        }
        assert revoked == {(f"{NET}2", None), (f"{NET}2", "revoked.fleet.test")}
        # A later scan of the bare addresses still tries the names the inventory knows there.
        bare = ScanRequest(
            targets=[t.split("@", 1)[1] for t in targets],
            trust=[root],
            system_trust=None,
            options=ScanOptions(timeout=2.0, retries=0, legacy_probe=False),
        )
        again = await scan(bare, sessions=ca.sessions)
        assert {(e["ip"], e["sni"]) for e in again.document["endpoints"]} == {
            (f"{NET}1", None), (f"{NET}1", "kept.fleet.test"),
            (f"{NET}2", None), (f"{NET}2", "revoked.fleet.test"),
        }  # fmt: skip
        async with ca.sessions() as session:
            links = {
                row.sha256: row.issued_certificate_id
                for row in await session.scalars(select(ScannedCertificate))
            }
        for cert in issued.values():
            leaf_der = x509.load_pem_x509_certificates(cert.chain_pem.encode())[0].public_bytes(
                serialization.Encoding.DER
            )
            assert links[sha256_hex(leaf_der)] == cert.id
    finally:
        for server in servers:
            server.close()
        await ca.engine.dispose()
