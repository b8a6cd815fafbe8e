"""Integration tests of the validation authority against real loopback servers.

Names resolve through :class:`TestDNSServer`; HTTP and TLS servers listen on 127.0.0.1 on
ephemeral ports passed in :class:`ValidationConfig`. ``deny_networks=()`` except in the deny tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import ipaddress
import random
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acme_server.va import (
    ValidationConfig,
    ValidationFailure,
    resolve_addresses,
    validate_dns01,
    validate_http01,
    validate_tlsalpn01,
)
from acme_server.va.policy import dns01_txt_value
from tests.support.dnsserver import TestDNSServer

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
KEY_AUTH = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
PATH = f"/.well-known/acme-challenge/{TOKEN}"
DEADLINE = 10.0  # no test waits longer than this for anything


@pytest.fixture
def dns_server(tmp_path: Path) -> Iterator[TestDNSServer]:
    server = TestDNSServer(txt_dir=tmp_path)
    server.start()
    yield server
    server.stop()


def config_for(dns_server: TestDNSServer, **changes: Any) -> ValidationConfig:
    """Names resolve through ``dns_server``; no deny list; short timeouts."""
    base = ValidationConfig(dns_resolvers=(dns_server.address,), deny_networks=(), timeout=2.0)
    return dataclasses.replace(base, **changes)


async def expect_failure(coro: Awaitable[object], kind: str) -> ValidationFailure:
    with pytest.raises(ValidationFailure) as info:
        async with asyncio.timeout(DEADLINE):
            await coro
    assert info.value.problem.type == kind, info.value.problem.detail
    return info.value


@asynccontextmanager
async def stream_server(
    ssl_context: ssl.SSLContext | None = None, on_accept: asyncio.Event | None = None
) -> AsyncIterator[int]:
    """A TCP (or TLS) server on 127.0.0.1 that accepts and never answers; yields its port.

    On exit every connection is closed and every handler awaited (with a deadline).
    """
    tasks: set[asyncio.Task[Any]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        writers.append(writer)
        if on_accept is not None:
            on_accept.set()
        try:
            await reader.read()  # returns at EOF, when the client gives up
        except OSError:
            pass
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        await server.wait_closed()
        async with asyncio.timeout(DEADLINE):
            await asyncio.gather(*tasks, return_exceptions=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- http-01 ------------------------------------------------------------------------------------


@dataclass
class HTTPServer:
    port: int
    requests: list[str] = field(default_factory=list)


Responder = Callable[[web.Request, HTTPServer], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def http_server(
    respond: Responder,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[HTTPServer]:
    """An aiohttp server whose every request is answered by ``respond(request, server)``."""
    server = HTTPServer(port=0)

    async def handler(request: web.Request) -> web.StreamResponse:
        server.requests.append(f"{request.host}{request.path_qs}")
        return await respond(request, server)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


def body(text: str | bytes, status: int = 200) -> Responder:
    async def respond(request: web.Request, server: HTTPServer) -> web.Response:
        return web.Response(body=text.encode() if isinstance(text, str) else text, status=status)

    return respond


async def test_http01_success(dns_server: TestDNSServer) -> None:
    async with http_server(body(KEY_AUTH + "\r\n")) as srv:
        config = config_for(dns_server, http01_port=srv.port)
        records = await validate_http01("Web.Example.TEST", TOKEN, KEY_AUTH, config)
    assert srv.requests == [f"web.example.test:{srv.port}{PATH}"]
    assert [r.to_json() for r in records] == [
        {
            "hostname": "web.example.test",
            "port": srv.port,
            "addressesResolved": ["127.0.0.1"],
            "addressUsed": "127.0.0.1",
            "url": f"http://web.example.test:{srv.port}{PATH}",
        }
    ]


async def test_http01_wrong_body(dns_server: TestDNSServer) -> None:
    async with http_server(body("not-the-key-authorization")) as srv:
        failure = await expect_failure(
            validate_http01(
                "a.test", TOKEN, KEY_AUTH, config_for(dns_server, http01_port=srv.port)
            ),
            "unauthorized",
        )
    assert (
        KEY_AUTH in failure.problem.detail and "not-the-key-authorization" in failure.problem.detail
    )
    assert len(failure.records) == 1


async def test_http01_not_found(dns_server: TestDNSServer) -> None:
    async with http_server(body("gone", status=404)) as srv:
        failure = await expect_failure(
            validate_http01(
                "a.test", TOKEN, KEY_AUTH, config_for(dns_server, http01_port=srv.port)
            ),
            "unauthorized",
        )
    assert "404" in failure.problem.detail


async def test_http01_body_too_large(dns_server: TestDNSServer) -> None:
    async with http_server(body(KEY_AUTH + " " * 200)) as srv:
        config = config_for(dns_server, http01_port=srv.port, http01_max_body=len(KEY_AUTH) + 10)
        failure = await expect_failure(
            validate_http01("a.test", TOKEN, KEY_AUTH, config), "unauthorized"
        )
    assert "larger than" in failure.problem.detail


async def test_http01_redirect_loop_stops_after_ten(dns_server: TestDNSServer) -> None:
    async def loop(request: web.Request, server: HTTPServer) -> web.Response:
        raise web.HTTPFound(f"http://loop.test:{server.port}{PATH}")

    async with http_server(loop) as srv:
        failure = await expect_failure(
            validate_http01(
                "a.test", TOKEN, KEY_AUTH, config_for(dns_server, http01_port=srv.port)
            ),
            "connection",
        )
    assert "too many redirects" in failure.problem.detail
    assert len(srv.requests) == 11  # the first request and ten redirects
    assert len(failure.records) == 11


async def test_http01_redirect_followed_across_names(dns_server: TestDNSServer) -> None:
    async def respond(request: web.Request, server: HTTPServer) -> web.Response:
        if request.host.startswith("a.test"):
            raise web.HTTPMovedPermanently(f"http://b.test:{server.port}/elsewhere")
        return web.Response(text=KEY_AUTH)

    async with http_server(respond) as srv:
        records = await validate_http01(
            "a.test", TOKEN, KEY_AUTH, config_for(dns_server, http01_port=srv.port)
        )
    assert [r.hostname for r in records] == ["a.test", "b.test"]
    assert records[1].url == f"http://b.test:{srv.port}/elsewhere"


@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("http://a.test:8081/x", "port 8081"),
        ("ftp://a.test/x", "'ftp'"),
        ("https://a.test:8443/x", "port 8443"),
    ],
)
async def test_http01_redirect_refused(
    dns_server: TestDNSServer, location: str, words: str
) -> None:
    async with http_server(redirect_to(location)) as srv:
        failure = await expect_failure(
            validate_http01(
                "a.test", TOKEN, KEY_AUTH, config_for(dns_server, http01_port=srv.port)
            ),
            "connection",
        )
    assert words in failure.problem.detail and "refused" in failure.problem.detail
    assert len(srv.requests) == 1


def redirect_to(location: str) -> Responder:
    async def respond(request: web.Request, server: HTTPServer) -> web.Response:
        raise web.HTTPFound(location)

    return respond


async def test_http01_default_deny_list_blocks_loopback(dns_server: TestDNSServer) -> None:
    async with http_server(body(KEY_AUTH)) as srv:
        config = ValidationConfig(
            dns_resolvers=(dns_server.address,), http01_port=srv.port, timeout=2.0
        )
        failure = await expect_failure(
            validate_http01("a.test", TOKEN, KEY_AUTH, config), "rejectedIdentifier"
        )
    assert "127.0.0.0/8" in failure.problem.detail
    assert srv.requests == []
    assert [r.address_used for r in failure.records] == [""]


async def test_http01_redirect_to_denied_address(dns_server: TestDNSServer) -> None:
    dns_server.set_a("internal.test", ["127.0.0.2"])
    deny = (ipaddress.ip_network("127.0.0.2/32"),)
    # Both servers use one port number (on two addresses), so the redirect's port is allowed.
    async with http_server(body(KEY_AUTH), host="127.0.0.2") as denied:
        port = denied.port
        async with http_server(
            redirect_to(f"http://internal.test:{port}{PATH}"), port=port
        ) as outer:
            config = config_for(dns_server, http01_port=port, deny_networks=deny)
            failure = await expect_failure(
                validate_http01("a.test", TOKEN, KEY_AUTH, config), "rejectedIdentifier"
            )
    assert denied.requests == [] and len(outer.requests) == 1
    assert [r.hostname for r in failure.records] == ["a.test", "internal.test"]
    assert failure.records[1].address_used == ""


async def test_http01_redirect_to_denied_ip_literal(dns_server: TestDNSServer) -> None:
    deny = (ipaddress.ip_network("127.0.0.2/32"),)
    async with http_server(body(KEY_AUTH), host="127.0.0.2") as denied:
        async with http_server(
            redirect_to(f"http://127.0.0.2:{denied.port}{PATH}"), port=denied.port
        ) as outer:
            config = config_for(dns_server, http01_port=outer.port, deny_networks=deny)
            failure = await expect_failure(
                validate_http01("a.test", TOKEN, KEY_AUTH, config), "rejectedIdentifier"
            )
    assert denied.requests == [] and "127.0.0.2" in failure.problem.detail


async def test_http01_name_behind_cnames(dns_server: TestDNSServer) -> None:
    # www.a.test -> cdn.test (configured, so answered in one response) -> edge.test (not
    # configured: the VA asks for it itself and gets the default A record, 127.0.0.1).
    dns_server.set_cname("www.a.test", "cdn.test")
    dns_server.set_cname("cdn.test", "edge.test")
    async with http_server(body(KEY_AUTH)) as srv:
        records = await validate_http01(
            "www.a.test", TOKEN, KEY_AUTH, config_for(dns_server, http01_port=srv.port)
        )
    assert records[0].address_used == "127.0.0.1"
    assert srv.requests == [f"www.a.test:{srv.port}{PATH}"]


async def test_http01_denied_addresses_are_skipped(dns_server: TestDNSServer) -> None:
    dns_server.set_a("mixed.test", ["127.0.0.2", "127.0.0.1"])
    deny = (ipaddress.ip_network("127.0.0.2/32"),)
    async with (
        http_server(body(KEY_AUTH), host="127.0.0.2") as denied,
        http_server(body(KEY_AUTH), port=denied.port) as srv,
    ):
        config = config_for(dns_server, http01_port=srv.port, deny_networks=deny)
        records = await validate_http01("mixed.test", TOKEN, KEY_AUTH, config)
    assert sorted(records[0].addresses_resolved) == ["127.0.0.1", "127.0.0.2"]
    assert records[0].address_used == "127.0.0.1"
    assert denied.requests == [] and len(srv.requests) == 1


async def test_http01_ipv6_first_then_ipv4_fallback(dns_server: TestDNSServer) -> None:
    dns_server.set_aaaa("dual.test", ["::1"])
    async with http_server(body(KEY_AUTH)) as srv:  # listens on 127.0.0.1 only
        config = config_for(dns_server, http01_port=srv.port)
        records = await validate_http01("dual.test", TOKEN, KEY_AUTH, config)
    assert [r.address_used for r in records] == ["::1", "127.0.0.1"]
    assert records[0].addresses_resolved == ("::1", "127.0.0.1")


async def test_http01_timeout(dns_server: TestDNSServer) -> None:
    accepted = asyncio.Event()
    async with stream_server(on_accept=accepted) as port:
        config = config_for(dns_server, http01_port=port, timeout=0.5)
        failure = await expect_failure(
            validate_http01("a.test", TOKEN, KEY_AUTH, config), "connection"
        )
    assert accepted.is_set()
    assert "timeout" in failure.problem.detail


async def test_http01_connection_refused(dns_server: TestDNSServer) -> None:
    port = free_port()
    failure = await expect_failure(
        validate_http01("a.test", TOKEN, KEY_AUTH, config_for(dns_server, http01_port=port)),
        "connection",
    )
    assert "connection refused" in failure.problem.detail


async def test_http01_dns_failure(dns_server: TestDNSServer) -> None:
    dns_server.set_servfail("broken.test")
    failure = await expect_failure(
        validate_http01("broken.test", TOKEN, KEY_AUTH, config_for(dns_server)), "dns"
    )
    assert "SERVFAIL" in failure.problem.detail


async def test_http01_https_redirect_without_verification(
    dns_server: TestDNSServer, tmp_path: Path
) -> None:
    """A redirect to https on port 443: SNI is the name, the certificate is not verified."""
    address = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"
    cert_file, key_file = write_cert(tmp_path, ["secure.test"], None)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    sni: list[str | None] = []
    ctx.sni_callback = lambda sock, name, context: sni.append(name)
    dns_server.set_a("secure.test", [address])
    try:
        secure_cm = http_server(body(KEY_AUTH), host=address, port=443, ssl_context=ctx)
        secure = await secure_cm.__aenter__()
    except OSError as exc:  # port 443 needs privileges
        pytest.skip(f"cannot listen on {address}:443: {exc}")
    try:
        async with http_server(redirect_to(f"https://secure.test{PATH}")) as srv:
            records = await validate_http01(
                "a.test", TOKEN, KEY_AUTH, config_for(dns_server, http01_port=srv.port)
            )
    finally:
        await secure_cm.__aexit__(None, None, None)
    assert secure.requests == [f"secure.test{PATH}"] and sni == ["secure.test"]
    assert records[-1].to_json()["url"] == f"https://secure.test{PATH}"
    assert records[-1].address_used == address


# -- dns-01 -------------------------------------------------------------------------------------

EXPECTED_TXT = dns01_txt_value(KEY_AUTH)


async def test_dns01_success(dns_server: TestDNSServer) -> None:
    dns_server.set_txt("_acme-challenge.d.test", ["something-else", EXPECTED_TXT])
    records = await validate_dns01("D.test", KEY_AUTH, config_for(dns_server))
    assert records[0].hostname == "d.test"
    assert f"{records[0].address_used}:{records[0].port}" == dns_server.address


async def test_dns01_success_via_cname(dns_server: TestDNSServer) -> None:
    dns_server.set_cname("_acme-challenge.d.test", "d.validation.test")
    dns_server.set_txt("d.validation.test", [EXPECTED_TXT])
    await validate_dns01("d.test", KEY_AUTH, config_for(dns_server))


async def test_dns01_follows_cname_the_server_does_not_resolve(
    dns_server: TestDNSServer, tmp_path: Path
) -> None:
    # The target is not configured in the tables, so the answer stops at the CNAME chain
    # and the VA queries the target itself (which answers from the txt_dir file).
    dns_server.set_cname("_acme-challenge.d.test", "hop1.test")
    dns_server.set_cname("hop1.test", "elsewhere.test")
    (tmp_path / "elsewhere.test").write_text(EXPECTED_TXT + "\n")
    await validate_dns01("d.test", KEY_AUTH, config_for(dns_server))


async def test_dns01_cname_loop(dns_server: TestDNSServer) -> None:
    dns_server.set_cname("_acme-challenge.d.test", "loop1.test")
    dns_server.set_cname("loop1.test", "_acme-challenge.d.test")
    await expect_failure(validate_dns01("d.test", KEY_AUTH, config_for(dns_server)), "dns")


async def test_dns01_wrong_value(dns_server: TestDNSServer) -> None:
    dns_server.set_txt("_acme-challenge.d.test", ["wrong-value", "another"])
    failure = await expect_failure(
        validate_dns01("d.test", KEY_AUTH, config_for(dns_server)), "unauthorized"
    )
    detail = failure.problem.detail
    assert ("wrong-value" in detail or "another" in detail) and "(and 1 more)" in detail


async def test_dns01_missing(dns_server: TestDNSServer) -> None:
    failure = await expect_failure(
        validate_dns01("d.test", KEY_AUTH, config_for(dns_server)), "dns"
    )
    assert failure.problem.detail == "No TXT record found at _acme-challenge.d.test"


async def test_dns01_servfail(dns_server: TestDNSServer) -> None:
    dns_server.set_servfail("_acme-challenge.d.test")
    failure = await expect_failure(
        validate_dns01("d.test", KEY_AUTH, config_for(dns_server)), "dns"
    )
    assert "SERVFAIL" in failure.problem.detail
    assert dns_server.address not in failure.problem.detail


async def test_dns01_txt_dir_file(dns_server: TestDNSServer, tmp_path: Path) -> None:
    path = tmp_path / "_acme-challenge.hook.test"
    path.write_text("old-value\n" + EXPECTED_TXT + "\n")
    await validate_dns01("hook.test", KEY_AUTH, config_for(dns_server))
    path.unlink()
    await expect_failure(validate_dns01("hook.test", KEY_AUTH, config_for(dns_server)), "dns")


async def test_dns01_large_answer_over_tcp(dns_server: TestDNSServer) -> None:
    # More than 512 bytes of TXT: the UDP answer is truncated and the resolver retries on TCP.
    filler = [f"{i:02d}" + "x" * 60 for i in range(20)]
    dns_server.set_txt("_acme-challenge.big.test", [*filler, EXPECTED_TXT])
    await validate_dns01("big.test", KEY_AUTH, config_for(dns_server))


async def test_dns01_value_split_in_character_strings(dns_server: TestDNSServer) -> None:
    dns_server.set_txt("_acme-challenge.long.test", ["y" * 300])
    failure = await expect_failure(
        validate_dns01("long.test", KEY_AUTH, config_for(dns_server)), "unauthorized"
    )
    assert "y" * 64 in failure.problem.detail  # the 255 + 45 byte strings were joined


async def test_dns01_resolver_unreachable() -> None:
    sock_server = TestDNSServer()
    sock_server.start()
    address = sock_server.address
    sock_server.stop()
    config = ValidationConfig(dns_resolvers=(address,), deny_networks=(), timeout=0.5)
    await expect_failure(validate_dns01("d.test", KEY_AUTH, config), "dns")


async def test_resolve_addresses(dns_server: TestDNSServer) -> None:
    dns_server.set_a("r.test", ["127.0.0.1", "127.0.0.2"])
    dns_server.set_aaaa("r.test", ["::1"])
    config = config_for(dns_server, deny_networks=(ipaddress.ip_network("127.0.0.2/32"),))
    found = await resolve_addresses("r.test", config)
    assert [str(a) for a in found] == ["::1", "127.0.0.1"]
    dns_server.set_a("none.test", [])
    await expect_failure(resolve_addresses("none.test", config), "dns")


# -- tls-alpn-01 --------------------------------------------------------------------------------

ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")


def write_cert(
    tmp_path: Path, names: list[str], digest: bytes | None, critical: bool = True
) -> tuple[Path, Path]:
    """A self-signed certificate (RFC 8737 §3 shape when ``digest`` is given) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme validation")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
    )
    if digest is not None:
        ext = x509.UnrecognizedExtension(ACME_IDENTIFIER, b"\x04\x20" + digest)
        builder = builder.add_extension(ext, critical=critical)
    cert = builder.sign(key, hashes.SHA256())
    cert_file, key_file = tmp_path / f"cert{id(cert)}.pem", tmp_path / f"key{id(cert)}.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class TLSServer:
    port: int
    sni: list[str | None] = field(default_factory=list)


