"""Loopback TLS servers serving given certificates, and a webhook receiver, for renewal tests."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass
class TlsServers:
    tmp: Path
    servers: list[asyncio.Server] = field(default_factory=list)

    async def serve(self, label: str, chain_pem: bytes, key: PrivateKeyTypes) -> int:
        """A TLS server on 127.0.0.1 that completes handshakes and closes; returns its port."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.set_ciphers("ALL:@SECLEVEL=0")  # an RSA-1024 certificate must load
        (self.tmp / f"{label}.pem").write_bytes(chain_pem)
        (self.tmp / f"{label}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        ctx.load_cert_chain(self.tmp / f"{label}.pem", self.tmp / f"{label}.key")

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read(1)
            except (ConnectionError, ssl.SSLError):
                pass
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


@dataclass
class WebhookReceiver:
    url: str
    events: list[dict[str, Any]]


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    events: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        events.append(json.loads(await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield WebhookReceiver(f"http://127.0.0.1:{port}/hook", events)
    finally:
        await runner.cleanup()
