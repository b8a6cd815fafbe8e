"""The ACME application: routes, and the middleware every response goes through.

Every response (errors included) carries a fresh Replay-Nonce (RFC 8555 §6.5) and
``Link: <directory>;rel="index"`` (§7.1); every error is a problem document (§6.7, RFC 9457);
nothing unexpected ever reaches the client as a stack trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from acme_server import renewal
from acme_server.context import ACME_CONTEXT, AcmeContext, ctx
from acme_server.errors import PROBLEM_CONTENT_TYPE, AcmeError
from acme_server.handlers import accounts, authorizations, certificates, directory, orders

log = structlog.get_logger("certyard.acme")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_response(error: AcmeError) -> web.Response:
    response = web.Response(
        status=error.http_status, body=error.body(), content_type=PROBLEM_CONTENT_TYPE
    )
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


@web.middleware
async def acme_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    context = ctx(request)
    try:
        response = await handler(request)
    except AcmeError as exc:
        log.info("acme_error", path=request.path, type=exc.type, detail=exc.detail)
        response = problem_response(exc)
    except web.HTTPException as exc:
        # Unknown URL or method: still a problem document (RFC 8555 §6.7).
        status_type = "malformed"
        response = problem_response(
            AcmeError(status_type, exc.reason or "request not allowed", status=exc.status)
        )
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception:
        log.exception("acme_internal_error", path=request.path, method=request.method)
        response = problem_response(AcmeError("serverInternal", "internal server error"))
    try:
        response.headers["Replay-Nonce"] = await context.nonces.issue()
    except Exception:  # the database is down: still answer, without a nonce
        log.exception("nonce_issue_failed")
    response.headers.add("Link", f'<{context.urls.directory}>;rel="index"')
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def create_app(context: AcmeContext) -> web.Application:
    """The ACME resources, to be mounted at /acme (``root.add_subapp(PREFIX, app)``)."""
    app = web.Application(
        middlewares=[acme_middleware], client_max_size=context.config.max_body_bytes
    )
    app[ACME_CONTEXT] = context
    p = ""
    app.router.add_get(f"{p}/directory", directory.get_directory)
    app.router.add_route("HEAD", f"{p}/new-nonce", directory.head_nonce)
    app.router.add_get(f"{p}/new-nonce", directory.get_nonce, allow_head=False)
    app.router.add_post(f"{p}/new-account", accounts.new_account)
    app.router.add_post(f"{p}/account/{{id}}", accounts.account)
    app.router.add_post(f"{p}/account/{{id}}/orders", orders.account_orders)
    app.router.add_post(f"{p}/key-change", accounts.key_change)
    app.router.add_post(f"{p}/new-order", orders.new_order)
    app.router.add_post(f"{p}/new-authz", orders.new_authz)
    app.router.add_post(f"{p}/order/{{id}}", orders.get_order)
    app.router.add_post(f"{p}/order/{{id}}/finalize", orders.finalize)
    app.router.add_post(f"{p}/authz/{{id}}", authorizations.authorization)
    app.router.add_post(f"{p}/chall/{{id}}", authorizations.challenge)
    app.router.add_post(f"{p}/cert/{{id}}", certificates.download)
    app.router.add_post(f"{p}/cert/{{id}}/alt/{{n}}", certificates.download_alternate)
    app.router.add_get(f"{p}/issuer/{{id}}", certificates.issuer_certificate)
    app.router.add_post(f"{p}/revoke-cert", certificates.revoke)
    app.router.add_get(f"{p}/renewal-info/{{cert_id}}", renewal.get_renewal_info)
    return app


__all__ = ["AcmeContext", "create_app"]
