"""EST manual approval (RFC 7030 §4.2.3: 202 + Retry-After, the same CSR re-posted) and
server-side key generation (RFC 7030 §4.4, plain PKCS#8 form), over the real app on a real TLS
socket (the fixtures of test_est.py)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import email
import email.policy
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from certyard import est_commands
from est_server.keygen import ASYMM_DECRYPT_KEY_ID, DECRYPT_KEY_ID
from storage.models import EstEnrollment, EstPending
from tests.integration.test_est import (  # noqa: F401 (est: a fixture)
    BASIC,
    PKCS10,
    Est,
    _start,
    assert_text_error,
    b64,
    certificates,
    est,
    est_template,
    make_csr,
    request,
)
from tests.support.acme_app import free_port
from tests.support.est_pki import csr_with


@pytest.fixture
async def held(est: Est) -> AsyncIterator[Est]:  # noqa: F811
    """The server with label "held" holding enrollments for approval (set from its settings,
    whether or not the process wiring passes the flag on)."""
    labels = dict(est.context.labels)
    labels["held"] = dataclasses.replace(labels["held"], approval=True)
    context = dataclasses.replace(est.context, labels=labels)
    port = free_port()
    server = await _start(est.services, context, port, est.server_ssl)
    try:
        yield dataclasses.replace(est, context=context, base=f"https://127.0.0.1:{port}")
    finally:
        await server.close()


def cli(server: Est, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``certyard est ...`` through its real parser, in process."""
    parser = argparse.ArgumentParser()
    est_commands.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["est", *argv])
    code = asyncio.run(est_commands.run(server.services.settings, args))
    return code, capsys.readouterr().out


