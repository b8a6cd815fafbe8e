"""A real ACME issuance through certyard's ACME application with the metrics middleware (as
``certyard serve`` mounts it): requests are labelled by route template, the http-01 check and
the CA's signatures are counted, and promtool accepts the result."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import generate_latest

from acme_server.app import create_app
from acme_server.urls import PREFIX
from acme_server.validation_worker import ValidationWorker
from certyard.metrics import REGISTRY
from certyard.metrics_http import instrument
from certyard.server import build_acme_context
from certyard.settings import load_settings
from certyard.wiring import build_services
from tests.support.acme_client import (
    AcmeTestClient,
    csr_field,
    make_csr,
    thumbprint_key_authorization,
)
from tests.support.dnsserver import TestDNSServer
from tests.support.http01 import Responder
from tests.support.server import free_port
from tests.support.tools import require_tool

pytestmark = pytest.mark.timeout(120)


def requests(endpoint: str, method: str, status: str) -> float:
    labels = {"protocol": "acme", "endpoint": endpoint, "method": method, "status": status}
    return REGISTRY.get_sample_value("certyard_http_requests_total", labels) or 0.0


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def acme_client(
    tmp_path: Path, dns: TestDNSServer, responder: Responder
) -> AsyncIterator[AcmeTestClient]:
    port = free_port()
    settings = load_settings(
        server={
            "data_dir": tmp_path / "data",
            "public_url": f"http://127.0.0.1:{port}",
            "http_listen": "",
        },
        database={"url": f"sqlite+aiosqlite:///{tmp_path}/certyard.db"},
        ca={"backend": "software"},  # in process: a PKCS#11 module is process-wide state
        acme={
            "validation_deny": [],
            "dns_resolvers": [dns.address],
            "http01_port": responder.port,
            "validation_timeout_seconds": 3,
        },
    )
    services = await build_services(settings)
    workers: list[ValidationWorker] = []
    context = build_acme_context(services, workers)
    worker = ValidationWorker(context, 2)
    workers.append(worker)
    root = web.Application()
    root.add_subapp(PREFIX, instrument(create_app(context), "acme"))
    server = TestServer(root, host="127.0.0.1", port=port)
    await server.start_server()
    worker.start()
    try:
        async with aiohttp.ClientSession() as http:
            client = AcmeTestClient(http, f"http://127.0.0.1:{port}{PREFIX}/directory")
            await client.load_directory()
            yield client
    finally:
        await worker.stop()
        await server.close()
        await services.close()


async def test_acme_issuance_is_measured(acme_client: AcmeTestClient, responder: Responder) -> None:
    client = acme_client
    order_tpl, finalize_tpl = f"{PREFIX}/order/{{id}}", f"{PREFIX}/order/{{id}}/finalize"
    before = {
        "account": requests(f"{PREFIX}/new-account", "POST", "201"),
        "order": requests(order_tpl, "POST", "200"),
        "finalize": requests(finalize_tpl, "POST", "200"),
        "valid": sample(
            "certyard_validations_total", challenge_type="http-01", outcome="valid", problem="none"
        ),
        "sign": sample(
            "certyard_hsm_operation_duration_seconds_count", backend="software", operation="sign"
        ),
    }

    assert (await client.register()).status == 201
    reply = await client.new_order(["www.example.test"])
    assert reply.status == 201, reply.body
    order_url = reply.headers["Location"]
    authz_url = reply.json()["authorizations"][0]
    authz = (await client.get(authz_url)).json()
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    responder.tokens[chall["token"]] = thumbprint_key_authorization(chall["token"], client.key)
    assert (await client.post(chall["url"], {})).status == 200
    assert (await client.poll(order_url, {"ready", "invalid"}))["status"] == "ready"
    der, _ = make_csr(["www.example.test"])
    order = await client.poll(order_url, {"ready"})
    assert (await client.post(order["finalize"], {"csr": csr_field(der)})).status == 200
    order = await client.poll(order_url, {"valid", "invalid"})
    assert order["status"] == "valid"

    assert requests(f"{PREFIX}/new-account", "POST", "201") == before["account"] + 1
    assert requests(order_tpl, "POST", "200") > before["order"]
    assert requests(finalize_tpl, "POST", "200") == before["finalize"] + 1
    assert (
        sample(
            "certyard_validations_total", challenge_type="http-01", outcome="valid", problem="none"
        )
        == before["valid"] + 1
    )
    signed = sample(
        "certyard_hsm_operation_duration_seconds_count", backend="software", operation="sign"
    )
    assert signed > before["sign"]  # the leaf certificate, at least

    exposition = generate_latest(REGISTRY)
    order_id = order_url.rsplit("/", 1)[1]
    assert order_id.encode() not in exposition  # ids never become label values
    promtool = await asyncio.create_subprocess_exec(
        require_tool("promtool"),
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(promtool.communicate(exposition), 60)
    assert promtool.returncode == 0, output.decode()
