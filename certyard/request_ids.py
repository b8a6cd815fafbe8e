"""Request ids: one id per HTTP request, carried through every log line and audit entry.

The id is the caller's ``X-Request-Id`` when it is well formed (a proxy or client correlating
its own logs with ours: bounded length, a charset that cannot break a log line or a header),
else a new random one. It is bound with ``structlog.contextvars`` for the duration of the
request, so every log line written while serving it (``certyard.logs`` merges the context
variables) and every audit entry (``audit.trail.current_request_id``) carries it; it is
answered in the ``X-Request-Id`` response header, so a user reporting a problem can quote it.

Each request ends with one ``http_request`` log line (method, path without its query string,
status, duration): certyard's access log. The query string is left out on purpose: it is the
one part of a URL a client may put a secret in. Probes (/healthz, /readyz, /metrics) log at
debug level, so a load balancer polling every second does not drown the log.

Usage: ``with_request_ids(app)`` before ``app`` is frozen. Like the metrics middleware
(certyard/metrics_http.py) it goes first; a root application's middleware also runs for its
sub-applications, and the outermost one wins (an inner one sees the id already bound).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

HEADER = "X-Request-Id"
MAX_LENGTH = 128  # the audit trail's request_id column (storage/models_audit.py)
# Letters, digits and . _ : - only: no spaces, quotes or control characters, so an id taken
# from a client can be logged, stored and echoed in a header as it is.
_WELL_FORMED = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._:-]{{0,{MAX_LENGTH - 1}}}$")
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
REQUEST_ID = web.RequestKey("certyard_request_id", str)

log = structlog.get_logger("certyard.http")


def new_request_id() -> str:
    return secrets.token_hex(16)


def accepted(value: str | None) -> str | None:
    """``value`` if it is a well-formed request id, else None (a new one is made)."""
    if value is None or not _WELL_FORMED.match(value):
        return None
    return value


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if REQUEST_ID in request:  # an enclosing application's middleware did it
        return await handler(request)
    request_id = accepted(request.headers.get(HEADER)) or new_request_id()
    request[REQUEST_ID] = request_id
    tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500  # an exception that is not an HTTP one becomes a 500 further out
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:  # a streamed one got it from _on_prepare
            response.headers[HEADER] = request_id
        return response
    except web.HTTPException as exc:  # raised responses (404, 405, 413, redirects ...)
        status = exc.status
        exc.headers[HEADER] = request_id
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away (nginx's "client closed request")
        raise
    finally:
        emit = log.debug if request.path in _QUIET_PATHS else log.info
        emit(
            "http_request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        structlog.contextvars.reset_contextvars(**tokens)


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Streamed responses send their headers before the handler returns: add the id here."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None and HEADER not in response.headers:
        response.headers[HEADER] = request_id


def with_request_ids(app: web.Application) -> web.Application:
    """Put :func:`request_id_middleware` first in ``app``'s middlewares; returns ``app``."""
    app.middlewares.insert(0, request_id_middleware)
    app.on_response_prepare.append(_on_prepare)
    return app
