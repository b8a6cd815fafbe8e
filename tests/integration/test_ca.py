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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID
from sqlalchemy import func, select
from sqlalchemy import insert as sa_insert
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text as sa_text
from sqlalchemy.engine import Connection
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
from ca.config import ProfileConfig
from ca.der import replace_signature, sign_certificate
from ca.serials import new_serial, serial_to_hex
from storage.engine import MIGRATIONS_DIR, create_engine, migrate, session_factory
from storage.models import Certificate, Issuer
from storage.repositories import certificates as certificate_repo
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


async def _open_ca(
    url: str,
    config: CAConfig | None = None,
    *,
    do_migrate: bool = True,
    backend: SoftwareKeyBackend | None = None,
) -> CA:
    engine = create_engine(url)
    if do_migrate:
        await migrate(engine)
    sessions = session_factory(engine)
    backend = backend or SoftwareKeyBackend(PASSPHRASE)
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


def _openssl_verify(
    tmp_path: Path, root_pem: str, chain_pem: str, *, purpose: str = "sslserver"
) -> None:
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
            openssl, "verify", "-x509_strict", "-purpose", purpose,
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
    assert row.status == "valid" and row.profile == "tls-server" and row.state == "issued"
    assert row.requester == "acme:acct-1" and issued.profile == "tls-server"
    tbs = x509.load_der_x509_certificate(issued.der).tbs_certificate_bytes
    assert row.tbs_sha256 == hashlib.sha256(tbs).hexdigest()
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


