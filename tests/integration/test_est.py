"""EST (RFC 7030 / RFC 8951) in process: the real app on a real TLS socket, over SQLite and the
software key backend. One test per row of the status table, then Basic and client-certificate
authentication, re-enrollment rules and the RFC 8951 wire format."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import shutil
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select

from ca.errors import CAError
from ca.serials import serial_to_hex
from certyard.health import HealthChecks
from certyard.server import build_acme_context, build_https_app, server_ssl_context
from certyard.settings import Settings, load_settings
from certyard.wiring import Services, build_services
from est_server.auth import hash_password
from est_server.context import EstContext
from est_server.wiring import add_manufacturer_trust, build_est_context
from storage.models import EstEnrollment, EstUser
from tests.support.acme_app import free_port
from tests.support.est_pki import Manufacturer, manufacturer

PASSWORD = "correct horse battery"
# A pre-shared AES key of the default label (RFC 7030 §4.4.1.2 DecryptKeyIdentifier); test-only.
KEK_ID, KEK = b"device-kek-1", bytes(range(32))
LABELS: dict[str, Any] = {
    "default": {"profile": "device", "auth": "either"},
    "rsa": {"issuer": "rsa", "profile": "device", "auth": "basic"},
    "certonly": {"profile": "device", "auth": "cert", "reenroll_key_change": "forbid"},
    "newkey": {"profile": "device", "auth": "either", "reenroll_key_change": "require"},
    "held": {"profile": "device", "auth": "basic", "approval": True},
    "web": {"profile": "tls-server", "auth": "basic"},
    "noattrs": {"profile": "device", "auth": "basic", "csr_attributes": False},
    "bound": {"profile": "device", "auth": "either", "channel_binding": True},
    "limited": {"profile": "device", "auth": "basic", "rate_limit": 2},
    # manufacturer_cas is filled in by the fixture (the CA is made per test).
    "factory": {"profile": "device", "auth": "cert"},
}


@dataclass
class Est:
    services: Services
    context: EstContext
    base: str
    root_pem: str
    tmp: Path
    manufacturer: Manufacturer
    # The listener's TLS context (made once per template: same CA, same names).
    server_ssl: ssl.SSLContext

    def url(self, operation: str, label: str | None = None) -> str:
        middle = f"{label}/" if label else ""
        return f"{self.base}/.well-known/est/{middle}{operation}"

    def ssl(self, cert: bytes | None = None, key: bytes | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.root_pem)
        if cert is not None and key is not None:
            cert_path, key_path = self.tmp / "client.pem", self.tmp / "client.key"
            cert_path.write_bytes(cert)
            key_path.write_bytes(key)
            context.load_cert_chain(cert_path, key_path)
        return context


async def _start(
    services: Services, context: EstContext, port: int, ssl_context: ssl.SSLContext
) -> TestServer:
    workers: list[Any] = []
    acme = build_acme_context(services, workers)
    app = build_https_app(acme, HealthChecks(services.engine, services.backend), context)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server(ssl=ssl_context)
    return server


@dataclass(frozen=True)
class Template:
    directory: Path
    manufacturer: Manufacturer
    server_ssl: ssl.SSLContext


def _labels(directory: Path, manufacturer_pem: Path) -> dict[str, Any]:
    labels = dict(LABELS)
    labels["factory"] = {**LABELS["factory"], "manufacturer_cas": [manufacturer_pem]}
    keys = directory / "decrypt-keys"
    keys.touch(mode=0o600)
    keys.write_text(f"# id key\n{KEK_ID.hex()} {KEK.hex()}\n")
    labels["default"] = {**LABELS["default"], "decrypt_keys_file": keys}
    return labels


def _settings(directory: Path, port: int, labels: dict[str, Any] | None = None) -> Settings:
    return load_settings(
        server={"data_dir": directory / "data", "listen": f"127.0.0.1:{port}", "http_listen": ""},
        database={"url": f"sqlite+aiosqlite:///{directory}/certyard.db"},
        ca={"backend": "software"},
        est={"labels": labels or {"default": {}}, "max_body_bytes": 4096},
    )


@pytest.fixture(scope="session")
def est_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """A data dir and database with the CA hierarchy and the EST users, and the listener's TLS
    context, made once; each test gets its own copy of the data (making the ECDSA and RSA
    chains and the server certificate is most of a test's setup time)."""
    base = tmp_path_factory.mktemp("est-template")
    maker = manufacturer()
    manufacturer_pem = maker.write(base / "manufacturer.pem")

    async def build() -> ssl.SSLContext:
        services = await build_services(
            _settings(base, free_port(), _labels(base, manufacturer_pem))
        )
        try:
            async with services.sessions.begin() as session:
                for name, label in (("alice", None), ("rsa-only", "rsa")):
                    session.add(
                        EstUser(
                            name=name,
                            label=label,
                            password_hash=hash_password(PASSWORD),
                            created_at=dt.datetime.now(dt.UTC),
                        )
                    )
            ssl_context = await server_ssl_context(services)
            add_manufacturer_trust(ssl_context, services.settings)
            return ssl_context
        finally:
            await services.close()

    return Template(base, maker, asyncio.run(build()))


@pytest.fixture
async def est(tmp_path: Path, est_template: Template) -> AsyncIterator[Est]:
    port = free_port()
    template = est_template.directory
    shutil.copytree(template / "data", tmp_path / "data")
    shutil.copy2(template / "certyard.db", tmp_path / "certyard.db")
    labels = _labels(tmp_path, template / "manufacturer.pem")
    services = await build_services(_settings(tmp_path, port, labels))
    context = build_est_context(services)
    server = await _start(services, context, port, est_template.server_ssl)
    try:
        yield Est(
            services,
            context,
            f"https://127.0.0.1:{port}",
            services.hierarchy.root_pem(),
            tmp_path,
            est_template.manufacturer,
            est_template.server_ssl,
        )
    finally:
        await server.close()
        await services.close()


def make_csr(
    cn: str = "device-1",
    dns: Sequence[str] = (),
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
) -> tuple[bytes, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER), key


def b64(der: bytes, wrap: bool = True) -> bytes:
    text = base64.b64encode(der)
    if not wrap:
        return text
    return b"\n".join(text[i : i + 64] for i in range(0, len(text), 64)) + b"\n"


BASIC = ("alice", PASSWORD)
PKCS10 = {"Content-Type": "application/pkcs10"}


async def request(
    est: Est,
    method: str,
    operation: str,
    *,
    label: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[aiohttp.ClientResponse, bytes]:
    headers = dict(headers or {})
    if auth is not None:
        # RFC 7617 §2: Basic base64(user ":" password).
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method,
            est.url(operation, label),
            data=body,
            headers=headers,
            ssl=ssl_context or est.ssl(),
        ) as response:
            return response, await response.read()


def certificates(body: bytes) -> list[x509.Certificate]:
    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))


