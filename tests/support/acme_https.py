"""The small ACME test client (tests/support/acme_client.py) against a ``certyard serve``
subprocess (tests/support/server.py) over HTTPS, and an http-01 responder for it.

The client trusts only the root the server wrote (``<data_dir>/ca/root.pem``) and keeps the raw
replies, so tests can assert on status codes, headers and problem documents - what certbot's
``acme`` library turns into exceptions.

    async with acme_over_https(server) as client, Http01Responder(server.http01_port) as web01:
        assert (await client.register()).status == 201
        order_url, order = await ready_order(client, web01, ["a.example.test"])
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.acme_client import AcmeTestClient, thumbprint_key_authorization
from tests.support.server import CertyardServer

REQUEST_TIMEOUT = 60.0
POLL_DEADLINE = 30.0


@asynccontextmanager
async def https_session(server: CertyardServer) -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session that verifies the server against its own root, and nothing else."""
    connector = aiohttp.TCPConnector(ssl=server.ssl_context())
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield session


@asynccontextmanager
async def acme_over_https(server: CertyardServer) -> AsyncIterator[AcmeTestClient]:
    """An :class:`AcmeTestClient` with the server's directory loaded (no account yet)."""
    async with https_session(server) as session:
        client = AcmeTestClient(session, server.directory_url)
        await client.load_directory()
        yield client


@dataclass
class JsonReply:
    status: int
    headers: dict[str, str]
    body: Any


async def get_json(session: aiohttp.ClientSession, url: str) -> JsonReply:
    """A plain GET (e.g. /readyz) whose body is JSON."""
    async with session.get(url) as response:
        data = await response.read()
        return JsonReply(response.status, dict(response.headers), json.loads(data))


@dataclass
class Http01Responder:
    """Serves ``/.well-known/acme-challenge/<token>`` on 127.0.0.1:``port`` (RFC 8555 §8.3),
    where the server's validation connects (``acme.http01_port``)."""

    port: int
    answers: dict[str, str] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        answer = self.answers.get(request.match_info["token"])
        if answer is None:
            return web.Response(status=404, text="no such token\n")
        return web.Response(text=answer)

    async def __aenter__(self) -> Http01Responder:
        app = web.Application()
        app.router.add_get("/.well-known/acme-challenge/{token}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def solve_http01(
    client: AcmeTestClient, order: dict[str, Any], responder: Http01Responder
) -> None:
    """Answer the http-01 challenge of every pending authorization and wait for it."""
    for authz_url in order["authorizations"]:
        authz = (await client.get(authz_url)).json()
        if authz["status"] == "valid":
            continue
        challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
        responder.answers[challenge["token"]] = thumbprint_key_authorization(
            challenge["token"], client.key
        )
        reply = await client.post(challenge["url"], {})
        assert reply.status == 200, reply.body
        authz = await client.poll(authz_url, {"valid", "invalid"}, POLL_DEADLINE)
        assert authz["status"] == "valid", authz


async def ready_order(
    client: AcmeTestClient, responder: Http01Responder, names: Sequence[str]
) -> tuple[str, dict[str, Any]]:
    """A new order for ``names`` with its authorizations solved: (order URL, order "ready")."""
    reply = await client.new_order(list(names))
    assert reply.status == 201, reply.body
    order_url = reply.headers["Location"]
    await solve_http01(client, reply.json(), responder)
    order = await client.poll(order_url, {"ready", "invalid"}, POLL_DEADLINE)
    assert order["status"] == "ready", order
    return order_url, order
