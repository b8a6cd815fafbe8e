"""The loopback fleet: every kind of endpoint issue 5 names, scanned for real, reported exactly.

Each "host" is its own 127.93.0.N address (all of 127.0.0.0/8 is loopback on Linux) with an
ephemeral port; servers are Python ``ssl`` servers on this test's event loop. The scan goes
through ``scanner.scan.scan`` into a real database (SQLite and PostgreSQL), then once more
through the ``certyard scan`` command line for the SARIF report.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import func, select

from scanner.findings import sha256_hex
from scanner.runner import ScanOptions
from scanner.scan import ScanRequest, scan
from storage.engine import create_engine, migrate, session_factory
from storage.models import ScanFinding, ScannedCertificate, ScanObservation, ScanRun
from tests.support.server import certyard_command
from tests.support.tools import require_tool
from tests.unit.test_scan_findings import Key, Pki, ec_key, make_cert, rsa_key

NET = "127.93.0."
TIMEOUT = 1.5
Row = tuple[str, str | None]  # (status, sorted finding codes joined by ",")


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def server_context(
    tmp: Path, label: str, chain: list[x509.Certificate], key: Key
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("ALL:@SECLEVEL=0")  # RSA-1024 and SHA-1 certificates must load
    (tmp / f"{label}.pem").write_bytes(pem(*chain))
    (tmp / f"{label}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx.load_cert_chain(tmp / f"{label}.pem", tmp / f"{label}.key")
    return ctx


def sha1_leaf(tmp: Path, pki: Pki, host: str) -> tuple[x509.Certificate, Key]:
    """cryptography refuses to sign with SHA-1: openssl x509 -req -sha1 does it."""
    openssl = require_tool("openssl")
    key = ec_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, host)]))
        .sign(key, hashes.SHA256())
    )
    (tmp / "sha1.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    (tmp / "int.pem").write_bytes(pem(pki.intermediate))
    (tmp / "int.key").write_bytes(
        pki.int_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp / "sha1.ext").write_text(
        f"subjectAltName=DNS:{host}\nbasicConstraints=critical,CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n"
    )
    subprocess.run(
        [
            openssl,
            "x509",
            "-req",
            "-sha1",
            "-in",
            tmp / "sha1.csr",
            "-CA",
            tmp / "int.pem",
            "-CAkey",
            tmp / "int.key",
            "-CAcreateserial",
            "-days",
            "90",
            "-extfile",
            tmp / "sha1.ext",
            "-out",
            tmp / "sha1.pem",
        ],
        check=True,
        capture_output=True,
    )
    return x509.load_pem_x509_certificate((tmp / "sha1.pem").read_bytes()), key


@dataclass
class Fleet:
    targets: list[str] = field(default_factory=list)
    expected: dict[tuple[str, int, str | None], Row] = field(default_factory=dict)
    leaves: dict[tuple[str, int, str | None], str] = field(default_factory=dict)
    servers: list[asyncio.Server] = field(default_factory=list)
    trust: Path | None = None
    ssh_servers: list[asyncssh.SSHAcceptor] = field(default_factory=list)
    ssh_keys: dict[tuple[str, int], set[str]] = field(default_factory=dict)

    def close(self) -> None:
        for server in self.servers:
            server.close()
        for acceptor in self.ssh_servers:
            acceptor.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _start(fleet: Fleet, ip: str, handler: Handler | None, ctx: ssl.SSLContext | None) -> int:
    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()  # hold the connection, say nothing
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handler or idle, ip, 0, ssl=ctx)
    fleet.servers.append(server)
    return int(server.sockets[0].getsockname()[1])


async def _start_ssh(fleet: Fleet, ip: str, host_keys: list[Any]) -> int:
    """An SSH server (asyncssh) that completes key exchange and lets nobody in."""
    acceptor = await asyncssh.listen(ip, 0, server_host_keys=host_keys)
    fleet.ssh_servers.append(acceptor)
    return int(acceptor.sockets[0].getsockname()[1])


LDAP_SUCCESS = b"\x30\x0c\x02\x01\x01\x78\x07\x0a\x01\x00\x04\x00\x04\x00"


async def _server_dialogue(proto: str, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """The server half of each STARTTLS preamble, as small as the client lets it be."""
    if proto == "imap":
        w.write(b"* OK IMAP4rev1 fleet ready\r\n")
        tag = (await r.readline()).split(b" ", 1)[0]
        w.write(tag + b" OK Begin TLS negotiation now\r\n")
    elif proto == "smtp":
        w.write(b"220 smtp.fleet.test ESMTP\r\n")
        await r.readline()  # EHLO
        w.write(b"250-smtp.fleet.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
        await r.readline()  # STARTTLS
        w.write(b"220 2.0.0 Ready to start TLS\r\n")
    elif proto == "pop3":
        w.write(b"+OK POP3 fleet ready\r\n")
        assert (await r.readline()).strip() == b"STLS"
        w.write(b"+OK Begin TLS negotiation\r\n")
    elif proto == "ftp":
        w.write(b"220 FTP fleet ready\r\n")
        assert (await r.readline()).strip() == b"AUTH TLS"
        w.write(b"234 AUTH TLS successful\r\n")
    elif proto == "postgres":
        assert await r.readexactly(8) == bytes.fromhex("0000000804d2162f")
        w.write(b"S")
    elif proto == "ldap":
        assert (await r.readexactly(31)).endswith(b"1.3.6.1.4.1.1466.20037")
        w.write(LDAP_SUCCESS)
    elif proto == "xmpp":
        # RFC 6120 §5.4.2: stream header, features offering STARTTLS, <proceed/>.
        opening = await r.readuntil(b"xmlns:stream='http://etherx.jabber.org/streams'>")
        assert b"to='xmpp.fleet.test'" in opening
        w.write(
            b"<?xml version='1.0'?><stream:stream from='xmpp.fleet.test' id='f1' version='1.0' "
            b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
            b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
            b"</starttls></stream:features>"
        )
        assert (await r.readuntil(b"/>")).startswith(b"<starttls")
        w.write(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    await w.drain()


def _starttls_handler(ctx: ssl.SSLContext, proto: str) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _server_dialogue(proto, reader, writer)
            await writer.start_tls(ctx)
            await reader.read()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return handle


async def build_fleet(tmp: Path) -> Fleet:
    pki, fleet = Pki(dt.datetime.now(dt.UTC)), Fleet()
    now = pki.now
    trust = tmp / "trust.pem"
    trust.write_bytes(pem(pki.root, pki.intermediate))
    fleet.trust = trust
    n = 0

    async def tls_host(
        host: str, chain: list[x509.Certificate], key: Key, codes: str, *, plain: str = ""
    ) -> None:
        nonlocal n
        n += 1
        ip = f"{NET}{n}"
        port = await _start(fleet, ip, None, server_context(tmp, host, chain, key))
        fleet.targets.append(f"{host}@{ip}:{port}")
        fleet.expected[(ip, port, None)] = ("ok", plain)
        fleet.expected[(ip, port, host)] = ("ok", codes)
        leaf = sha256_hex(chain[0].public_bytes(serialization.Encoding.DER))
        fleet.leaves[(ip, port, None)] = fleet.leaves[(ip, port, host)] = leaf

    inter = pki.intermediate
    key = ec_key()
    await tls_host("healthy.fleet.test", [pki.leaf("healthy.fleet.test", key), inter], key, "")
    for host, kw, code in [
        ("expired.fleet.test", {"not_after": now - dt.timedelta(days=1)}, "expired"),
        ("future.fleet.test", {"not_before": now + dt.timedelta(days=1)}, "not_yet_valid"),
        ("soon.fleet.test", {"not_after": now + dt.timedelta(days=10)}, "expiring_soon"),
    ]:
        key = ec_key()
        await tls_host(host, [pki.leaf(host, key, **kw), inter], key, code, plain=code)
    key = ec_key()
    self_signed = make_cert("self.fleet.test", key, names=["self.fleet.test"], now=now)
    await tls_host("self.fleet.test", [self_signed], key, "self_signed", plain="self_signed")
    key = ec_key()
    unknown = make_cert(
        "unknown.fleet.test",
        key,
        (pki.other_intermediate, pki.other_int_key),
        names=["unknown.fleet.test"],
        now=now,
    )
    await tls_host(
        "unknown.fleet.test",
        [unknown, pki.other_intermediate],
        key,
        "untrusted_chain",
        plain="untrusted_chain",
    )
    key = ec_key()
    await tls_host(
        "partial.fleet.test",
        [pki.leaf("partial.fleet.test", key)],
        key,
        "incomplete_chain",
        plain="incomplete_chain",
    )
    key = ec_key()
    await tls_host(
        "wrong.fleet.test", [pki.leaf("other.fleet.test", key), inter], key, "hostname_mismatch"
    )
    rsa1024 = rsa_key(1024)
    await tls_host(
        "rsa1024.fleet.test",
        [pki.leaf("rsa1024.fleet.test", rsa1024), inter],
        rsa1024,
        "weak_key",
        plain="weak_key",
    )
    # RFC 8996: a server that still negotiates TLS 1.1 (its no-SNI row carries the finding).
    key = ec_key()
    n += 1
    legacy_ip, host = f"{NET}{n}", "legacy.fleet.test"
    legacy_ctx = server_context(tmp, host, [pki.leaf(host, key), inter], key)
    legacy_ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    port = await _start(fleet, legacy_ip, None, legacy_ctx)
    fleet.targets.append(f"{host}@{legacy_ip}:{port}")
    fleet.expected[(legacy_ip, port, None)] = ("ok", "deprecated_tls_version")
    fleet.expected[(legacy_ip, port, host)] = ("ok", "")
    sha1, key = sha1_leaf(tmp, pki, "sha1.fleet.test")
    await tls_host("sha1.fleet.test", [sha1, inter], key, "sha1_signature", plain="sha1_signature")

    # Two names on one ip:port with different certificates (SNI callback, RFC 6066 §3).
    n += 1
    ip = f"{NET}{n}"
    key_a, key_b = ec_key(), ec_key()
    cert_a, cert_b = pki.leaf("a.multi.test", key_a), pki.leaf("b.multi.test", key_b)
    ctx_a = server_context(tmp, "a.multi", [cert_a, inter], key_a)
    ctx_b = server_context(tmp, "b.multi", [cert_b, inter], key_b)

    def pick(sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if server_name == "b.multi.test":
            sock.context = ctx_b

    ctx_a.sni_callback = pick
    port = await _start(fleet, ip, None, ctx_a)
    fleet.targets += [f"a.multi.test@{ip}:{port}", f"b.multi.test@{ip}:{port}"]
    for sni, cert in ((None, cert_a), ("a.multi.test", cert_a), ("b.multi.test", cert_b)):
        fleet.expected[(ip, port, sni)] = ("ok", "")
        fleet.leaves[(ip, port, sni)] = sha256_hex(cert.public_bytes(serialization.Encoding.DER))

    # STARTTLS (SMTP RFC 3207, IMAP RFC 3501 §6.2.1, POP3 RFC 2595, FTP RFC 4217, LDAP RFC 4511,
    # PostgreSQL SSLRequest, XMPP RFC 6120 §5.4), forced by the target's scheme.
    for proto in ("smtp", "imap", "pop3", "ftp", "ldap", "postgres", "xmpp"):
        n += 1
        ip, host = f"{NET}{n}", f"{proto}.fleet.test"
        key = ec_key()
        ctx = server_context(tmp, host, [pki.leaf(host, key), inter], key)
        port = await _start(fleet, ip, _starttls_handler(ctx, proto), None)
        fleet.targets.append(f"{proto}://{host}@{ip}:{port}")
        fleet.expected[(ip, port, None)] = fleet.expected[(ip, port, host)] = ("ok", "")

    # SSH (issue 5 §4): one server with an Ed25519 key and a weak RSA-1024 key, one whose
    # Ed25519 host key comes with an expired OpenSSH host certificate.
    n += 1
    ip = f"{NET}{n}"
    ed_key = asyncssh.generate_private_key("ssh-ed25519")
    weak_rsa = asyncssh.generate_private_key("ssh-rsa", key_size=1024)
    port = await _start_ssh(fleet, ip, [ed_key, weak_rsa])
    fleet.targets.append(f"ssh://{ip}:{port}")
    fleet.expected[(ip, port, None)] = ("ok", "ssh_weak_host_key")
    fleet.ssh_keys[(ip, port)] = {
        hashlib.sha256(k.public_data).hexdigest() for k in (ed_key, weak_rsa)
    }
    n += 1
    ip = f"{NET}{n}"
    host_ca = asyncssh.generate_private_key("ssh-ed25519")
    cert_key = asyncssh.generate_private_key("ssh-ed25519")
    now = dt.datetime.now(dt.UTC).timestamp()
    host_cert = host_ca.generate_host_certificate(
        cert_key, "fleet-ssh-2", principals=["ssh2.fleet.test"],
        valid_after=now - 7200, valid_before=now - 3600,
    )  # fmt: skip
    port = await _start_ssh(fleet, ip, [(cert_key, host_cert)])
    fleet.targets.append(f"ssh://{ip}:{port}")
    fleet.expected[(ip, port, None)] = ("ok", "ssh_cert_expired")
    fleet.ssh_keys[(ip, port)] = {hashlib.sha256(cert_key.public_data).hexdigest()}

    # A closed port, and a port that accepts TCP and never speaks TLS.
    n += 1
    ip = f"{NET}{n}"
    with socket.socket() as sock:
        sock.bind((ip, 0))
        closed = sock.getsockname()[1]
    fleet.targets.append(f"{ip}:{closed}")
    fleet.expected[(ip, closed, None)] = ("refused", None)
    n += 1
    ip = f"{NET}{n}"
    port = await _start(fleet, ip, None, None)
    fleet.targets.append(f"{ip}:{port}")
    fleet.expected[(ip, port, None)] = ("no_tls", None)
    return fleet


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    built = await build_fleet(tmp_path)
    try:
        yield built
    finally:
        built.close()


def observed(endpoints: list[dict[str, Any]]) -> dict[tuple[str, int, str | None], Row]:
    out: dict[tuple[str, int, str | None], Row] = {}
    for e in endpoints:
        codes = ",".join(sorted(f["code"] for f in e["findings"]))
        out[(e["ip"], e["port"], e["sni"])] = (e["status"], codes if e["status"] == "ok" else None)
    return out


async def test_fleet_is_reported_exactly(fleet: Fleet, db_url: str) -> None:
    engine = create_engine(db_url)
    await migrate(engine)
    sessions = session_factory(engine)
    assert fleet.trust is not None
    request = ScanRequest(
        targets=fleet.targets,
        trust=[fleet.trust],
        system_trust=None,
        options=ScanOptions(timeout=TIMEOUT, retries=0, concurrency=16),
        seed=5,
    )
    try:
        outcome = await scan(request, sessions=sessions)
        endpoints = outcome.document["endpoints"]
        assert observed(endpoints) == fleet.expected
        for e in endpoints:
            key = (e["ip"], e["port"], e["sni"])
            if key in fleet.leaves:
                assert e["certificate"]["sha256"] == fleet.leaves[key], key
            if e["status"] == "ok" and e["protocol"] == "ssh":
                # host_key.sha256: SHA-256 of the key blob, one per key the server holds.
                assert {k["sha256"] for k in e["host_keys"]} == fleet.ssh_keys[(e["ip"], e["port"])]
                assert e["host_key"] == e["host_keys"][0] and e["certificate"] is None
                certs = [k["certificate"] for k in e["host_keys"] if k["certificate"]]
                if e["findings"] and e["findings"][0]["code"] == "ssh_cert_expired":
                    assert certs[0]["principals"] == ["ssh2.fleet.test"]
            elif e["status"] == "ok":
                assert e["tls_version"].startswith("TLS") and e["cipher"]
                assert e["chain"][0] == e["certificate"]
                assert all(f["severity"] in ("high", "medium") for f in e["findings"])
            else:
                assert e["certificate"] is None and e["error"]
        for proto in ("smtp", "imap", "pop3", "ftp", "ldap", "postgres", "xmpp"):
            rows = [e for e in endpoints if e["protocol"] == proto]
            assert len(rows) == 2 and all(e["certificate"] for e in rows), proto

        async with sessions() as session:
            run = await session.get(ScanRun, outcome.scan_id)
            assert run is not None and run.status == "done" and run.finished_at
            assert await session.scalar(select(func.count()).select_from(ScanObservation)) == len(
                endpoints
            )
            assert await session.scalar(select(func.count()).select_from(ScanFinding)) == sum(
                len(e["findings"]) for e in endpoints
            )
            stored = set((await session.scalars(select(ScannedCertificate.sha256))).all())
            assert set(fleet.leaves.values()) <= stored
    finally:
        await engine.dispose()


async def test_cli_writes_sarif(fleet: Fleet, tmp_path: Path) -> None:
    assert fleet.trust is not None
    out = tmp_path / "report.sarif"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTYARD__")}
    env["CERTYARD__SERVER__DATA_DIR"] = str(tmp_path / "data")
    proc = await asyncio.create_subprocess_exec(
        *certyard_command(),
        "scan",
        *fleet.targets,
        "--trust",
        str(fleet.trust),
        "--format",
        "sarif",
        "--out",
        str(out),
        "--timeout",
        str(TIMEOUT),
        "--retries",
        "0",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    assert "finding weak_key" in stdout.decode()
    sarif = json.loads(out.read_text())
    # SARIF 2.1.0 required members (sarif-v2.1.0-os §3.13, §3.14, §3.18, §3.19, §3.27, §3.49).
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    (run,) = sarif["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"]
    rule_ids = [r["id"] for r in driver["rules"]]
    assert len(set(rule_ids)) == len(rule_ids)
    expected_codes = sorted(
        code
        for status, codes in fleet.expected.values()
        if status == "ok" and codes
        for code in codes.split(",")
    )
    results = run["results"]
    assert sorted(r["ruleId"] for r in results) == expected_codes
    for r in results:
        assert r["message"]["text"]
        assert r["level"] in ("none", "note", "warning", "error")
        assert rule_ids[r["ruleIndex"]] == r["ruleId"]
        uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert uri.startswith(("tls://", "ssh://"))
    # The SARIF validates: Microsoft's SARIF Multitool checks the schema (sarif-2.1.0) and its
    # rules; any error-level result is a failure (warnings such as a missing informationUri
    # are advice).
    validator = require_tool("Sarif.Multitool")
    checked = tmp_path / "validation.sarif"
    proc = await asyncio.create_subprocess_exec(
        validator, "validate", str(out), "-o", str(checked),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "DOTNET_SYSTEM_GLOBALIZATION_INVARIANT": "1"},
    )  # fmt: skip
    output, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, output.decode()
    problems = json.loads(checked.read_text())["runs"][0].get("results", [])
    errors = [p for p in problems if p.get("level", "warning") == "error"]
    assert errors == [], errors
    bad = await asyncio.create_subprocess_exec(
        *certyard_command(),
        "scan",
        "10.0.0.0/7",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await bad.communicate()
    assert bad.returncode == 2 and err.decode().count("\n") == 1