def assert_text_error(response: aiohttp.ClientResponse, body: bytes, status: int) -> None:
    assert response.status == status, body
    assert response.content_type == "text/plain"
    assert b"Traceback" not in body and body.strip()


async def enroll(
    est: Est, cn: str = "device-1", **kwargs: Any
) -> tuple[x509.Certificate, bytes, bytes]:
    """simpleenroll with Basic: (certificate, its PEM, the key's PEM)."""
    der, key = make_csr(cn)
    response, body = await request(
        est, "POST", "simpleenroll", body=b64(der), headers=PKCS10, auth=BASIC, **kwargs
    )
    assert response.status == 200, body
    (cert,) = certificates(body)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert, cert.public_bytes(serialization.Encoding.PEM), key_pem


# -- status table ------------------------------------------------------------------------------


async def test_cacerts_200(est: Est) -> None:
    response, body = await request(est, "GET", "cacerts")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/pkcs7-mime"
    assert response.headers["Content-Transfer-Encoding"] == "base64"
    # RFC 8951 §3.2 / RFC 2045: base64 lines of at most 76 characters.
    lines = body.splitlines()
    assert len(lines) > 1 and all(len(line) <= 76 for line in lines)
    # A CMS certificates field is a SET OF (RFC 5652 §5.1): compare without order.
    certs = {c.fingerprint(hashes.SHA256()) for c in certificates(body)}
    hierarchy = est.services.hierarchy
    expected = [h.certificate for h in hierarchy.intermediates if h.active]
    expected.append(hierarchy.root.certificate)
    assert certs == {c.fingerprint(hashes.SHA256()) for c in expected}
    assert len(expected) == 3  # the ECDSA and RSA intermediates, the root


