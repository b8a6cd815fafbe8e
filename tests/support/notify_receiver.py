"""A webhook receiver on 127.0.0.1 for the notification tests (aiohttp).

It records every request (headers and raw body) and answers from a script of responses, then
200 once the script is used up: ``WebhookReceiver([(500, {}), (200, {})])`` fails the first
POST with a 500 and accepts the retry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.support.server import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def signature_ok(self, secret: bytes) -> bool:
        expected = "sha256=" + hmac.new(secret, self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("X-Certyard-Signature", ""))


class WebhookReceiver:
    def __init__(self, responses: Sequence[tuple[int, dict[str, str]]] = ()) -> None:
        self.responses = list(responses)
        self.requests: list[Received] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def fail_with(self, status: int, count: int, headers: dict[str, str] | None = None) -> None:
        self.responses.extend([(status, headers or {})] * count)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Received(request.path, dict(request.headers), body))
        status, headers = self.responses.pop(0) if self.responses else (200, {})
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else "no")

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
