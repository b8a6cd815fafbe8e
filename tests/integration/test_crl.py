"""CRLs end to end: a real SQLite database, the software key backend, the real openssl binary,
and the revocation front end on a real loopback server."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ca.config import CAConfig
from ca.crl import CRLConfig, CRLService, PublishedCRL, crl_url, shard_of
from ca.errors import CAError
from ca.hierarchy import Hierarchy, load_or_create_hierarchy
from ca.issuance import IssuanceService, IssuedCertificate
from ca.software_keys import SoftwareKeyBackend, load_or_create_passphrase
from revocation_server import create_app
from storage.engine import create_engine, migrate, session_factory
from tests.support.tools import require_tool

BASE_URL = "http://crl.certyard.test"


class Clock:
    """Real time plus an adjustable offset, shared by the CA and the CRL service."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


@dataclass
class Env:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    backend: SoftwareKeyBackend
    hierarchy: Hierarchy
    issuance: IssuanceService
    clock: Clock
    tmp_path: Path

    def crls(self, **config: object) -> CRLService:
        return CRLService(
            self.sessions,
            self.hierarchy,
            self.backend,
            self.clock,
            CRLConfig(**config),  # type: ignore[arg-type]
        )

    async def issue(self, name: str = "www.example.com") -> IssuedCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .sign(key, hashes.SHA256())
        )
        return await self.issuance.issue_tls_server(csr, dns_names=[name])


async def _open(tmp_path: Path, config: CAConfig) -> Env:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/certyard.db")
    await migrate(engine)
    sessions = session_factory(engine)
    backend = SoftwareKeyBackend(load_or_create_passphrase(tmp_path / "ca" / "key-passphrase"))
    clock = Clock()
    hierarchy = await load_or_create_hierarchy(sessions, backend, config, clock)
    issuance = IssuanceService(sessions, hierarchy, backend, config, clock)
    return Env(engine, sessions, backend, hierarchy, issuance, clock, tmp_path)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    environment = await _open(tmp_path, CAConfig())
    yield environment
    await environment.engine.dispose()


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("openssl"), *args], capture_output=True, text=True, check=False, timeout=60
    )


def _write_crl(env: Env, der: bytes, name: str = "x.crl") -> Path:
    path = env.tmp_path / name
    path.write_bytes(der)
    return path


