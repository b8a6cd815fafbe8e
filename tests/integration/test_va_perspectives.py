"""Multi-perspective validation: remote ``certyard va-agent`` processes over mutual TLS.

Two agents run as real subprocesses, each with its own DNS resolver (a TestDNSServer of its
own), so a test can make one perspective see a different TXT record from the other. The ACME
server runs in process and asks both agents after its own validation succeeded.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.acme_app import running_acme
from tests.support.acme_client import AcmeTestClient, thumbprint_key_authorization
from tests.support.dnsserver import TestDNSServer
from tests.support.server import certyard_command, free_port
from tests.support.tools import REPO_ROOT

# -- a small PKI ------------------------------------------------------------------------------


@dataclass
class Issued:
    cert: Path
    key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class MiniCA:
    def __init__(self, directory: Path, name: str) -> None:
        self.dir = directory
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pem = directory / f"{name}.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, *, server: bool, ips: tuple[str, ...] = ()) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", *ips)),
                    ]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(self.dir / f"{self.name}-{name}.pem", self.dir / f"{self.name}-{name}.key")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(issued.key, key)
        return issued


@dataclass
class Pki:
    ca: MiniCA  # issues the agents' and the server's certificates
    rogue: MiniCA  # trusted by nobody
    server_client: Issued  # the ACME server's client certificate
    agent: Issued  # the agents' server certificate
    rogue_agent: Issued
    rogue_client: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = MiniCA(directory, "va-ca")
    rogue = MiniCA(directory, "rogue-ca")
    return Pki(
        ca=ca,
        rogue=rogue,
        server_client=ca.issue("acme-server", server=False),
        agent=ca.issue("agent", server=True),
        rogue_agent=rogue.issue("agent", server=True),
        rogue_client=rogue.issue("client", server=False),
    )


# -- agents as subprocesses -------------------------------------------------------------------


@dataclass
class Agent:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def _start_agent(name: str, dns: TestDNSServer, cert: Issued, client_ca: Path, logs: Path) -> Agent:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CERTYARD__")}
    env.update(
        {
            "CERTYARD__ACME__DNS_RESOLVERS": json.dumps([dns.address]),
            "CERTYARD__ACME__VALIDATION_DENY": "[]",
            "CERTYARD__ACME__VALIDATION_TIMEOUT_SECONDS": "3",
            "CERTYARD__SERVER__DATA_DIR": str(logs),
            "CERTYARD__LOG__FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
    )
    log = logs / f"agent-{name}.log"
    command = [
        *certyard_command(),
        "va-agent",
        "--listen",
        f"127.0.0.1:{port}",
        "--cert",
        str(cert.cert),
        "--key",
        str(cert.key),
        "--ca",
        str(client_ca),
        "--name",
        name,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"agent {name} exited: {log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return Agent(name, port, process, log)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"agent {name} did not start: {log.read_text()[-3000:]}")


def _stop_agent(agent: Agent) -> None:
    agent.process.terminate()
    try:
        agent.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        agent.process.kill()
        agent.process.wait()


@pytest.fixture(scope="module")
def dns_a() -> Iterator[TestDNSServer]:
    server = TestDNSServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dns_b() -> Iterator[TestDNSServer]:
    server = TestDNSServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def agents(
    pki: Pki,
    dns_a: TestDNSServer,
    dns_b: TestDNSServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Agent]]:
    logs = tmp_path_factory.mktemp("agents")
    started: dict[str, Agent] = {}
    try:
        started["a"] = _start_agent("a", dns_a, pki.agent, pki.ca.pem, logs)
        started["b"] = _start_agent("b", dns_b, pki.agent, pki.ca.pem, logs)
        # Trusts our client CA, but presents a certificate the server does not trust.
        started["rogue"] = _start_agent("rogue", dns_a, pki.rogue_agent, pki.ca.pem, logs)
        yield started
    finally:
        for agent in started.values():
            _stop_agent(agent)


def _acme_settings(pki: Pki, agents: list[Agent], quorum: int) -> dict[str, Any]:
    return {
        "va_agents": [{"name": agent.name, "url": agent.url} for agent in agents],
        "va_quorum": quorum,
        "va_client_cert": pki.server_client.cert,
        "va_client_key": pki.server_client.key,
        "va_ca_file": pki.ca.pem,
        "va_timeout_seconds": 10,
        "validation_timeout_seconds": 3,
    }


def _txt_value(key_auth: str) -> str:
    digest = hashlib.sha256(key_auth.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


async def _dns01(
    client: AcmeTestClient,
    name: str,
    dns_a: TestDNSServer,
    dns_b: TestDNSServer,
    *,
    b_value: str | None = None,
) -> dict[str, Any]:
    """Order ``name``, publish its dns-01 TXT record (``b_value`` on B's DNS when given),
    answer the challenge and return the final authorization."""
    reply = await client.new_order([name])
    assert reply.status == 201, reply.body
    authz_url = reply.json()["authorizations"][0]
    authz = (await client.get(authz_url)).json()
    chall = next(c for c in authz["challenges"] if c["type"] == "dns-01")
    value = _txt_value(thumbprint_key_authorization(chall["token"], client.key))
    dns_a.set_txt(f"_acme-challenge.{name}", [value])
    dns_b.set_txt(f"_acme-challenge.{name}", [b_value or value])
    assert (await client.post(chall["url"], {})).status == 200
    result: dict[str, Any] = await client.poll(authz_url, {"valid", "invalid"})
    return result


def _error(authz: dict[str, Any]) -> dict[str, Any]:
    chall = next(c for c in authz["challenges"] if c["type"] == "dns-01")
    error: dict[str, Any] = chall["error"]
    return error


async def test_both_perspectives_agree(
    db_url: str,
    tmp_path: Path,
    pki: Pki,
    agents: dict[str, Agent],
    dns_a: TestDNSServer,
    dns_b: TestDNSServer,
) -> None:
    settings = _acme_settings(pki, [agents["a"], agents["b"]], 2)
    async with running_acme(db_url, tmp_path / "d", dns_address=dns_a.address, **settings) as acme:
        client = await acme.client()
        await client.register()
        authz = await _dns01(client, "both.mpic.test", dns_a, dns_b)
        assert authz["status"] == "valid", authz


@pytest.mark.parametrize("quorum, expected", [(2, "invalid"), (1, "valid")])
async def test_one_perspective_sees_a_wrong_txt(
    db_url: str,
    tmp_path: Path,
    pki: Pki,
    agents: dict[str, Agent],
    dns_a: TestDNSServer,
    dns_b: TestDNSServer,
    quorum: int,
    expected: str,
) -> None:
    settings = _acme_settings(pki, [agents["a"], agents["b"]], quorum)
    async with running_acme(db_url, tmp_path / "d", dns_address=dns_a.address, **settings) as acme:
        client = await acme.client()
        await client.register()
        name = f"split{quorum}.mpic.test"
        authz = await _dns01(client, name, dns_a, dns_b, b_value="not-the-right-value")
        assert authz["status"] == expected, authz
        if expected == "invalid":
            error = _error(authz)
            assert error["type"] == "urn:ietf:params:acme:error:unauthorized"
            detail = error["detail"]
            assert "1 of 2 remote perspectives agreed, 2 required" in detail
            assert "perspective b: unauthorized: Incorrect TXT record 'not-the-right-value'" in (
                detail
            )
            assert f"_acme-challenge.{name}" in detail
            assert "perspective a: ok" in detail


async def test_untrusted_or_unreachable_agent_counts_as_disagreement(
    db_url: str,
    tmp_path: Path,
    pki: Pki,
    agents: dict[str, Agent],
    dns_a: TestDNSServer,
    dns_b: TestDNSServer,
) -> None:
    settings = _acme_settings(pki, [agents["a"], agents["rogue"]], 2)
    # A third perspective where nothing listens.
    settings["va_agents"].append({"name": "gone", "url": f"https://127.0.0.1:{free_port()}"})
    async with running_acme(db_url, tmp_path / "d", dns_address=dns_a.address, **settings) as acme:
        client = await acme.client()
        await client.register()
        authz = await _dns01(client, "rogue.mpic.test", dns_a, dns_b)
        assert authz["status"] == "invalid", authz
        detail = _error(authz)["detail"]
        assert "1 of 3 remote perspectives agreed, 2 required" in detail, detail
        assert "perspective rogue: TLS failed (certificate verify failed)" in detail, detail
        assert "perspective gone: unreachable" in detail, detail
        assert "perspective a: ok" in detail


def _client_context(pki: Pki, client: Issued | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.pem))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


async def _post(url: str, context: ssl.SSLContext, doc: object) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/validate", json=doc, ssl=context) as resp:
            return resp.status, await resp.json()


async def test_agent_requires_a_trusted_client_certificate(
    pki: Pki, agents: dict[str, Agent], dns_a: TestDNSServer
) -> None:
    url = agents["a"].url
    token = "tok_en-1"
    key_auth = f"{token}.thumbprint"
    dns_a.set_txt("_acme-challenge.direct.mpic.test", [_txt_value(key_auth)])
    request = {
        "type": "dns-01",
        "identifier": "direct.mpic.test",
        "token": token,
        "key_authorization": key_auth,
        "account_url": None,
    }
    for context in (_client_context(pki, None), _client_context(pki, pki.rogue_client)):
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, OSError)):
            await _post(url, context, request)
    # With our client certificate: the protocol works, and bad input is a precise 400.
    status, doc = await _post(url, _client_context(pki, pki.server_client), request)
    assert status == 200 and doc["ok"] is True, doc
    assert doc["records"][0]["hostname"] == "direct.mpic.test"
    status, doc = await _post(
        url, _client_context(pki, pki.server_client), {**request, "type": "smtp-01"}
    )
    assert status == 400 and doc["ok"] is False
    assert "unknown challenge type" in doc["problem"]["detail"]
