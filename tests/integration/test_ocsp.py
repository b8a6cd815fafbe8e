"""The OCSP responder end to end: a real SQLite database, the software key backend, the
revocation front end on a real loopback server, and the real ``openssl ocsp`` client."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import yarl
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ca.config import CAConfig
from ca.crl import CRLConfig, CRLService
from ca.errors import CAError
from ca.hierarchy import Hierarchy, load_or_create_hierarchy
from ca.issuance import IssuanceService, IssuedCertificate
from ca.keys import KeyBackend, spki_der
from ca.ocsp import OCSPConfig, OCSPResponder, issuer_hashes
from ca.ocsp_signer import OCSPSigner, OCSPSignerProvider
from ca.software_keys import SoftwareKeyBackend, load_or_create_passphrase
from revocation_server import create_app
from storage.engine import create_engine, migrate, session_factory
from storage.models import Certificate, Issuer
from tests.support.softhsm import make_token, open_backend
from tests.support.tools import require_tool

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


class Clock:
    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


@dataclass
class Env:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    backend: KeyBackend
    hierarchy: Hierarchy
    issuance: IssuanceService
    signers: OCSPSignerProvider
    responder: OCSPResponder
    clock: Clock
    tmp_path: Path
    url: str = ""

    async def issue(self, name: str = "www.example.com") -> IssuedCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .sign(key, hashes.SHA256())
        )
        return await self.issuance.issue_tls_server(csr, dns_names=[name])

    def write(self, name: str, content: str) -> str:
        path = self.tmp_path / name
        path.write_text(content)
        return str(path)


async def _open(tmp_path: Path) -> Env:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/certyard.db")
    await migrate(engine)
    sessions = session_factory(engine)
    backend = SoftwareKeyBackend(load_or_create_passphrase(tmp_path / "ca" / "key-passphrase"))
    clock = Clock()
    config = CAConfig()
    hierarchy = await load_or_create_hierarchy(sessions, backend, config, clock)
    issuance = IssuanceService(sessions, hierarchy, backend, config, clock)
    signers = OCSPSignerProvider(sessions, hierarchy, backend, clock)
    responder = OCSPResponder(sessions, hierarchy, backend, clock, signers, OCSPConfig())
    return Env(engine, sessions, backend, hierarchy, issuance, signers, responder, clock, tmp_path)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    environment = await _open(tmp_path)
    crls = CRLService(
        environment.sessions,
        environment.hierarchy,
        environment.backend,
        environment.clock,
        CRLConfig(),
    )
    app = create_app(crls, environment.responder, clock=environment.clock)
    async with TestServer(app, host="127.0.0.1") as server:
        environment.url = str(server.make_url("/ocsp"))
        yield environment
    await environment.engine.dispose()


async def _openssl_ocsp(env: Env, *args: str) -> str:
    """Run ``openssl ocsp`` without blocking the loop that serves it; stdout + stderr."""
    root = env.write("root.pem", env.hierarchy.root.pem)
    intermediate = env.write("int.pem", env.hierarchy.intermediate.pem)
    process = await asyncio.create_subprocess_exec(
        require_tool("openssl"), "ocsp", "-issuer", intermediate, "-url", env.url,
        "-CAfile", root, "-resp_text", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    output = stdout.decode() + stderr.decode()
    assert process.returncode == 0, output
    return output


def _request(
    cert: x509.Certificate, issuer: x509.Certificate, digest: hashes.HashAlgorithm
) -> bytes:
    return ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, digest).build().public_bytes(DER)


async def _post(env: Env, body: bytes, content_type: str = "application/ocsp-request") -> bytes:
    async with (
        aiohttp.ClientSession() as client,
        client.post(env.url, data=body, headers={"Content-Type": content_type}) as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/ocsp-response"
        return await response.read()


async def test_openssl_good_then_revoked_with_reason(env: Env) -> None:
    leaf = await env.issue()
    leaf_pem = env.write("leaf.pem", leaf.pem)
    output = await _openssl_ocsp(env, "-cert", leaf_pem)
    assert "Response verify OK" in output
    assert f"{leaf_pem}: good" in output
    assert "WARNING" not in output  # openssl sends a nonce by default: it was echoed

    await env.issuance.revoke(leaf.id, 1)
    env.responder.invalidate(leaf.serial_hex)
    output = await _openssl_ocsp(env, "-cert", leaf_pem)
    assert "Response verify OK" in output
    assert f"{leaf_pem}: revoked" in output
    assert "Reason: keyCompromise" in output


async def test_openssl_unknown_serial_and_nonce(env: Env) -> None:
    output = await _openssl_ocsp(env, "-serial", "0x1234567890abcdef", "-nonce")
    assert "Response verify OK" in output
    assert ": unknown" in output
    assert "WARNING: no nonce in response" not in output


async def test_response_details(env: Env) -> None:
    leaf = await env.issue()
    cert = x509.load_pem_x509_certificate(leaf.pem.encode())
    intermediate = env.hierarchy.intermediate.certificate
    for digest in (hashes.SHA1(), hashes.SHA256()):
        response = ocsp.load_der_ocsp_response(
            await _post(env, _request(cert, intermediate, digest))
        )
        assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
        assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert response.serial_number == leaf.serial
        assert isinstance(response.hash_algorithm, type(digest))  # CertID echoed as sent
        assert response.next_update_utc is not None
        interval = response.next_update_utc - response.this_update_utc + dt.timedelta(seconds=1)
        assert dt.timedelta(hours=8) <= interval <= dt.timedelta(days=10)  # BR §4.9.10
        assert len(response.certificates) == 1
        responder = response.certificates[0]
        assert response.responder_name == responder.subject  # ResponderID byName
        responder.verify_directly_issued_by(intermediate)


async def test_get_form_with_url_encoded_base64(env: Env) -> None:
    leaf = await env.issue()
    cert = x509.load_pem_x509_certificate(leaf.pem.encode())
    der = _request(cert, env.hierarchy.intermediate.certificate, hashes.SHA1())
    encoded = base64.b64encode(der).decode()
    async with aiohttp.ClientSession() as client:
        for path in (urllib.parse.quote(encoded, safe=""), encoded, encoded.rstrip("=")):
            url = yarl_url(env.url + "/" + path)
            async with client.get(url) as response:
                assert response.status == 200, path
                assert response.content_type == "application/ocsp-response"
                body = await response.read()
                headers = response.headers
            parsed = ocsp.load_der_ocsp_response(body)
            assert parsed.certificate_status == ocsp.OCSPCertStatus.GOOD
            assert parsed.serial_number == leaf.serial
            cache_control = headers["Cache-Control"]
            assert cache_control.endswith(", public, no-transform, must-revalidate")
            max_age = int(cache_control.split(",")[0].removeprefix("max-age="))
            assert parsed.next_update_utc is not None
            assert 0 < max_age <= (parsed.next_update_utc - env.clock()).total_seconds() + 1
            for name in ("Last-Modified", "Expires", "ETag"):
                assert name in headers
        # Not base64 at all: an OCSP malformedRequest, still HTTP 200.
        async with client.get(env.url + "/not*base64") as response:
            assert response.status == 200
            status = ocsp.load_der_ocsp_response(await response.read()).response_status
            assert status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
            assert response.headers["Cache-Control"] == "no-store"


def yarl_url(url: str) -> yarl.URL:
    """Send the path exactly as written (percent-escapes and all)."""
    return yarl.URL(url, encoded=True)


async def test_foreign_issuer_is_unauthorized(env: Env) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone else's CA")])
    now = dt.datetime.now(dt.UTC)
    foreign = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(99)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    body = await _post(env, _request(foreign, foreign, hashes.SHA1()))
    response = ocsp.load_der_ocsp_response(body)
    assert response.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    # The root is ours but signs no OCSP: its subordinates' status is on the root CRL.
    root = env.hierarchy.root.certificate
    body = await _post(env, _request(env.hierarchy.intermediate.certificate, root, hashes.SHA1()))
    assert ocsp.load_der_ocsp_response(body).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


async def test_malformed_and_http_errors(env: Env) -> None:
    response = ocsp.load_der_ocsp_response(await _post(env, b"garbage"))
    assert response.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    async with aiohttp.ClientSession() as client:
        async with client.post(
            env.url, data=b"x", headers={"Content-Type": "text/plain"}
        ) as http_response:
            assert http_response.status == 415
        async with client.post(
            env.url, data=b"x" * 20_000, headers={"Content-Type": "application/ocsp-request"}
        ) as http_response:
            assert http_response.status == 413
        async with client.get(env.url) as http_response:
            assert http_response.status == 405


async def test_nonce_echo_and_limits(env: Env) -> None:
    leaf = await env.issue()
    cert = x509.load_pem_x509_certificate(leaf.pem.encode())
    issuer = env.hierarchy.intermediate.certificate

    def with_nonce(nonce: bytes) -> bytes:
        return (
            ocsp.OCSPRequestBuilder()
            .add_certificate(cert, issuer, hashes.SHA1())
            .add_extension(x509.OCSPNonce(nonce), critical=False)
            .build()
            .public_bytes(DER)
        )

    nonce = b"\x01" * 32
    response = ocsp.load_der_ocsp_response(await _post(env, with_nonce(nonce)))
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    response = ocsp.load_der_ocsp_response(await _post(env, with_nonce(b"\x01" * 33)))
    assert response.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


async def test_cached_response_is_reused_until_invalidated(env: Env) -> None:
    leaf = await env.issue()
    cert = x509.load_pem_x509_certificate(leaf.pem.encode())
    request = _request(cert, env.hierarchy.intermediate.certificate, hashes.SHA1())
    first = await env.responder.respond(request)
    assert await env.responder.respond(request) == first  # cached: the same signed bytes
    await env.issuance.revoke(leaf.id, 0)
    assert await env.responder.respond(request) == first  # not invalidated yet
    env.responder.invalidate(leaf.serial_hex)
    response = ocsp.load_der_ocsp_response(await env.responder.respond(request))
    assert response.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is None  # unspecified is omitted, as on the CRL
    assert response.revocation_time_utc is not None


async def test_internal_error_is_an_ocsp_response(env: Env) -> None:
    class Broken:
        async def signer_for(self, issuer_id: str) -> OCSPSigner:
            raise RuntimeError("token removed")

    responder = OCSPResponder(env.sessions, env.hierarchy, env.backend, env.clock, Broken())
    leaf = await env.issue()
    cert = x509.load_pem_x509_certificate(leaf.pem.encode())
    request = _request(cert, env.hierarchy.intermediate.certificate, hashes.SHA256())
    response = ocsp.load_der_ocsp_response(await responder.respond(request))
    assert response.response_status == ocsp.OCSPResponseStatus.INTERNAL_ERROR

    class Unplugged:
        async def signer_for(self, issuer_id: str) -> OCSPSigner:
            raise CAError("unavailable", "token removed")

    responder = OCSPResponder(env.sessions, env.hierarchy, env.backend, env.clock, Unplugged())
    response = ocsp.load_der_ocsp_response(await responder.respond(request))
    assert response.response_status == ocsp.OCSPResponseStatus.TRY_LATER


async def test_responder_certificate_profile_and_backend(env: Env) -> None:
    signer = await env.signers.signer_for("int-1")
    cert = signer.certificate
    assert signer.id == "ocsp-int-1-1"
    cert.verify_directly_issued_by(env.hierarchy.intermediate.certificate)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical and key_usage.value.digital_signature
    assert not key_usage.value.key_cert_sign and not key_usage.value.crl_sign
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=90)
    # The key lives in the CA's backend, next to the CA keys.
    assert spki_der(env.backend.public_key(signer.key_ref)) == spki_der(cert.public_key())
    async with env.sessions() as session:
        row = await session.get(Issuer, signer.id)
        recorded = await session.scalar(
            select(Certificate).where(Certificate.serial == format(cert.serial_number, "x"))
        )
    assert row is not None and row.role == "ocsp" and row.parent_id == "int-1"
    assert row.key_backend == env.backend.name and row.key_ref == signer.key_ref
    assert recorded is not None and recorded.profile == "ocsp-signing"
    assert await env.signers.signer_for("int-1") is signer  # reused, not recreated


async def test_responder_certificate_is_renewed(env: Env) -> None:
    first = await env.signers.signer_for("int-1")
    env.clock.offset = dt.timedelta(days=59)
    assert await env.signers.signer_for("int-1") is first  # 31 days left: kept
    env.clock.offset = dt.timedelta(days=61)
    second = await env.signers.signer_for("int-1")
    assert second.id == "ocsp-int-1-2"
    assert second.certificate.not_valid_after_utc > first.certificate.not_valid_after_utc
    assert second.key_ref != first.key_ref
    async with env.sessions() as session:
        rows = (await session.scalars(select(Issuer.id).where(Issuer.role == "ocsp"))).all()
    assert sorted(rows) == ["ocsp-int-1-1", "ocsp-int-1-2"]
    # A fresh process picks the newest one.
    other = OCSPSignerProvider(env.sessions, env.hierarchy, env.backend, env.clock)
    assert (await other.signer_for("int-1")).id == "ocsp-int-1-2"


async def test_concurrent_first_use_creates_one_signer(tmp_path: Path) -> None:
    env = await _open(tmp_path)
    try:
        # Two "processes": separate backends (same passphrase) and providers on one database.
        backends = [
            SoftwareKeyBackend(load_or_create_passphrase(tmp_path / "ca" / "key-passphrase"))
            for _ in range(2)
        ]
        for backend in backends:
            await load_or_create_hierarchy(env.sessions, backend, CAConfig(), env.clock)
        providers = [
            OCSPSignerProvider(env.sessions, env.hierarchy, backend, env.clock)
            for backend in backends
        ]
        signers = await asyncio.gather(*(p.signer_for("int-1") for p in providers))
        assert signers[0].id == signers[1].id == "ocsp-int-1-1"
        assert signers[0].certificate == signers[1].certificate
        async with env.sessions() as session:
            rows = (await session.scalars(select(Issuer.id).where(Issuer.role == "ocsp"))).all()
        assert rows == ["ocsp-int-1-1"]
    finally:
        await env.engine.dispose()


async def test_responses_and_responder_certificate_pass_pkilint(env: Env) -> None:
    """pkilint (installed with the test dependencies) finds nothing at WARNING or above."""
    leaf = await env.issue()
    cert = x509.load_pem_x509_certificate(leaf.pem.encode())
    intermediate = env.hierarchy.intermediate.certificate
    nonce_request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, intermediate, hashes.SHA256())
        .add_extension(x509.OCSPNonce(b"\x05" * 16), critical=False)
        .build()
        .public_bytes(DER)
    )
    unknown_request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(*ocsp_hashes(intermediate), 0x7FFF_FFFF_FFFF, hashes.SHA1())
        .build()
        .public_bytes(DER)
    )
    documents = {
        "good.ocsp": await env.responder.respond(nonce_request),
        "unknown.ocsp": await env.responder.respond(unknown_request),
    }
    await env.issuance.revoke(leaf.id, 1)
    env.responder.invalidate(leaf.serial_hex)
    documents["revoked.ocsp"] = await env.responder.respond(
        _request(cert, intermediate, hashes.SHA1())
    )
    lint_response = require_tool("lint_ocsp_response")
    for name, der in documents.items():
        path = env.tmp_path / name
        path.write_bytes(der)
        await _lint(lint_response, "lint", "-s", "WARNING", str(path))
    responder = env.tmp_path / "responder.pem"
    signer = await env.signers.signer_for("int-1")
    responder.write_bytes(signer.certificate.public_bytes(PEM))
    await _lint(
        require_tool("lint_cabf_serverauth_cert"),
        "lint", "-s", "WARNING", "-t", "OCSP-RESPONDER", str(responder),
    )  # fmt: skip


def ocsp_hashes(issuer: x509.Certificate) -> tuple[bytes, bytes]:
    return issuer_hashes(issuer, hashes.SHA1())


async def _lint(tool: str, *args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        tool, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    output = (stdout + stderr).decode()
    assert process.returncode == 0 and not output.strip(), output


async def test_responder_key_on_a_softhsm_token(tmp_path: Path) -> None:
    """With the PKCS#11 backend the responder key is generated on the token, and responses
    signed there verify with openssl."""
    token = make_token(tmp_path / "hsm")
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/certyard.db")
    await migrate(engine)
    sessions = session_factory(engine)
    clock = Clock()
    try:
        async with open_backend(token) as backend:
            hierarchy = await load_or_create_hierarchy(sessions, backend, CAConfig(), clock)
            issuance = IssuanceService(sessions, hierarchy, backend, CAConfig(), clock)
            signers = OCSPSignerProvider(sessions, hierarchy, backend, clock)
            responder = OCSPResponder(sessions, hierarchy, backend, clock, signers)
            signer = await signers.signer_for("int-1")
            async with sessions() as session:
                row = await session.get(Issuer, signer.id)
            assert row is not None and row.key_backend == backend.name and row.key_blob is None
            assert spki_der(backend.public_key(signer.key_ref)) == spki_der(
                signer.certificate.public_key()
            )
            env = Env(
                engine, sessions, backend, hierarchy, issuance, signers, responder, clock, tmp_path
            )
            crls = CRLService(sessions, hierarchy, backend, clock, CRLConfig())
            app = create_app(crls, responder, clock=clock)
            async with TestServer(app, host="127.0.0.1") as server:
                env.url = str(server.make_url("/ocsp"))
                leaf = await env.issue()
                output = await _openssl_ocsp(env, "-cert", env.write("leaf.pem", leaf.pem))
            assert "Response verify OK" in output and ": good" in output
    finally:
        await engine.dispose()