async def test_cacerts_of_label_200(est: Est) -> None:
    response, body = await request(est, "GET", "cacerts", label="rsa")
    assert response.status == 200
    rsa_intermediate = est.services.hierarchy.active("rsa")
    assert rsa_intermediate is not None
    assert {c.fingerprint(hashes.SHA256()) for c in certificates(body)} == {
        rsa_intermediate.certificate.fingerprint(hashes.SHA256()),
        est.services.hierarchy.root.certificate.fingerprint(hashes.SHA256()),
    }


async def test_unknown_label_404(est: Est) -> None:
    response, body = await request(est, "GET", "cacerts", label="nope")
    assert_text_error(response, body, 404)


async def test_unknown_operation_404(est: Est) -> None:
    response, body = await request(est, "GET", "enrollsomething")
    assert_text_error(response, body, 404)


async def test_wrong_method_405(est: Est) -> None:
    response, body = await request(est, "POST", "cacerts", body=b"x")
    assert_text_error(response, body, 405)
    assert response.headers["Allow"] == "GET"
    response, body = await request(est, "GET", "simpleenroll")
    assert_text_error(response, body, 405)
    assert response.headers["Allow"] == "POST"


async def test_wrong_content_type_415(est: Est) -> None:
    der, _ = make_csr()
    response, body = await request(
        est,
        "POST",
        "simpleenroll",
        body=b64(der),
        auth=BASIC,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert_text_error(response, body, 415)


async def test_no_credentials_401(est: Est) -> None:
    der, _ = make_csr()
    response, body = await request(est, "POST", "simpleenroll", body=b64(der), headers=PKCS10)
    assert_text_error(response, body, 401)
    assert response.headers["WWW-Authenticate"] == 'Basic realm="certyard EST"'


async def test_wrong_password_401(est: Est) -> None:
    der, _ = make_csr()
    for auth in (("alice", "wrong password"), ("bob", PASSWORD)):
        response, body = await request(
            est, "POST", "simpleenroll", body=b64(der), headers=PKCS10, auth=auth
        )
        assert_text_error(response, body, 401)
        assert "WWW-Authenticate" in response.headers


async def test_user_of_other_label_403(est: Est) -> None:
    der, _ = make_csr()
    response, body = await request(
        est,
        "POST",
        "simpleenroll",
        body=b64(der),
        headers=PKCS10,
        auth=("rsa-only", PASSWORD),
    )
    assert_text_error(response, body, 403)


async def test_bad_base64_400(est: Est) -> None:
    response, body = await request(
        est, "POST", "simpleenroll", body=b"not base64 at all!", headers=PKCS10, auth=BASIC
    )
    assert_text_error(response, body, 400)


async def test_not_der_400(est: Est) -> None:
    response, body = await request(
        est, "POST", "simpleenroll", body=b64(b"\x30\x03junk"), headers=PKCS10, auth=BASIC
    )
    assert_text_error(response, body, 400)


async def test_bad_csr_signature_400(est: Est) -> None:
    der, _ = make_csr()
    tampered = bytearray(der)
    tampered[-3] ^= 0xFF  # inside the signature value
    response, body = await request(
        est, "POST", "simpleenroll", body=b64(bytes(tampered)), headers=PKCS10, auth=BASIC
    )
    assert_text_error(response, body, 400)


async def test_key_of_other_chain_400(est: Est) -> None:
    der, _ = make_csr()  # an EC key; label "rsa" issues from the RSA chain only
    response, body = await request(
        est,
        "POST",
        "simpleenroll",
        label="rsa",
        body=b64(der),
        headers=PKCS10,
        auth=("rsa-only", PASSWORD),
    )
    assert_text_error(response, body, 400)


async def test_body_too_large_413(est: Est) -> None:
    response, body = await request(
        est, "POST", "simpleenroll", body=b"A" * 5000, headers=PKCS10, auth=BASIC
    )
    assert_text_error(response, body, 413)


async def test_csrattrs_204(est: Est) -> None:
    response, body = await request(est, "GET", "csrattrs", label="noattrs")
    assert response.status == 204
    assert body == b""


@pytest.mark.parametrize("operation", ["fullcmc"])
async def test_not_implemented_501(est: Est, operation: str) -> None:
    der, _ = make_csr()
    response, body = await request(
        est, "POST", operation, body=b64(der), headers=PKCS10, auth=BASIC
    )
    assert_text_error(response, body, 501)


class _Failing:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def issue(self, csr: x509.CertificateSigningRequest, **kwargs: Any) -> Any:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status"),
    [(CAError("unavailable", "token removed"), 503), (RuntimeError("bug"), 500)],
)
async def test_ca_failures_are_plain_text(est: Est, error: Exception, status: int) -> None:
    context = dataclasses.replace(est.context, issuer=_Failing(error))
    port = free_port()
    server = await _start(est.services, context, port, est.server_ssl)
    try:
        other = dataclasses.replace(est, base=f"https://127.0.0.1:{port}")
        der, _ = make_csr()
        response, body = await request(
            other, "POST", "simpleenroll", body=b64(der), headers=PKCS10, auth=BASIC
        )
    finally:
        await server.close()
    assert_text_error(response, body, status)
    if status == 503:
        assert int(response.headers["Retry-After"]) > 0
    assert b"token removed" not in body and b"bug" not in body