async def test_serial_collision_with_the_callers_session(
    db_url: str, ca_env: CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The collision is decided by the record's own transaction (before signing); the caller's
    # session only receives the completion, and commits it.
    first = await ca_env.service.issue_tls_server(_csr(), dns_names=["a.example"])
    draws = iter([first.serial])
    monkeypatch.setattr(ca.issuance, "new_serial", lambda: next(draws, None) or new_serial())
    async with ca_env.sessions() as session, session.begin():
        second = await ca_env.service.issue_tls_server(
            _csr(), dns_names=["b.example"], session=session
        )
    assert second.serial != first.serial
    for issued in (first, second):
        row = await _row(db_url, issued.id)
        assert row is not None and row.state == "issued" and row.der == issued.der


async def test_serial_collision_is_settled_before_signing(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = CountingBackend(PASSPHRASE)
    env = await _open_ca(db_url, backend=backend)
    try:
        first = await env.service.issue_tls_server(_csr(), dns_names=["one.example"])
        draws = iter([first.serial])
        monkeypatch.setattr(ca.issuance, "new_serial", lambda: next(draws, None) or new_serial())
        before = len(backend.signed)
        await env.service.issue_tls_server(_csr(), dns_names=["two.example"])
        assert len(backend.signed) == before + 1  # the colliding draft was never signed
    finally:
        await env.engine.dispose()


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
        # The record was committed before signing; its completion waits for the caller.
        row = await _row(db_url, issued.id)
        assert row is not None and row.state == "signing" and row.der is None
        await session.rollback()
    # The caller rolled back (e.g. the ACME order update failed): the record stays "signing",
    # without DER - the certificate was never released - and it remains revocable.
    row = await _row(db_url, issued.id)
    assert row is not None and row.state == "signing" and row.der is None
    assert row.chain_pem is None and row.status == "valid"
    await ca_env.service.revoke(issued.id, 4)

    async with ca_env.sessions() as session, session.begin():
        kept = await ca_env.service.issue_tls_server(
            _csr(), dns_names=["tx.example"], session=session
        )
    row = await _row(db_url, kept.id)
    assert row is not None and row.state == "issued" and row.der == kept.der


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
    assert stored.requester == "server-tls" and stored.state == "issued"

    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert_file.write_text(creds.chain_pem)
    key_file.write_bytes(creds.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file, password=creds.key_password)
    with pytest.raises(ssl.SSLError):
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
            cert_file, key_file, password=b"wrong"
        )


# --- issuance records: written before the signature, completed after it ---------------------


class CountingBackend(SoftwareKeyBackend):
    """The real software backend, instrumented: it keeps every TBS it is asked to sign and,
    given a database URL, looks up the issuance record of that TBS through a connection of its
    own (so only committed rows are visible) at the moment it signs."""

    def __init__(self, passphrase: bytes, db_url: str | None = None) -> None:
        super().__init__(passphrase)
        self.signed: list[bytes] = []
        self.records_seen: list[tuple[str, bytes | None] | None] = []
        self.fail: Exception | None = None
        self.sign_other_bytes = False
        self.before_sign: Callable[[], Awaitable[None]] | None = None
        self._db_url = db_url

    async def sign(self, key_ref: str, data: bytes, **kwargs: Any) -> bytes:
        self.signed.append(data)
        if self._db_url is not None:
            self.records_seen.append(await _record_for_tbs(self._db_url, data))
        if self.before_sign is not None:
            await self.before_sign()
        if self.fail is not None:
            raise self.fail
        if self.sign_other_bytes:
            data = data + b"\x00"
        return await super().sign(key_ref, data, **kwargs)


async def _record_for_tbs(url: str, tbs: bytes) -> tuple[str, bytes | None] | None:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            row = await session.scalar(
                select(Certificate).where(Certificate.tbs_sha256 == hashlib.sha256(tbs).hexdigest())
            )
            return None if row is None else (row.state, row.der)
    finally:
        await engine.dispose()


@pytest.fixture
async def counted(db_url: str) -> AsyncIterator[tuple[CA, CountingBackend]]:
    backend = CountingBackend(PASSPHRASE, db_url)
    env = await _open_ca(db_url, backend=backend)
    yield env, backend
    await env.engine.dispose()


async def _only_signing_row(sessions: async_sessionmaker[AsyncSession]) -> Certificate:
    async with sessions() as session:
        rows = await session.scalars(select(Certificate).where(Certificate.state == "signing"))
        found = rows.all()
    assert len(found) == 1
    return found[0]


async def test_the_record_exists_when_the_key_signs(
    db_url: str, counted: tuple[CA, CountingBackend]
) -> None:
    env, backend = counted
    issued = await env.service.issue_tls_server(_csr(), dns_names=["rec.example"], account_id="a")
    # At the moment of signing: committed, "signing", no DER, and holding this very TBS hash.
    assert backend.records_seen[-1] == ("signing", None)
    row = await _row(db_url, issued.id)
    assert row is not None and row.state == "issued" and row.der == issued.der
    assert row.tbs_sha256 == hashlib.sha256(backend.signed[-1]).hexdigest()
    assert row.chain_pem == issued.chain_pem and row.requester == "acme:a"
    assert x509.load_der_x509_certificate(issued.der).tbs_certificate_bytes == backend.signed[-1]


async def test_an_unavailable_key_leaves_a_revocable_signing_record(
    counted: tuple[CA, CountingBackend],
) -> None:
    env, backend = counted
    backend.fail = CAError("unavailable", "the token was removed")
    with pytest.raises(CAError) as info:
        await env.service.issue(
            _csr(), profile="tls-server", dns_names=["hsm.example"], requester="cli"
        )
    assert info.value.kind == "unavailable"
    row = await _only_signing_row(env.sessions)
    assert row.der is None and row.chain_pem is None and row.status == "valid"
    assert row.tbs_sha256 == hashlib.sha256(backend.signed[-1]).hexdigest()
    assert row.requester == "cli" and row.names == ["hsm.example"]
    signed = x509.load_der_x509_certificate(_draft_der(backend.signed[-1]))
    assert row.serial == serial_to_hex(signed.serial_number)  # the serial that was signed
    stored = await env.service.get_certificate(row.id)
    assert stored is not None and stored.state == "signing" and stored.der is None

    await env.service.revoke(row.id, 1)  # keyCompromise: a "signing" record is revocable
    stored = await env.service.get_certificate(row.id)
    assert stored is not None and stored.status == "revoked" and stored.revocation_reason == 1


def _draft_der(tbs: bytes) -> bytes:
    """A Certificate SEQUENCE around ``tbs`` with a dummy algorithm and signature, enough for
    cryptography to read the TBS fields back."""
    algorithm = bytes.fromhex("300a06082a8648ce3d040302")  # ecdsa-with-SHA256
    body = tbs + algorithm + b"\x03\x01\x00"
    return b"\x30" + _der_length(len(body)) + body


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


async def test_a_signature_over_other_bytes_is_refused(
    counted: tuple[CA, CountingBackend],
) -> None:
    env, backend = counted
    backend.sign_other_bytes = True
    with pytest.raises(CAError) as info:
        await env.service.issue_tls_server(_csr(), dns_names=["other.example"])
    assert info.value.kind == "internal" and "did not verify" in info.value.detail
    row = await _only_signing_row(env.sessions)
    assert row.der is None  # never released, still on record


async def test_a_valid_certificate_with_another_tbs_is_refused(
    counted: tuple[CA, CountingBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A splice that hands back a *correctly signed* certificate of the same issuer with other
    # content: the signature verifies, only the TBS byte comparison can catch it.
    env, _ = counted
    intermediate = env.hierarchy.intermediate
    impostor = await sign_certificate(
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(intermediate.certificate.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(new_serial())
        .not_valid_before(utc_now())
        .not_valid_after(utc_now() + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("impostor.example")]), critical=True
        ),
        backend=env.backend,
        key_ref=intermediate.key_ref,
        algorithm=intermediate.algorithm,
        issuer=intermediate.certificate,
    )
    impostor_der = impostor.public_bytes(serialization.Encoding.DER)
    monkeypatch.setattr(ca.issuance, "replace_signature", lambda _der, _sig: impostor_der)
    with pytest.raises(CAError) as info:
        await env.service.issue_tls_server(_csr(), dns_names=["real.example"])
    assert info.value.kind == "internal" and "TBS differs" in info.value.detail
    assert (await _only_signing_row(env.sessions)).der is None


async def test_a_record_revoked_while_signing_is_never_released(
    counted: tuple[CA, CountingBackend],
) -> None:
    env, backend = counted

    async def revoke_the_record() -> None:
        row = await _only_signing_row(env.sessions)
        await env.service.revoke(row.id, 1)

    backend.before_sign = revoke_the_record
    with pytest.raises(CAError) as info:
        await env.service.issue_tls_server(_csr(), dns_names=["revoked.example"])
    assert info.value.kind == "conflict"
    row = await _only_signing_row(env.sessions)
    assert row.status == "revoked" and row.der is None


async def test_only_the_key_and_the_names_come_from_the_csr(ca_env: CA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil Corp"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "evil.example"),
                ]
            )
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    issued = await ca_env.service.issue_tls_server(csr, dns_names=["good.example"])
    leaf = x509.load_der_x509_certificate(issued.der)
    assert leaf.subject == x509.Name([])
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["good.example"]
    bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is False
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert _spki(leaf.public_key()) == _spki(key.public_key())


async def test_profiles_by_name(ca_env: CA, tmp_path: Path) -> None:
    device_key = rsa.generate_private_key(65537, 2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(device_key, hashes.SHA256())
    )
    device = await ca_env.service.issue(
        csr, profile="device", dns_names=[], common_name="dev-0042", requester="est:default"
    )
    leaf = x509.load_der_x509_certificate(device.der)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dev-0042"
    assert device.profile == "device"
    stored = await ca_env.service.get_certificate(device.id)
    assert stored is not None and stored.requester == "est:default" and stored.names == []
    _openssl_verify(tmp_path, ca_env.service.root_pem(), device.chain_pem, purpose="sslclient")

    client = await ca_env.service.issue(
        _csr(), profile="tls-client", dns_names=["client.example"], requester="cli"
    )
    assert client.profile == "tls-client"
    _openssl_verify(tmp_path, ca_env.service.root_pem(), client.chain_pem, purpose="sslclient")

    with pytest.raises(CAError) as info:
        await ca_env.service.issue(_csr(), profile="nope", dns_names=["x.example"], requester="cli")
    assert info.value.kind == "policy"
    ec_only = CAConfig().with_profiles(
        ProfileConfig("ec-device", "device", 30, key_types=("ec-p256",))
    )
    service = IssuanceService(ca_env.sessions, ca_env.hierarchy, ca_env.backend, ec_only, utc_now)
    with pytest.raises(CAError) as info:  # a 2048-bit RSA key, but only EC in this profile
        await service.issue(csr, profile="ec-device", dns_names=[], common_name="d", requester="x")
    assert info.value.kind == "policy"
    assert await _count(ca_env.sessions, Certificate) == 2 + 2


# --- migration 0002 ----------------------------------------------------------------------------


def _alembic(connection: Connection, action: str, revision: str) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, revision)