async def acli(server: Est, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    # In a thread: the command runs its own event loop, as it does under the console script.
    return await asyncio.to_thread(cli, server, capsys, *argv)


async def post(
    server: Est, der: bytes, operation: str = "simpleenroll", label: str = "held"
) -> tuple[aiohttp.ClientResponse, bytes]:
    return await request(
        server, "POST", operation, label=label, body=b64(der), headers=PKCS10, auth=BASIC
    )


# -- manual approval -----------------------------------------------------------------------


async def test_approval_flow(held: Est, capsys: pytest.CaptureFixture[str]) -> None:
    der, key = make_csr("meter-9", dns=["meter-9.example.test"])
    response, body = await post(held, der)
    assert_text_error(response, body, 202)
    assert int(response.headers["Retry-After"]) > 0
    # Still pending: 202 again, and no second held request for the same CSR.
    response, body = await post(held, der)
    assert response.status == 202
    code, out = await acli(held, capsys, "pending", "--json")
    assert code == 0
    (line,) = out.splitlines()
    entry = json.loads(line)
    assert entry["label"] == "held" and entry["subject"] == "CN=meter-9"
    assert entry["identity"] == "basic:alice"
    code, out = await acli(held, capsys, "approve", entry["id"])
    assert code == 0 and "approved" in out
    assert (await acli(held, capsys, "pending", "--json"))[1] == ""
    response, body = await post(held, der)
    assert response.status == 200, body
    (cert,) = certificates(body)
    assert cert.public_key() == key.public_key()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "meter-9"
    # A device that lost the answer gets the same certificate, not a second one.
    response, again = await post(held, der)
    assert response.status == 200
    assert certificates(again) == [cert]
    async with held.services.sessions() as session:
        rows = (await session.execute(select(EstPending))).scalars().all()
        enrolled = (await session.execute(select(EstEnrollment))).scalars().all()
    assert [(r.state, r.decided_at is not None) for r in rows] == [("approved", True)]
    assert len(enrolled) == 1 and rows[0].certificate_id == enrolled[0].certificate_id
    # Deciding twice is an error.
    assert (await acli(held, capsys, "reject", entry["id"]))[0] == 1


async def test_rejected_403(held: Est, capsys: pytest.CaptureFixture[str]) -> None:
    der, _ = make_csr("rogue-1")
    assert (await post(held, der))[0].status == 202
    code, out = await acli(held, capsys, "pending")
    assert code == 0 and "CN=rogue-1" in out
    pending_id = out.split()[0]
    assert (await acli(held, capsys, "reject", pending_id))[0] == 0
    response, body = await post(held, der)
    assert_text_error(response, body, 403)
    # Another CSR is a new request.
    other, _ = make_csr("rogue-1")
    assert (await post(held, other))[0].status == 202


async def test_approval_needs_authentication(held: Est) -> None:
    der, _ = make_csr()
    response, body = await request(
        held, "POST", "simpleenroll", label="held", body=b64(der), headers=PKCS10
    )
    assert_text_error(response, body, 401)
    async with held.services.sessions() as session:
        assert (await session.execute(select(EstPending))).scalars().all() == []


async def test_unknown_id(est: Est, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert (await acli(est, capsys, "approve", "nope"))[0] == 1


# -- serverkeygen --------------------------------------------------------------------------


def parse_multipart(
    content_type: str, body: bytes
) -> tuple[ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, x509.Certificate]:
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.HTTP
    )
    assert message.is_multipart()
    parts = list(message.walk())[1:]
    assert [p.get_content_type() for p in parts] == ["application/pkcs8", "application/pkcs7-mime"]
    assert parts[1].get_param("smime-type") == "certs-only"
    # Content-Transfer-Encoding: base64 on each part (RFC 8951 §3.2).
    key_der, cms = (part.get_payload(decode=True) for part in parts)
    assert isinstance(key_der, bytes) and isinstance(cms, bytes)
    key = serialization.load_der_private_key(key_der, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    (cert,) = certificates(base64.b64encode(cms))
    return key, cert


async def test_serverkeygen_ec(est: Est) -> None:  # noqa: F811
    der, client_key = make_csr("cam-3", dns=["cam-3.example.test"])
    response, body = await post(est, der, "serverkeygen", label="default")
    assert response.status == 200, body
    assert response.content_type == "multipart/mixed"
    key, cert = parse_multipart(response.headers["Content-Type"], body)
    assert cert.public_key() == key.public_key() != client_key.public_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "cam-3"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["cam-3.example.test"]


async def test_serverkeygen_rsa_follows_csr(est: Est) -> None:  # noqa: F811
    der, _ = make_csr("legacy-1", key=rsa.generate_private_key(65537, 2048))
    response, body = await post(est, der, "serverkeygen", label="rsa")
    assert response.status == 200, body
    key, cert = parse_multipart(response.headers["Content-Type"], body)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert cert.public_key() == key.public_key()


async def test_serverkeygen_tls_server_403(est: Est) -> None:  # noqa: F811
    der, _ = make_csr("www", dns=["www.example.test"])
    response, body = await post(est, der, "serverkeygen", label="web")
    assert_text_error(response, body, 403)
    assert b"not allowed for TLS server certificates" in body


async def test_serverkeygen_unknown_symmetric_key_400(est: Est) -> None:  # noqa: F811
    """RFC 7030 §4.4.1.2 DecryptKeyIdentifier naming a key the label does not share."""
    der, _ = csr_with("enc-1", attributes=((DECRYPT_KEY_ID, b"kekid-01", True),))
    response, body = await post(est, der, "serverkeygen", label="default")
    assert_text_error(response, body, 400)


async def test_serverkeygen_encrypted_without_client_certificate_400(
    est: Est,  # noqa: F811
) -> None:
    """AsymmetricDecryptKeyIdentifier must name the TLS client certificate; Basic has none."""
    der, _ = csr_with("enc-2", attributes=((ASYMM_DECRYPT_KEY_ID, b"kekid-01", True),))
    response, body = await post(est, der, "serverkeygen", label="default")
    assert_text_error(response, body, 400)


async def test_serverkeygen_needs_auth_401(est: Est) -> None:  # noqa: F811
    der, _ = make_csr()
    response, body = await request(est, "POST", "serverkeygen", body=b64(der), headers=PKCS10)
    assert_text_error(response, body, 401)