@asynccontextmanager
async def tls_server(
    tmp_path: Path,
    names: list[str],
    digest: bytes | None,
    critical: bool = True,
    alpn: list[str] | None = None,
) -> AsyncIterator[TLSServer]:
    cert_file, key_file = write_cert(tmp_path, names, digest, critical)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    ctx.set_alpn_protocols(alpn if alpn is not None else ["acme-tls/1"])
    state = TLSServer(port=0)
    ctx.sni_callback = lambda sock, name, context: state.sni.append(name)
    async with stream_server(ssl_context=ctx) as port:
        state.port = port
        yield state


DIGEST = hashlib.sha256(KEY_AUTH.encode()).digest()


async def test_tlsalpn01_success(dns_server: TestDNSServer, tmp_path: Path) -> None:
    async with tls_server(tmp_path, ["Tls.Test"], DIGEST) as srv:
        config = config_for(dns_server, tlsalpn01_port=srv.port)
        records = await validate_tlsalpn01("tls.test", KEY_AUTH, config)
    assert srv.sni == ["tls.test"]
    assert records[0].to_json() == {
        "hostname": "tls.test",
        "port": srv.port,
        "addressesResolved": ["127.0.0.1"],
        "addressUsed": "127.0.0.1",
    }


@pytest.mark.parametrize(
    ("names", "digest", "critical", "words"),
    [
        (["tls.test"], hashlib.sha256(b"other").digest(), True, "does not match"),
        (["tls.test"], DIGEST, False, "non-critical"),
        (["tls.test", "www.tls.test"], DIGEST, True, "exactly one"),
        (["other.test"], DIGEST, True, "not 'tls.test'"),
        (["tls.test"], None, True, "no acmeIdentifier"),
    ],
)
async def test_tlsalpn01_bad_certificate(
    dns_server: TestDNSServer,
    tmp_path: Path,
    names: list[str],
    digest: bytes | None,
    critical: bool,
    words: str,
) -> None:
    async with tls_server(tmp_path, names, digest, critical) as srv:
        config = config_for(dns_server, tlsalpn01_port=srv.port)
        failure = await expect_failure(
            validate_tlsalpn01("tls.test", KEY_AUTH, config), "unauthorized"
        )
    assert words in failure.problem.detail


