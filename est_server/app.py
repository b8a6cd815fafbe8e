"""The EST application (RFC 7030, RFC 8951): mounted at /.well-known/est on the HTTPS listener.

Routes: /<operation> (the default label) and /<label>/<operation> (RFC 7030 §3.2.2).
One middleware turns every failure into a text/plain answer with its status code; nothing
reaches the client as a stack trace.
"""

from __future__ import annotations

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from ca.errors import CAError
from est_server.context import EST_CONTEXT, EstContext
from est_server.errors import EstError, from_ca_error
from est_server.handlers import dispatch

PREFIX = "/.well-known/est"

log = structlog.get_logger("certyard.est")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except EstError as exc:
        return exc.response()
    except CAError as exc:
        log.warning("est_ca_error", kind=exc.kind, detail=exc.detail, path=request.path)
        return from_ca_error(exc).response()
    except web.HTTPException as exc:
        if exc.status == 405:
            allow = exc.headers.get("Allow", "")
            return EstError(405, "method not allowed", {"Allow": allow}).response()
        return EstError(exc.status, exc.reason).response()
    except Exception:
        log.exception("est_internal_error", path=request.path)
        return EstError(500, "internal error (logged by the server)").response()


def create_app(context: EstContext) -> web.Application:
    app = web.Application(middlewares=[errors_middleware])
    app[EST_CONTEXT] = context
    app.router.add_route("*", "/{operation}", dispatch)
    app.router.add_route("*", "/{label}/{operation}", dispatch)
    return app
