"""Run certyard's ACME application in the test process, on a real socket, over a real database."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from acme_server.context import AcmeContext
from acme_server.validation_worker import ValidationWorker
from certyard.health import HealthChecks
from certyard.server import build_acme_context, build_https_app
from certyard.settings import load_settings
from certyard.wiring import Services, build_services
from tests.support.acme_client import AcmeTestClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningAcme:
    services: Services
    context: AcmeContext
    base_url: str
    http: aiohttp.ClientSession

    @property
    def directory_url(self) -> str:
        return f"{self.base_url}/acme/directory"

    async def client(self) -> AcmeTestClient:
        client = AcmeTestClient(self.http, self.directory_url)
        await client.load_directory()
        return client


@asynccontextmanager
async def running_acme(
    db_url: str, data_dir: Path, *, dns_address: str | None = None, **acme: Any
) -> AsyncIterator[RunningAcme]:
    port = free_port()
    acme_settings: dict[str, Any] = {"validation_deny": [], **acme}
    if dns_address:
        acme_settings["dns_resolvers"] = [dns_address]
    # In process, the software key backend: a PKCS#11 module is process-wide state, and the
    # HSM path is covered by the certyard serve processes of the interop and process tests.
    settings = load_settings(
        server={"data_dir": data_dir, "public_url": f"http://127.0.0.1:{port}", "http_listen": ""},
        database={"url": db_url},
        ca={"backend": "software"},
        acme=acme_settings,
    )
    services = await build_services(settings)
    workers: list[ValidationWorker] = []
    context = build_acme_context(services, workers)
    worker = ValidationWorker(context, 4)
    workers.append(worker)
    app = build_https_app(context, HealthChecks(services.engine, services.backend))
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    worker.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield RunningAcme(services, context, f"http://127.0.0.1:{port}", http)
    finally:
        await worker.stop()
        await server.close()
        await services.close()