# -- enrollment ------------------------------------------------------------------------------


async def test_simpleenroll_basic(est: Est) -> None:
    der, _ = make_csr("sensor-7", dns=["sensor-7.example.test"])
    response, body = await request(
        est, "POST", "simpleenroll", body=b64(der), headers=PKCS10, auth=BASIC
    )
    assert response.status == 200, body
    assert response.headers["Content-Type"] == "application/pkcs7-mime; smime-type=certs-only"
    (cert,) = certificates(body)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "sensor-7"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["sensor-7.example.test"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ecdsa = est.services.hierarchy.active("ecdsa")
    assert ecdsa is not None
    cert.verify_directly_issued_by(ecdsa.certificate)
    async with est.services.sessions() as session:
        rows = (await session.execute(select(EstEnrollment))).scalars().all()
    assert [(r.label, r.identity, r.source_address) for r in rows] == [
        ("default", "basic:alice", "127.0.0.1")
    ]


async def test_simpleenroll_rsa_label(est: Est) -> None:
    der, _ = make_csr(key=rsa.generate_private_key(65537, 2048))
    response, body = await request(
        est,
        "POST",
        "simpleenroll",
        label="rsa",
        body=b64(der),
        headers=PKCS10,
        auth=("rsa-only", PASSWORD),
    )
    assert response.status == 200, body
    rsa_intermediate = est.services.hierarchy.active("rsa")
    assert rsa_intermediate is not None
    certificates(body)[0].verify_directly_issued_by(rsa_intermediate.certificate)


@pytest.mark.parametrize("wrapped", [True, False], ids=["line-breaks", "one-line"])
@pytest.mark.parametrize("cte", [None, "base64", "binary"], ids=["no-cte", "cte-base64", "cte-x"])
async def test_wire_format_rfc8951(est: Est, wrapped: bool, cte: str | None) -> None:
    """RFC 8951 §3.2: base64 whatever the Content-Transfer-Encoding says, with or without
    line breaks (and stray spaces/tabs)."""
    der, _ = make_csr()
    body = b64(der, wrap=wrapped)
    if not wrapped:
        body = b" " + body[:10] + b"\t" + body[10:] + b"\r\n"
    headers = dict(PKCS10)
    if cte is not None:
        headers["Content-Transfer-Encoding"] = cte
    response, answer = await request(
        est, "POST", "simpleenroll", body=body, headers=headers, auth=BASIC
    )
    assert response.status == 200, answer
    assert len(certificates(answer)) == 1


async def test_simpleenroll_with_client_certificate(est: Est) -> None:
    cert, cert_pem, key_pem = await enroll(est)
    der, _ = make_csr("device-2")
    response, body = await request(
        est,
        "POST",
        "simpleenroll",
        label="certonly",
        body=b64(der),
        headers=PKCS10,
        ssl_context=est.ssl(cert_pem, key_pem),
    )
    assert response.status == 200, body
    async with est.services.sessions() as session:
        identities = (await session.execute(select(EstEnrollment.identity))).scalars().all()
    assert sorted(identities) == ["basic:alice", f"cert:{serial_to_hex(cert.serial_number)}"]


async def test_cert_label_without_certificate_403(est: Est) -> None:
    der, _ = make_csr()
    response, body = await request(
        est, "POST", "simpleenroll", label="certonly", body=b64(der), headers=PKCS10, auth=BASIC
    )
    assert_text_error(response, body, 403)


async def test_revoked_client_certificate_403(est: Est) -> None:
    cert, cert_pem, key_pem = await enroll(est)
    await est.services.authority.revoke_serial(f"{cert.serial_number:x}", 1)
    der, _ = make_csr()
    response, body = await request(
        est,
        "POST",
        "simpleenroll",
        label="certonly",
        body=b64(der),
        headers=PKCS10,
        ssl_context=est.ssl(cert_pem, key_pem),
    )
    assert_text_error(response, body, 403)


# -- re-enrollment (RFC 7030 §4.2.2) ------------------------------------------------------------


async def test_simplereenroll_rekey(est: Est) -> None:
    cert, cert_pem, key_pem = await enroll(est, "device-9")
    der, _ = make_csr("device-9")
    response, body = await request(
        est,
        "POST",
        "simplereenroll",
        body=b64(der),
        headers=PKCS10,
        ssl_context=est.ssl(cert_pem, key_pem),
    )
    assert response.status == 200, body
    (renewed,) = certificates(body)
    assert renewed.subject == cert.subject
    assert renewed.serial_number != cert.serial_number


async def test_simplereenroll_without_certificate_403(est: Est) -> None:
    der, _ = make_csr()
    response, body = await request(
        est, "POST", "simplereenroll", body=b64(der), headers=PKCS10, auth=BASIC
    )
    assert_text_error(response, body, 403)


async def test_simplereenroll_other_subject_403(est: Est) -> None:
    _, cert_pem, key_pem = await enroll(est, "device-9")
    der, _ = make_csr("someone-else")
    response, body = await request(
        est,
        "POST",
        "simplereenroll",
        body=b64(der),
        headers=PKCS10,
        ssl_context=est.ssl(cert_pem, key_pem),
    )
    assert_text_error(response, body, 403)


async def test_simplereenroll_key_policy(est: Est) -> None:
    _, cert_pem, key_pem = await enroll(est, "device-9")
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    client = est.ssl(cert_pem, key_pem)
    same_key, _ = make_csr("device-9", key=key)
    new_key, _ = make_csr("device-9")
    cases = [("certonly", new_key, 403), ("newkey", same_key, 403), ("certonly", same_key, 200)]
    for label, der, status in cases:
        response, body = await request(
            est,
            "POST",
            "simplereenroll",
            label=label,
            body=b64(der),
            headers=PKCS10,
            ssl_context=client,
        )
        assert response.status == status, (label, body)