async def test_migration_0002_backfills_existing_certificates(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "upgrade", "0001")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
        old = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1234)
            .not_valid_before(utc_now()).not_valid_after(utc_now() + dt.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        der = old.public_bytes(serialization.Encoding.DER)
        now = utc_now()
        async with engine.begin() as conn:
            await conn.execute(
                sa_insert(Issuer).values(
                    id="int-1", role="intermediate", parent_id=None, cert_pem="-", key_backend="x",
                    key_ref="x", key_blob=None, created_at=now,
                )
            )  # fmt: skip
            for cert_id, serial, account, profile in (
                ("c1", "04d2", "acct-7", "tls-server"),
                ("c2", "04d3", None, "intermediate-ca"),
            ):
                await conn.execute(
                    sa_text(
                        "INSERT INTO certificates (id, serial, issuer_id, der, chain_pem, names,"
                        " profile, not_before, not_after, spki_sha256, account_id, order_id,"
                        " status, created_at) VALUES (:id, :serial, 'int-1', :der, 'pem', '[]',"
                        " :profile, :now, :now, 'spki', :account, NULL, 'valid', :now)"
                    ),
                    {"id": cert_id, "serial": serial, "der": der, "profile": profile,
                     "account": account, "now": now.replace(tzinfo=None)},
                )  # fmt: skip
        await migrate(engine)  # 0001 -> head

        sessions = session_factory(engine)
        async with sessions() as session:
            c1 = await session.get(Certificate, "c1")
            c2 = await session.get(Certificate, "c2")
        assert c1 is not None and c2 is not None
        tbs_hash = hashlib.sha256(old.tbs_certificate_bytes).hexdigest()
        assert (c1.state, c1.tbs_sha256, c1.requester) == ("issued", tbs_hash, "acme:acct-7")
        assert (c2.state, c2.requester) == ("issued", "hierarchy")

        # Later revisions first, one committed step: SQLite runs DDL outside the transaction
        # (pysqlite), so a downgrade failing at 0002 would leave theirs half undone.
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "downgrade", "0002")
        # A "signing" record blocks the downgrade (0001 cannot hold a row without DER) ...
        async with sessions.begin() as session:
            await certificate_repo.insert_signing_record(
                session, id="c3", serial_hex="04d4", issuer_id="int-1", tbs_sha256="0" * 64,
                names=[], profile="device", not_before=now, not_after=now, spki_sha256="s",
                requester="cli", account_id=None, order_id=None, created_at=now,
            )  # fmt: skip
        with pytest.raises(RuntimeError, match="still 'signing'"):
            async with engine.begin() as conn:
                await conn.run_sync(_alembic, "downgrade", "0001")
        # ... and once it is resolved the schema goes back to 0001.
        async with sessions.begin() as session:
            await certificate_repo.complete_record(session, "c3", der, "pem")
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "downgrade", "0001")
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in sa_inspect(c).get_columns("certificates")}
            )
        assert "state" not in columns and "tbs_sha256" not in columns
        await migrate(engine)
    finally:
        await engine.dispose()


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
