"""Lint before sign, end to end: real database, real software key backend, real openssl.

The backend is the real ``SoftwareKeyBackend`` with a counter around ``sign`` (instrumentation,
not a mock): a refused certificate must never reach the key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ca import (
    CAConfig,
    CAError,
    Hierarchy,
    IssuanceService,
    SoftwareKeyBackend,
    load_or_create_hierarchy,
)
from ca.config import ProfileConfig
from ca.lint import INTERMEDIATE_CA, ROOT_CA, Linter, LintReport
from storage.engine import create_engine, migrate, session_factory
from storage.models import Certificate, Issuer
from tests.support.tools import require_tool

PASSPHRASE = b"integration-test-passphrase-0123456789"
BASE = "http://pki.certyard.example.com"
URLS = CAConfig(crl_base_url=BASE, ca_issuers_url=BASE)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CountingBackend(SoftwareKeyBackend):
    """The real software backend, counting the signatures it makes."""

    def __init__(self, passphrase: bytes) -> None:
        super().__init__(passphrase)
        self.signatures = 0

    async def sign(self, key_ref: str, data: bytes, **kwargs: Any) -> bytes:
        self.signatures += 1
        return await super().sign(key_ref, data, **kwargs)


@dataclass
class CA:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    backend: CountingBackend
    hierarchy: Hierarchy
    service: IssuanceService


async def _open(url: str, config: CAConfig) -> CA:
    engine = create_engine(url)
    await migrate(engine)
    sessions = session_factory(engine)
    backend = CountingBackend(PASSPHRASE)
    hierarchy = await load_or_create_hierarchy(sessions, backend, config, utc_now)
    service = IssuanceService(sessions, hierarchy, backend, config, utc_now)
    return CA(engine, sessions, backend, hierarchy, service)


@pytest.fixture
async def ca_env(db_url: str) -> AsyncIterator[CA]:
    env = await _open(db_url, URLS)
    yield env
    await env.engine.dispose()


SubjectKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _csr(key: SubjectKey | None = None) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return builder.sign(key or ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())


async def _rows(sessions: async_sessionmaker[AsyncSession]) -> list[Certificate]:
    async with sessions() as session:
        return list((await session.scalars(select(Certificate))).all())


def _openssl_verify(tmp_path: Path, root_pem: str, chain_pem: str, purpose: str) -> None:
    openssl = require_tool("openssl")
    leaf, intermediate = x509.load_pem_x509_certificates(chain_pem.encode())
    files = {}
    for name, cert_pem in (
        ("root.pem", root_pem),
        ("int.pem", intermediate.public_bytes(serialization.Encoding.PEM).decode()),
        ("leaf.pem", leaf.public_bytes(serialization.Encoding.PEM).decode()),
    ):
        files[name] = tmp_path / name
        files[name].write_text(cert_pem)
    result = subprocess.run(
        [
            openssl, "verify", "-x509_strict", "-purpose", purpose,
            "-CAfile", str(files["root.pem"]), "-untrusted", str(files["int.pem"]),
            str(files["leaf.pem"]),
        ],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


async def test_a_400_day_tls_server_certificate_is_refused_before_signing(db_url: str) -> None:
    config = URLS.with_profiles(ProfileConfig("tls-server", "tls-server", 400))
    env = await _open(db_url, config)
    try:
        signatures = env.backend.signatures  # the hierarchy's two
        rows = await _rows(env.sessions)
        with pytest.raises(CAError) as info:
            # The ACME path: issue_tls_server uses the default (tls-server) profile.
            await env.service.issue_tls_server(_csr(), dns_names=["www.example.com"])
        assert info.value.kind == "policy"
        assert info.value.detail.startswith(
            "lint: cabf.serverauth.certificate_validity_period_exceeds_200_days: "
        )
        assert env.backend.signatures == signatures  # the key never saw it
        after = await _rows(env.sessions)
        assert [r.id for r in after] == [r.id for r in rows]  # no record, let alone "issued"
        assert {r.profile for r in after} == {ROOT_CA, INTERMEDIATE_CA}
    finally:
        await env.engine.dispose()


@pytest.mark.parametrize("key_algorithm", ["ec-p256", "ec-p384", "rsa-2048"])
async def test_issued_certificates_lint_clean_and_verify(
    db_url: str, tmp_path: Path, key_algorithm: str
) -> None:
    env = await _open(db_url, dataclasses.replace(URLS, key_algorithm=key_algorithm))
    try:
        linter = Linter(URLS)
        # The hierarchy was linted when it was created; the stored certificates are clean.
        assert _clean(linter.lint(env.hierarchy.root.certificate, ROOT_CA))
        assert _clean(linter.lint(env.hierarchy.intermediate.certificate, INTERMEDIATE_CA))

        issued = await env.service.issue_tls_server(
            _csr(), dns_names=["www.example.com", "example.com"], account_id="acct-1"
        )
        leaf = x509.load_der_x509_certificate(issued.der)
        # "a certificate issued through ACME carries no pkilint error or warning"
        assert _clean(linter.lint(leaf, "tls-server", URLS.profile("tls-server")))
        assert issued.lint_warnings == ()
        _openssl_verify(tmp_path, env.service.root_pem(), issued.chain_pem, "sslserver")

        for profile, names, cn, purpose in (
            ("shortlived", ["short.example.com"], None, "sslserver"),
            ("tls-client", ["client.example.com"], None, "sslclient"),
            ("device", [], "device-0042", "sslclient"),
        ):
            key = rsa.generate_private_key(65537, 2048) if profile == "device" else None
            cert = await env.service.issue(
                _csr(key), profile=profile, dns_names=names, common_name=cn, requester="cli"
            )
            assert cert.lint_warnings == ()
            parsed = x509.load_der_x509_certificate(cert.der)
            profile_config = URLS.profile(profile)
            assert profile_config is not None
            assert _clean(linter.lint(parsed, profile_config.kind, profile_config))
            _openssl_verify(tmp_path, env.service.root_pem(), cert.chain_pem, purpose)
        rows = await _rows(env.sessions)
        assert all(r.state == "issued" and r.lint_warnings is None for r in rows)
    finally:
        await env.engine.dispose()


def _clean(report: LintReport) -> bool:
    assert report.errors == () and report.warnings == (), report
    return True


async def test_unconfigured_urls_are_recorded_as_warnings(db_url: str) -> None:
    env = await _open(db_url, CAConfig())
    try:
        issued = await env.service.issue_tls_server(_csr(), dns_names=["www.example.test"])
        assert len(issued.lint_warnings) == 3
        assert all("(accepted: " in warning for warning in issued.lint_warnings)
        stored = await env.service.get_certificate(issued.id)
        assert stored is not None and stored.lint_warnings == list(issued.lint_warnings)
    finally:
        await env.engine.dispose()


async def test_lint_can_be_switched_off_for_benchmarks(db_url: str) -> None:
    config = dataclasses.replace(
        URLS.with_profiles(ProfileConfig("tls-server", "tls-server", 400)), lint=False
    )
    env = await _open(db_url, config)
    try:
        issued = await env.service.issue_tls_server(_csr(), dns_names=["www.example.com"])
        assert issued.not_after - issued.not_before > dt.timedelta(days=399)
    finally:
        await env.engine.dispose()


async def test_hierarchy_creation_is_linted(db_url: str) -> None:
    # BR §6.3.2 caps a root at 25 years: the root profile is refused before any signature and
    # nothing is stored.
    config = dataclasses.replace(URLS, root_validity_days=9500)
    engine = create_engine(db_url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        backend = CountingBackend(PASSPHRASE)
        with pytest.raises(CAError) as info:
            await load_or_create_hierarchy(sessions, backend, config, utc_now)
        assert info.value.kind == "policy" and info.value.detail.startswith("lint: ")
        assert backend.signatures == 0
        async with sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Issuer)) == 0
    finally:
        await engine.dispose()


async def test_device_certificate_subject_is_only_the_common_name(ca_env: CA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "from-the-csr"),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    issued = await ca_env.service.issue(
        csr, profile="device", dns_names=[], common_name="sn-123", requester="est:devices"
    )
    leaf = x509.load_der_x509_certificate(issued.der)
    assert leaf.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sn-123")])
