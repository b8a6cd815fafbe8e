"""The revocation application: CRL downloads and the OCSP responder on one plain-HTTP listener.

Plain HTTP on purpose (RFC 5019 §5, RFC 5280 §4.2.1.13): CRLs and OCSP responses are signed
objects, and a TLS client checking a server's revocation status must not need TLS (and its
revocation checks) to fetch them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

import structlog
from aiohttp import web

from revocation_server import crl_handlers, issuer_handlers, ocsp_handlers
from revocation_server.context import CLOCK, CRLS, OCSP, CRLSource, OCSPSource

log = structlog.get_logger("certyard.revocation")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Nothing unexpected reaches a client as a stack trace: a logged, plain-text 500."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise  # 404, 405, 413 from aiohttp itself: already plain text
    except Exception:
        log.exception("revocation_internal_error", path=request.path, method=request.method)
        return web.Response(status=500, text="internal server error\n")


def create_app(
    crls: CRLSource,
    ocsp: OCSPSource,
    *,
    clock: Callable[[], datetime] | None = None,
    issuer_certs: Mapping[str, bytes] | None = None,
) -> web.Application:
    """Routes:

    * ``GET /crl/{issuer_id}.crl`` (one shard) or ``GET /crl/{issuer_id}/{shard}.crl``;
    * ``POST /ocsp`` and ``GET /ocsp/{url-encoded base64 request}``.
    """
    app = web.Application(
        middlewares=[error_middleware], client_max_size=ocsp_handlers.MAX_REQUEST_BYTES
    )
    app[CRLS] = crls
    app[OCSP] = ocsp
    app[CLOCK] = clock or _utc_now
    app.router.add_get("/crl/{issuer_id}.crl", crl_handlers.get_crl)
    app.router.add_get(r"/crl/{issuer_id}/{shard:\d{1,4}}.crl", crl_handlers.get_crl)
    app.router.add_post("/ocsp", ocsp_handlers.post_ocsp)
    # A tail match: the base64 may contain '/' (RFC 6960 A.1.1).
    app.router.add_get("/ocsp/{request:.+}", ocsp_handlers.get_ocsp)
    app[issuer_handlers.ISSUER_CERTS] = dict(issuer_certs or {})
    app.router.add_get("/ca/{issuer_id}.crt", issuer_handlers.get_issuer)
    return app
