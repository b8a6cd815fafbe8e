"""certyard.request_ids on a real aiohttp server on loopback: the id reaches the handler's log
context and the response header (plain, raised, streamed and sub-application answers), one
``http_request`` line per request, and the context is clean afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from certyard.request_ids import HEADER, with_request_ids


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[Any, Any], list[str | None]]]:
    seen: list[str | None] = []

    async def plain(_request: web.Request) -> web.Response:
        seen.append(structlog.contextvars.get_contextvars().get("request_id"))
        return web.Response(text="ok")

    async def raised(_request: web.Request) -> web.Response:
        raise web.HTTPConflict(text="no")

    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"line\n")
        return response

    inner = with_request_ids(web.Application())  # an inner one too: the outer one wins
    inner.router.add_get("/x", plain)
    root = with_request_ids(web.Application())
    root.router.add_get("/plain", plain)
    root.router.add_get("/raised", raised)
    root.router.add_get("/streamed", streamed)
    root.add_subapp("/sub", inner)
    async with TestClient(TestServer(root, host="127.0.0.1")) as test_client:
        yield test_client, seen


async def test_ids_in_context_and_headers(
    client: tuple[TestClient[Any, Any], list[str | None]],
) -> None:
    http, seen = client
    with structlog.testing.capture_logs() as logged:
        response = await http.get("/plain", headers={HEADER: "abc-1"})
        assert response.status == 200 and response.headers[HEADER] == "abc-1"
        assert seen == ["abc-1"]
        for path, status in (("/raised", 409), ("/streamed", 200), ("/nowhere", 404)):
            response = await http.get(path)
            assert response.status == status
            assert len(response.headers[HEADER]) == 32, path
        response = await http.get("/sub/x", headers={HEADER: "bad id"})
        made = response.headers[HEADER]
        assert made != "bad id" and seen[-1] == made
    requests = [e for e in logged if e["event"] == "http_request"]
    # One line per request, even through the sub-application's own middleware.
    assert [(e["path"], e["status"]) for e in requests] == [
        ("/plain", 200),
        ("/raised", 409),
        ("/streamed", 200),
        ("/nowhere", 404),
        ("/sub/x", 200),
    ]
    assert "request_id" not in structlog.contextvars.get_contextvars()