def _verify_with_openssl(env: Env, der: bytes, issuer_pem: str) -> str:
    chain = env.tmp_path / "chain.pem"
    chain.write_text(issuer_pem + env.hierarchy.root.pem)
    result = _openssl(
        "crl", "-in", str(_write_crl(env, der)), "-inform", "DER", "-CAfile", str(chain), "-noout"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify OK" in result.stdout + result.stderr
    return result.stdout + result.stderr


def _crl_text(env: Env, der: bytes) -> str:
    result = _openssl("crl", "-in", str(_write_crl(env, der)), "-inform", "DER", "-noout", "-text")
    assert result.returncode == 0, result.stderr
    return result.stdout


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


async def test_empty_crl_verifies_with_openssl(env: Env) -> None:
    service = env.crls()
    der = await service.current_crl("int-1")
    _verify_with_openssl(env, der, env.hierarchy.intermediate.pem)
    crl = x509.load_der_x509_crl(der)
    intermediate = env.hierarchy.intermediate.certificate
    assert crl.issuer == intermediate.subject
    assert len(crl) == 0
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(days=7)
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    with pytest.raises(x509.ExtensionNotFound):  # no base_url: no IDP
        crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    # The root's CRL is signed by the root key.
    root_der = await service.current_crl("root-1")
    _verify_with_openssl(env, root_der, "")
    assert x509.load_der_x509_crl(root_der).issuer == env.hierarchy.root.certificate.subject


async def test_revocation_appears_after_invalidate_with_reason(env: Env) -> None:
    service = env.crls(base_url=BASE_URL)
    first = x509.load_der_x509_crl(await service.current_crl("int-1"))
    compromised, superseded, unspecified = [await env.issue(f"h{i}.example") for i in range(3)]
    await env.issuance.revoke(compromised.id, 1)
    await env.issuance.revoke(superseded.id, 4)
    await env.issuance.revoke(unspecified.id, 0)
    # Not yet invalidated: the cached CRL is served as it was.
    assert x509.load_der_x509_crl(await service.current_crl("int-1")) == first
    service.invalidate("int-1")
    der = await service.current_crl("int-1")
    _verify_with_openssl(env, der, env.hierarchy.intermediate.pem)
    crl = x509.load_der_x509_crl(der)
    assert _number(crl) > _number(first)
    assert crl.next_update_utc is not None and crl.next_update_utc > crl.last_update_utc
    entries = {entry.serial_number: entry for entry in crl}
    assert set(entries) == {compromised.serial, superseded.serial, unspecified.serial}
    reason = entries[compromised.serial].extensions.get_extension_for_class(x509.CRLReason)
    assert reason.value.reason == x509.ReasonFlags.key_compromise
    # RFC 5280 §5.3.1: no reasonCode for unspecified.
    assert len(entries[unspecified.serial].extensions) == 0
    text = _crl_text(env, der)
    assert compromised.serial_hex.upper() in text.upper()
    assert "Key Compromise" in text and "Superseded" in text
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical
    assert idp.value.full_name == [x509.UniformResourceIdentifier(f"{BASE_URL}/crl/int-1.crl")]
    assert idp.value.only_contains_user_certs
    assert crl_url(BASE_URL, "int-1", compromised.serial_hex, 1) == f"{BASE_URL}/crl/int-1.crl"


async def test_regeneration_numbers_and_expired_entries(env: Env) -> None:
    service = env.crls(regenerate_every=dt.timedelta(hours=1))
    leaf = await env.issue()
    await env.issuance.revoke(leaf.id, 1)
    service.invalidate("int-1")
    first = x509.load_der_x509_crl(await service.current_crl("int-1"))
    assert [entry.serial_number for entry in first] == [leaf.serial]
    env.clock.offset = dt.timedelta(minutes=59)
    assert x509.load_der_x509_crl(await service.current_crl("int-1")) == first  # still fresh
    env.clock.offset = dt.timedelta(hours=1, minutes=1)
    second = x509.load_der_x509_crl(await service.current_crl("int-1"))
    assert _number(second) > _number(first)
    assert second.last_update_utc > first.last_update_utc
    # After the certificate expires, its entry leaves the CRL (RFC 5280 §3.3).
    env.clock.offset = leaf.not_after - dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    third = x509.load_der_x509_crl(await service.current_crl("int-1"))
    assert len(third) == 0
    assert _number(third) > _number(second)
    # regenerate_all always builds new CRLs for every issuer.
    await service.regenerate_all()
    assert _number(x509.load_der_x509_crl(await service.current_crl("int-1"))) > _number(third)


async def test_half_validity_forces_regeneration(env: Env) -> None:
    service = env.crls(validity=dt.timedelta(hours=4), regenerate_every=dt.timedelta(days=1))
    first = await service.current_crl("int-1")
    env.clock.offset = dt.timedelta(hours=1, minutes=59)
    assert await service.current_crl("int-1") == first
    env.clock.offset = dt.timedelta(hours=2, minutes=1)
    assert await service.current_crl("int-1") != first


async def test_numbers_increase_under_concurrency(env: Env) -> None:
    service = env.crls()
    numbers = []
    for _ in range(3):
        service.invalidate("int-1")
        crls = await asyncio.gather(*(service.current_crl("int-1") for _ in range(5)))
        assert len(set(crls)) == 1  # concurrent requests share one build
        numbers.append(_number(x509.load_der_x509_crl(crls[0])))
    assert numbers == sorted(set(numbers))


async def test_sharding_puts_each_serial_in_exactly_one_shard(env: Env) -> None:
    shards = 3
    service = env.crls(base_url=BASE_URL, shards=shards)
    leaves = [await env.issue(f"s{i}.example") for i in range(9)]
    for leaf in leaves:
        await env.issuance.revoke(leaf.id, 4)
    service.invalidate("int-1")
    found: dict[int, list[int]] = {}
    for shard in range(shards):
        der = await service.current_crl("int-1", shard)
        _verify_with_openssl(env, der, env.hierarchy.intermediate.pem)
        crl = x509.load_der_x509_crl(der)
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
        url = f"{BASE_URL}/crl/int-1/{shard}.crl"
        assert idp.full_name == [x509.UniformResourceIdentifier(url)]
        for entry in crl:
            found.setdefault(entry.serial_number, []).append(shard)
    assert sorted(found) == sorted(leaf.serial for leaf in leaves)
    for leaf in leaves:
        assert found[leaf.serial] == [shard_of(leaf.serial_hex, shards)]
        expected = f"{BASE_URL}/crl/int-1/{shard_of(leaf.serial_hex, shards)}.crl"
        assert crl_url(BASE_URL, "int-1", leaf.serial_hex, shards) == expected
    with pytest.raises(CAError) as excinfo:
        await service.current_crl("int-1", shards)
    assert excinfo.value.kind == "not_found"


async def test_openssl_crl_check_with_the_certificates_distribution_point(tmp_path: Path) -> None:
    # The profile names {crl_base_url}/crl/{issuer}.crl in CRL Distribution Points; the CRL's
    # IssuingDistributionPoint must name the same URL or RFC 5280 §6.3.3 (b)(2) rejects it.
    env = await _open(tmp_path, CAConfig(crl_base_url=BASE_URL))
    try:
        service = env.crls(base_url=BASE_URL)
        leaf = await env.issue()
        cert = x509.load_pem_x509_certificate(leaf.pem.encode())
        dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        assert dp[0].full_name == [
            x509.UniformResourceIdentifier(crl_url(BASE_URL, "int-1", leaf.serial_hex, 1))
        ]
        paths = {
            "root.pem": env.hierarchy.root.pem,
            "int.pem": env.hierarchy.intermediate.pem,
            "leaf.pem": leaf.pem,
        }
        for name, content in paths.items():
            (tmp_path / name).write_text(content)

        async def crl_check() -> subprocess.CompletedProcess[str]:
            crl = x509.load_der_x509_crl(await service.current_crl("int-1"))
            (tmp_path / "int.crl.pem").write_bytes(crl.public_bytes(Encoding.PEM))
            return _openssl(
                "verify", "-crl_check", "-CAfile", str(tmp_path / "root.pem"),
                "-untrusted", str(tmp_path / "int.pem"),
                "-CRLfile", str(tmp_path / "int.crl.pem"), str(tmp_path / "leaf.pem"),
            )  # fmt: skip

        result = await crl_check()
        assert result.returncode == 0, result.stdout + result.stderr
        await env.issuance.revoke(leaf.id, 1)
        service.invalidate("int-1")
        result = await crl_check()
        assert result.returncode != 0
        assert "certificate revoked" in result.stdout + result.stderr
    finally:
        await env.engine.dispose()


def test_config_rejects_unsafe_settings() -> None:
    with pytest.raises(CAError):
        CRLConfig(validity=dt.timedelta(days=11))  # BR §4.9.7
    with pytest.raises(CAError):
        CRLConfig(shards=4)  # a partition without an IDP would look complete


async def test_http_crl_endpoints(env: Env) -> None:
    service = env.crls(base_url=BASE_URL)
    app = create_app(service, _NoOCSP(), clock=env.clock)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as client:
        async with client.get(server.make_url("/crl/int-1.crl")) as response:
            assert response.status == 200
            assert response.content_type == "application/pkix-crl"
            body = await response.read()
            cache_control = response.headers["Cache-Control"]
            assert cache_control.startswith("public, max-age=")
            assert 0 < int(cache_control.rsplit("=", 1)[1]) <= 3600
            assert "Last-Modified" in response.headers
            etag = response.headers["ETag"]
        crl = x509.load_der_x509_crl(body)
        assert crl.issuer == env.hierarchy.intermediate.certificate.subject
        async with client.get(
            server.make_url("/crl/int-1.crl"), headers={"If-None-Match": etag}
        ) as response:
            assert response.status == 304
        async with client.get(server.make_url("/crl/root-1.crl")) as response:
            assert response.status == 200
        for path in ("/crl/nope.crl", "/crl/int-1/0.crl", "/crl/ocsp-int-1-1.crl"):
            async with client.get(server.make_url(path)) as response:
                assert response.status == 404, path
                assert response.content_type == "text/plain"


async def test_http_sharded_crl_endpoints(env: Env) -> None:
    service = env.crls(base_url=BASE_URL, shards=2)
    app = create_app(service, _NoOCSP(), clock=env.clock)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as client:
        for path, status in (
            ("/crl/int-1/0.crl", 200),
            ("/crl/int-1/1.crl", 200),
            ("/crl/int-1/2.crl", 404),
            ("/crl/int-1.crl", 404),
        ):
            async with client.get(server.make_url(path)) as response:
                assert response.status == status, path


class _NoOCSP:
    async def respond(self, request_der: bytes) -> bytes:
        raise AssertionError("not used")


async def test_crls_pass_pkilint(env: Env) -> None:
    """pkilint's BR profile finds nothing at WARNING or above (root: an ARL, RFC 5280 §5)."""
    service = env.crls(base_url=BASE_URL)
    leaf = await env.issue()
    await env.issuance.revoke(leaf.id, 4)
    service.invalidate("int-1")
    for issuer_id, kind in (("int-1", "CRL"), ("root-1", "ARL")):
        path = _write_crl(env, await service.current_crl(issuer_id), f"{issuer_id}.crl")
        result = _pkilint_crl(path, kind)
        assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def _pkilint_crl(path: Path, kind: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("lint_crl"), "lint", "-s", "WARNING", "-t", kind, "-p", "BR", str(path)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


async def test_http_errors_never_leak(env: Env) -> None:
    class Failing:
        def __init__(self, error: Exception) -> None:
            self.error = error

        @property
        def shards(self) -> int:
            return 1

        async def current(self, issuer_id: str, shard: int = 0) -> PublishedCRL:
            raise self.error

    cases = (
        (CAError("unavailable", "token removed"), 503),
        (CAError("internal", "secret detail"), 500),
        (RuntimeError("secret detail"), 500),
    )
    for error, status in cases:
        app = create_app(Failing(error), _NoOCSP(), clock=env.clock)
        async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as client:
            async with client.get(server.make_url("/crl/int-1.crl")) as response:
                assert response.status == status
                assert "secret" not in await response.text()


async def test_sharded_distribution_points_match_the_shard_that_lists_them(
    tmp_path: Path,
) -> None:
    # ca.crl_shards: each certificate's CRL DP names the one shard its serial falls in, and
    # openssl's CRL check (which compares DP and IDP, RFC 5280 §6.3.3) passes against it.
    env = await _open(tmp_path, CAConfig(crl_base_url=BASE_URL, crl_shards=4))
    try:
        service = env.crls(base_url=BASE_URL, shards=4)
        (tmp_path / "root.pem").write_text(env.hierarchy.root.pem)
        (tmp_path / "int.pem").write_text(env.hierarchy.intermediate.pem)
        for index in range(6):
            leaf = await env.issue(f"shard{index}.example.com")
            cert = x509.load_pem_x509_certificate(leaf.pem.encode())
            dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            url = crl_url(BASE_URL, "int-1", leaf.serial_hex, 4)
            assert dp[0].full_name == [x509.UniformResourceIdentifier(url)]
            shard = int(url.rsplit("/", 1)[1].removesuffix(".crl"))
            await env.issuance.revoke(leaf.id, 1)
            service.invalidate("int-1")
            crl = x509.load_der_x509_crl(await service.current_crl("int-1", shard))
            assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
            (tmp_path / "leaf.pem").write_text(leaf.pem)
            (tmp_path / "shard.crl.pem").write_bytes(crl.public_bytes(Encoding.PEM))
            result = _openssl(
                "verify", "-crl_check", "-CAfile", str(tmp_path / "root.pem"),
                "-untrusted", str(tmp_path / "int.pem"),
                "-CRLfile", str(tmp_path / "shard.crl.pem"), str(tmp_path / "leaf.pem"),
            )  # fmt: skip
            assert "certificate revoked" in result.stdout + result.stderr, result.stdout
    finally:
        await env.engine.dispose()
