"""An http-01 responder on a real loopback port, for in-process ACME tests."""

from __future__ import annotations

from aiohttp import web

from tests.support.acme_app import free_port


class Responder:
    """Serves ``/.well-known/acme-challenge/<token>`` from ``tokens`` (404 for others)."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if token not in self.tokens:
            return web.Response(status=404)
        return web.Response(text=self.tokens[token])

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/acme-challenge/{token}", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