@pytest.mark.parametrize("alpn", [["http/1.1"], []])
async def test_tlsalpn01_server_without_acme_tls(
    dns_server: TestDNSServer, tmp_path: Path, alpn: list[str]
) -> None:
    async with tls_server(tmp_path, ["tls.test"], DIGEST, alpn=alpn) as srv:
        config = config_for(dns_server, tlsalpn01_port=srv.port)
        await expect_failure(validate_tlsalpn01("tls.test", KEY_AUTH, config), "tls")


async def test_tlsalpn01_server_never_speaks_tls(dns_server: TestDNSServer) -> None:
    async with stream_server() as port:
        config = config_for(dns_server, tlsalpn01_port=port, timeout=0.5)
        with pytest.raises(ValidationFailure) as info:
            async with asyncio.timeout(3):  # fails within (a small multiple of) the timeout
                await validate_tlsalpn01("tls.test", KEY_AUTH, config)
    assert info.value.problem.type in {"connection", "tls"}
    assert info.value.records[0].address_used == "127.0.0.1"


async def test_tlsalpn01_deny_list(dns_server: TestDNSServer, tmp_path: Path) -> None:
    async with tls_server(tmp_path, ["tls.test"], DIGEST) as srv:
        config = ValidationConfig(
            dns_resolvers=(dns_server.address,), tlsalpn01_port=srv.port, timeout=2.0
        )
        await expect_failure(validate_tlsalpn01("tls.test", KEY_AUTH, config), "rejectedIdentifier")
    assert srv.sni == []
