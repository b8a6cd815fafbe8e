"""An aiohttp middleware that counts and times requests (``certyard_http_requests_total``,
``certyard_http_request_duration_seconds``).

The ``endpoint`` label is the matched route's template (``/acme/order/{order_id}``), never the
request path: a path carries ids, and one label value per id would grow the number of time series
without bound (https://prometheus.io/docs/practices/instrumentation/#do-not-overuse-labels).
A request no route matched is "unmatched"; an unknown method is "OTHER".

Usage: ``instrument(app, "acme")`` before ``app`` is frozen (before ``add_subapp`` or
``AppRunner.setup``); the middleware goes first so it also sees what the app's own error
middlewares turned into responses. A root application's middlewares also run for its
sub-applications' requests: instrument either the sub-applications (each with its protocol) or
the root, and if both are, the outermost (the root) counts the request once.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from certyard.metrics import HTTP_DURATION, HTTP_REQUESTS

UNMATCHED = "unmatched"
_CLAIMED = web.RequestKey("certyard_metrics_claimed", bool)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def endpoint_label(request: web.Request) -> str:
    """The route template the request matched, or "unmatched"."""
    match_info = request.match_info
    if match_info.http_exception is not None:  # no route: 404/405 from the router
        return UNMATCHED
    resource = match_info.route.resource
    if resource is None:  # a system route (e.g. the router's own 404/405 handler)
        return UNMATCHED
    return resource.canonical


def metrics_middleware(protocol: str) -> Middleware:
    """A middleware recording every request under ``protocol`` (acme, est, admin, revocation)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.get(_CLAIMED):  # an enclosing app's middleware counts this request already
            return await handler(request)
        request[_CLAIMED] = True
        started = time.perf_counter()
        status = 500  # an exception that is not an HTTP one becomes a 500 further out
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:  # raised responses (404, 405, 413, redirects ...)
            status = exc.status
            raise
        except asyncio.CancelledError:
            # The client went away (or the server is stopping) before an answer: nginx's 499
            # "client closed request", so these do not count as server errors.
            status = 499
            raise
        finally:
            method = request.method if request.method in _METHODS else "OTHER"
            endpoint = endpoint_label(request)
            HTTP_REQUESTS.labels(protocol, endpoint, method, str(status)).inc()
            HTTP_DURATION.labels(protocol, endpoint, method).observe(time.perf_counter() - started)

    return middleware


def instrument(app: web.Application, protocol: str) -> web.Application:
    """Put :func:`metrics_middleware` first in ``app``'s middlewares; returns ``app``."""
    app.middlewares.insert(0, metrics_middleware(protocol))
    return app
