"""IP identifiers (RFC 8738) through the ACME flow in process: http-01 at the address and
tls-alpn-01 with the reverse-mapping SNI name and an iPAddress SAN (lego 4.9 in the interop
suite cannot order IP identifiers; certbot's --ip-address run is in tests/interop)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.acme_app import RunningAcme, free_port, running_acme
from tests.support.acme_client import AcmeTestClient, thumbprint_key_authorization
from tests.support.http01 import Responder

ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")


class AlpnResponder:
    """A tls-alpn-01 responder for one IP identifier (RFC 8737 §3, RFC 8738 §6)."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.tmp_path = tmp_path
        self.seen_sni: list[str | None] = []
        self._server: asyncio.AbstractServer | None = None

    async def start(self, ip: str, key_authorization: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        digest = hashlib.sha256(key_authorization.encode()).digest()
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme")]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme")]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False
            )
            .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER, b"\x04\x20" + digest), True)
            .sign(key, hashes.SHA256())
        )
        cert_path, key_path = self.tmp_path / "alpn.pem", self.tmp_path / "alpn.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path)
        ctx.set_alpn_protocols(["acme-tls/1"])

        def sni(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            self.seen_sni.append(name)

        ctx.sni_callback = sni  # type: ignore[assignment]

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        self._server = await asyncio.start_server(handle, "127.0.0.1", self.port, ssl=ctx)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def alpn(tmp_path: Path) -> AsyncIterator[AlpnResponder]:
    r = AlpnResponder(tmp_path)
    yield r
    await r.stop()


@pytest.fixture
async def acme(
    db_url: str, tmp_path: Path, responder: Responder, alpn: AlpnResponder
) -> AsyncIterator[RunningAcme]:
    async with running_acme(
        db_url,
        tmp_path / "data",
        http01_port=responder.port,
        tlsalpn01_port=alpn.port,
        validation_timeout_seconds=3,
    ) as running:
        yield running


@pytest.fixture
async def client(acme: RunningAcme) -> AcmeTestClient:
    c = await acme.client()
    assert (await c.register()).status == 201
    return c


async def _ip_order(client: AcmeTestClient) -> tuple[str, dict[str, object]]:
    reply = await client.post(
        client.directory["newOrder"], {"identifiers": [{"type": "ip", "value": "127.0.0.1"}]}
    )
    assert reply.status == 201, reply.body
    authz = (await client.get(reply.json()["authorizations"][0])).json()
    assert authz["identifier"] == {"type": "ip", "value": "127.0.0.1"}
    assert {c["type"] for c in authz["challenges"]} == {"http-01", "tls-alpn-01"}
    return reply.headers["Location"], authz


async def _finalize(client: AcmeTestClient, order_url: str) -> x509.Certificate:
    order = await client.poll(order_url, {"ready", "invalid"})
    assert order["status"] == "ready", order
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
        .sign(key, hashes.SHA256())
    )
    from tests.support.acme_client import csr_field

    der = csr.public_bytes(serialization.Encoding.DER)
    await client.post(order["finalize"], {"csr": csr_field(der)})
    order = await client.poll(order_url, {"valid", "invalid"})
    return x509.load_pem_x509_certificates((await client.get(order["certificate"])).body)[0]


def _ips(cert: x509.Certificate) -> list[str]:
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == []
    return [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]


async def test_ip_identifier_with_http01(client: AcmeTestClient, responder: Responder) -> None:
    order_url, authz = await _ip_order(client)
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")  # type: ignore[union-attr]
    responder.tokens[chall["token"]] = thumbprint_key_authorization(chall["token"], client.key)
    await client.post(chall["url"], {})
    assert _ips(await _finalize(client, order_url)) == ["127.0.0.1"]


async def test_ip_identifier_with_tlsalpn01(client: AcmeTestClient, alpn: AlpnResponder) -> None:
    order_url, authz = await _ip_order(client)
    chall = next(c for c in authz["challenges"] if c["type"] == "tls-alpn-01")  # type: ignore[union-attr]
    await alpn.start("127.0.0.1", thumbprint_key_authorization(chall["token"], client.key))
    await client.post(chall["url"], {})
    assert _ips(await _finalize(client, order_url)) == ["127.0.0.1"]
    # RFC 8738 §6: the SNI was the reverse-mapping name, not the address.
    assert "1.0.0.127.in-addr.arpa" in alpn.seen_sni


async def test_csr_must_name_the_ip(client: AcmeTestClient, responder: Responder) -> None:
    order_url, authz = await _ip_order(client)
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")  # type: ignore[union-attr]
    responder.tokens[chall["token"]] = thumbprint_key_authorization(chall["token"], client.key)
    await client.post(chall["url"], {})
    order = await client.poll(order_url, {"ready"})
    from tests.support.acme_client import csr_field, make_csr

    der, _ = make_csr(["127.0.0.1.example.test"])
    reply = await client.post(order["finalize"], {"csr": csr_field(der)})
    assert reply.problem_type == "badCSR"
