"""The first CA end to end on a real database (SQLite file; PostgreSQL too under make test).

``db_url`` (tests/conftest.py) yields a SQLite file in tmp_path and, when the test cluster runs,
a fresh PostgreSQL database. openssl is the real binary.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import os
import ssl
import stat
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import ca.issuance
from ca import (
    CAConfig,
    CAError,
    GeneratedKey,
    Hierarchy,
    IssuanceService,
    SoftwareKeyBackend,
    load_or_create_hierarchy,
    load_or_create_passphrase,
)
from ca.der import replace_signature
from ca.serials import new_serial
from storage.engine import create_engine, migrate, session_factory
from storage.models import Certificate, Issuer
from tests.support.tools import require_tool

PASSPHRASE = b"integration-test-passphrase-0123456789"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class CA:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    backend: SoftwareKeyBackend
    hierarchy: Hierarchy
    service: IssuanceService


async def _open_ca(url: str, config: CAConfig | None = None, *, do_migrate: bool = True) -> CA:
    engine = create_engine(url)
    if do_migrate:
        await migrate(engine)
    sessions = session_factory(engine)
    backend = SoftwareKeyBackend(PASSPHRASE)
    config = config or CAConfig()
    hierarchy = await load_or_create_hierarchy(sessions, backend, config, utc_now)
    service = IssuanceService(sessions, hierarchy, backend, config, utc_now)
    return CA(engine, sessions, backend, hierarchy, service)


@pytest.fixture
async def ca_env(db_url: str) -> AsyncIterator[CA]:
    env = await _open_ca(db_url)
    yield env
    await env.engine.dispose()


def _csr(
    key: ec.EllipticCurvePrivateKey | None = None, cn: str = "www.example.com"
) -> x509.CertificateSigningRequest:
    key = key or ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )


def _openssl_verify(tmp_path: Path, root_pem: str, chain_pem: str) -> None:
    openssl = require_tool("openssl")
    certs = x509.load_pem_x509_certificates(chain_pem.encode())
    assert len(certs) == 2  # leaf + intermediate, no root
    files = {}
    for name, content in (
        ("root.pem", root_pem),
        ("int.pem", certs[1].public_bytes(serialization.Encoding.PEM).decode()),
        ("leaf.pem", certs[0].public_bytes(serialization.Encoding.PEM).decode()),
    ):
        files[name] = tmp_path / name
        files[name].write_text(content)
    result = subprocess.run(
        [
            openssl, "verify", "-x509_strict", "-purpose", "sslserver",
            "-CAfile", str(files["root.pem"]), "-untrusted", str(files["int.pem"]),
            str(files["leaf.pem"]),
        ],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("OK")


async def _row(url: str, cert_id: str) -> Certificate | None:
    """Read through a separate engine: only committed data is visible there."""
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            return await session.get(Certificate, cert_id)
    finally:
        await engine.dispose()


async def _count(sessions: async_sessionmaker[AsyncSession], model: type) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- hierarchy ---------------------------------------------------------------------------------


async def test_hierarchy_is_created_once_and_reloaded_identically(db_url: str) -> None:
    first = await _open_ca(db_url)
    try:
        root = first.hierarchy.root.certificate
        assert first.hierarchy.root.id == "root-1" and first.hierarchy.intermediate.id == "int-1"
        first.hierarchy.intermediate.certificate.verify_directly_issued_by(root)
        assert await _count(first.sessions, Issuer) == 2
        assert await _count(first.sessions, Certificate) == 2  # both CA certs are recorded
    finally:
        await first.engine.dispose()

    second = await _open_ca(db_url)  # a restart: new engine, new backend, same passphrase
    try:
        assert second.hierarchy.root_pem() == first.hierarchy.root_pem()
        assert second.hierarchy.issuing_chain_pem() == first.hierarchy.issuing_chain_pem()
        assert second.hierarchy.intermediate.key_ref == first.hierarchy.intermediate.key_ref
        assert await _count(second.sessions, Issuer) == 2
        # The reloaded key signs for the same certificate.
        issued = await second.service.issue_tls_server(_csr(), dns_names=["www.example.com"])
        leaf = x509.load_der_x509_certificate(issued.der)
        leaf.verify_directly_issued_by(first.hierarchy.intermediate.certificate)
    finally:
        await second.engine.dispose()


class _RacingBackend(SoftwareKeyBackend):
    """A real software backend whose instances wait for each other after generating their first
    key, so that both start-ups have seen an empty ``issuers`` table before either inserts."""

    def __init__(self, passphrase: bytes, barrier: asyncio.Barrier) -> None:
        super().__init__(passphrase)
        self._barrier = barrier
        self.destroyed: list[str] = []

    async def generate(self, label: str, algorithm: str) -> GeneratedKey:
        key = await super().generate(label, algorithm)
        if label.startswith("root-1"):
            await self._barrier.wait()
        return key

    async def destroy(self, key_ref: str) -> None:
        self.destroyed.append(key_ref)
        await super().destroy(key_ref)


async def test_concurrent_first_starts_end_with_one_hierarchy(db_url: str) -> None:
    engines = [create_engine(db_url), create_engine(db_url)]
    try:
        await migrate(engines[0])
        barrier = asyncio.Barrier(2)
        backends = [_RacingBackend(PASSPHRASE, barrier) for _ in engines]
        config = CAConfig()
        results = await asyncio.gather(
            *(
                load_or_create_hierarchy(session_factory(engine), backend, config, utc_now)
                for engine, backend in zip(engines, backends, strict=True)
            )
        )
        assert results[0].root_pem() == results[1].root_pem()
        assert results[0].issuing_chain_pem() == results[1].issuing_chain_pem()
        assert await _count(session_factory(engines[0]), Issuer) == 2
        assert await _count(session_factory(engines[0]), Certificate) == 2
        # Exactly one start-up lost, and it dropped both keys it had generated.
        assert sorted(len(backend.destroyed) for backend in backends) == [0, 2]
        # Both instances can now sign with the winner's intermediate key.
        for engine, backend, hierarchy in zip(engines, backends, results, strict=True):
            service = IssuanceService(session_factory(engine), hierarchy, backend, config, utc_now)
            issued = await service.issue_tls_server(_csr(), dns_names=["race.example"])
            x509.load_der_x509_certificate(issued.der).verify_directly_issued_by(
                results[0].intermediate.certificate
            )
    finally:
        for engine in engines:
            await engine.dispose()


async def test_rsa_2048_hierarchy(db_url: str, tmp_path: Path) -> None:
    env = await _open_ca(db_url, CAConfig(key_algorithm="rsa-2048"))
    try:
        for handle in (env.hierarchy.root, env.hierarchy.intermediate):
            assert handle.algorithm == "rsa-2048"
            assert handle.certificate.signature_algorithm_oid == (
                SignatureAlgorithmOID.RSA_WITH_SHA256
            )
        issued = await env.service.issue_tls_server(_csr(), dns_names=["rsa.example"])
        _openssl_verify(tmp_path, env.service.root_pem(), issued.chain_pem)
    finally:
        await env.engine.dispose()


async def test_encrypted_key_blob_needs_the_passphrase(db_url: str, ca_env: CA) -> None:
    async with ca_env.sessions() as session:
        rows = (await session.scalars(select(Issuer))).all()
    assert len(rows) == 2
    for row in rows:
        assert row.key_blob is not None
        assert row.key_blob.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        with pytest.raises(TypeError):  # a password is required
            serialization.load_pem_private_key(row.key_blob, password=None)
        with pytest.raises(ValueError):
            serialization.load_pem_private_key(row.key_blob, password=b"not the passphrase")
        wrong = SoftwareKeyBackend(b"not the passphrase at all")
        with pytest.raises(CAError) as info:
            await wrong.load(row.key_ref, row.key_blob)
        assert info.value.kind == "internal"
        key = serialization.load_pem_private_key(row.key_blob, password=PASSPHRASE)
        cert = x509.load_pem_x509_certificate(row.cert_pem.encode())
        assert _spki(key.public_key()) == _spki(cert.public_key())

    engine = create_engine(db_url)
    try:
        with pytest.raises(CAError) as info:
            await load_or_create_hierarchy(
                session_factory(engine), SoftwareKeyBackend(b"x" * 32), CAConfig(), utc_now
            )
        assert info.value.kind == "internal"
    finally:
        await engine.dispose()


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- issuance ----------------------------------------------------------------------------------


async def test_issued_certificate_verifies_and_is_recorded_before_return(
    db_url: str, ca_env: CA, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    issued = await ca_env.service.issue_tls_server(
        _csr(key),
        dns_names=["www.example.com", "example.com"],
        ip_addresses=["192.0.2.10"],
        account_id="acct-1",
        order_id="order-1",
    )
    row = await _row(db_url, issued.id)  # right after the call, through another connection

    assert row is not None
    assert row.serial == issued.serial_hex and row.der == issued.der
    assert row.status == "valid" and row.profile == "tls-server"
    assert row.account_id == "acct-1" and row.order_id == "order-1"
    assert row.names == ["www.example.com", "example.com", "192.0.2.10"]
    assert row.issuer_id == "int-1"
    assert row.not_before == issued.not_before and row.not_after == issued.not_after
    assert row.chain_pem == issued.chain_pem
    leaf = x509.load_der_x509_certificate(issued.der)
    assert leaf.serial_number == issued.serial
    assert issued.pem == leaf.public_bytes(serialization.Encoding.PEM).decode()
    assert issued.chain_pem == issued.pem + ca_env.hierarchy.intermediate.pem
    assert _spki(leaf.public_key()) == _spki(key.public_key())
    _openssl_verify(tmp_path, ca_env.service.root_pem(), issued.chain_pem)


async def test_serials_are_distinct_positive_and_large(ca_env: CA) -> None:
    csr = _csr()
    serials = []
    for i in range(200):
        issued = await ca_env.service.issue_tls_server(csr, dns_names=[f"n{i}.example"])
        serials.append(issued.serial)
    assert len(set(serials)) == 200
    for serial in serials:
        assert 0 < serial < 2**159  # RFC 5280 §4.1.2.2: at most 20 octets, positive
        assert serial.bit_length() >= 64  # BR §7.1: at least 64 bits of CSPRNG output
    assert await _count(ca_env.sessions, Certificate) == 200 + 2


async def test_forced_serial_collision_is_retried(
    db_url: str, ca_env: CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real collision of two 158-bit random serials cannot be caused on purpose, so the serial
    # source is rigged to repeat an existing serial once. The duplicate is still caught by the
    # database's UNIQUE constraint, not by a check in Python.
    first = await ca_env.service.issue_tls_server(_csr(), dns_names=["one.example"])
    draws = iter([first.serial])
    monkeypatch.setattr(ca.issuance, "new_serial", lambda: next(draws, None) or new_serial())

    second = await ca_env.service.issue_tls_server(_csr(), dns_names=["two.example"])

    assert second.serial != first.serial
    assert await _row(db_url, second.id) is not None
    stored_first = await _row(db_url, first.id)
    assert stored_first is not None and stored_first.der == first.der


async def test_serial_collision_inside_the_callers_transaction(
    db_url: str, ca_env: CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The retry must leave the caller's transaction usable (a SAVEPOINT on PostgreSQL) and keep
    # what it already wrote, here a first certificate that is not committed yet.
    async with ca_env.sessions() as session, session.begin():
        first = await ca_env.service.issue_tls_server(
            _csr(), dns_names=["a.example"], session=session
        )
        draws = iter([first.serial])
        monkeypatch.setattr(ca.issuance, "new_serial", lambda: next(draws, None) or new_serial())
        second = await ca_env.service.issue_tls_server(
            _csr(), dns_names=["b.example"], session=session
        )
    assert second.serial != first.serial
    assert await _row(db_url, first.id) is not None
    assert await _row(db_url, second.id) is not None


async def test_serial_collisions_give_up_after_three_tries(
    ca_env: CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await ca_env.service.issue_tls_server(_csr(), dns_names=["one.example"])
    monkeypatch.setattr(ca.issuance, "new_serial", lambda: first.serial)
    with pytest.raises(CAError) as info:
        await ca_env.service.issue_tls_server(_csr(), dns_names=["two.example"])
    assert info.value.kind == "internal"
    assert await _count(ca_env.sessions, Certificate) == 2 + 1


async def test_issue_in_the_callers_transaction(db_url: str, ca_env: CA) -> None:
    async with ca_env.sessions() as session:
        issued = await ca_env.service.issue_tls_server(
            _csr(), dns_names=["tx.example"], session=session
        )
        assert await _row(db_url, issued.id) is None  # not committed yet
        await session.rollback()
    assert await _row(db_url, issued.id) is None  # gone with the caller's transaction

    async with ca_env.sessions() as session, session.begin():
        kept = await ca_env.service.issue_tls_server(
            _csr(), dns_names=["tx.example"], session=session
        )
    assert await _row(db_url, kept.id) is not None


async def test_revoke(ca_env: CA) -> None:
    issued = await ca_env.service.issue_tls_server(_csr(), dns_names=["rev.example"])
    for reason in (7, 11, -1):
        with pytest.raises(CAError) as info:
            await ca_env.service.revoke(issued.id, reason)
        assert info.value.kind == "malformed"

    await ca_env.service.revoke(issued.id, 1)  # keyCompromise
    stored = await ca_env.service.get_certificate(issued.id)
    assert stored is not None
    assert stored.status == "revoked" and stored.revocation_reason == 1
    assert stored.revoked_at is not None

    with pytest.raises(CAError) as info:
        await ca_env.service.revoke(issued.id, 4)
    assert info.value.kind == "conflict" and info.value.detail == "already revoked"
    stored = await ca_env.service.get_certificate(issued.id)
    assert stored is not None and stored.revocation_reason == 1  # the first reason sticks

    with pytest.raises(CAError) as info:
        await ca_env.service.revoke("no-such-certificate", 0)
    assert info.value.kind == "not_found"


async def test_lookups(ca_env: CA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issued = await ca_env.service.issue_tls_server(
        _csr(key), dns_names=["look.example"], account_id="acct-9"
    )
    by_id = await ca_env.service.get_certificate(issued.id)
    by_der = await ca_env.service.find_by_der(issued.der)
    assert by_id is not None and by_id == by_der
    assert by_id.status == "valid" and by_id.account_id == "acct-9"
    assert by_id.der == issued.der and by_id.chain_pem == issued.chain_pem
    assert by_id.names == ["look.example"]
    assert by_id.spki_sha256 == hashlib.sha256(_spki(key.public_key())).hexdigest()
    assert await ca_env.service.get_certificate("missing") is None
    # Same serial, different bytes: not ours.
    forged = replace_signature(issued.der, b"\x30\x06\x02\x01\x01\x02\x01\x01")
    assert await ca_env.service.find_by_der(forged) is None
    with pytest.raises(CAError) as info:
        await ca_env.service.find_by_der(b"not DER")
    assert info.value.kind == "malformed"


async def test_csr_checks(ca_env: CA) -> None:
    good = _csr()
    tampered = x509.load_der_x509_csr(
        replace_signature(
            good.public_bytes(serialization.Encoding.DER), b"\x30\x06\x02\x01\x01\x02\x01\x01"
        )
    )
    with pytest.raises(CAError) as info:
        await ca_env.service.issue_tls_server(tampered, dns_names=["x.example"])
    assert info.value.kind == "policy"

    ed_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(ed25519.Ed25519PrivateKey.generate(), None)
    )
    with pytest.raises(CAError) as info:
        await ca_env.service.issue_tls_server(ed_csr, dns_names=["x.example"])
    assert info.value.kind == "policy"

    with pytest.raises(CAError) as info:
        await ca_env.service.issue_tls_server(good, dns_names=["bad_name.example"])
    assert info.value.kind == "malformed"
    assert await _count(ca_env.sessions, Certificate) == 2  # nothing was issued


async def test_issue_server_certificate_for_the_listener(ca_env: CA, tmp_path: Path) -> None:
    creds = await ca_env.service.issue_server_certificate(["localhost", "127.0.0.1", "[::1]"])

    chain = x509.load_pem_x509_certificates(creds.chain_pem.encode())
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert b"ENCRYPTED PRIVATE KEY" in creds.key_pem
    stored = await ca_env.service.get_certificate(creds.certificate_id)
    assert stored is not None and stored.profile == "tls-server" and stored.account_id is None

    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert_file.write_text(creds.chain_pem)
    key_file.write_bytes(creds.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file, password=creds.key_password)
    with pytest.raises(ssl.SSLError):
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
            cert_file, key_file, password=b"wrong"
        )


# --- passphrase file ---------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_passphrase_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "ca" / "key-passphrase"
    first = load_or_create_passphrase(path)
    assert len(first) >= 43
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700 and _mode(path.parent.parent) == 0o700
    assert load_or_create_passphrase(path) == first
    assert os.listdir(path.parent) == ["key-passphrase"]  # no temporary files left behind


@pytest.fixture
def restore_umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_racing_creators_all_get_the_same_passphrase(tmp_path: Path, restore_umask: None) -> None:
    path = tmp_path / "ca" / "key-passphrase"
    start = threading.Barrier(8)
    results: list[bytes] = []
    lock = threading.Lock()

    def worker() -> None:
        start.wait()
        value = load_or_create_passphrase(path)
        with lock:
            results.append(value)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert path.read_bytes().strip() == results[0]
    assert os.listdir(path.parent) == ["key-passphrase"]
