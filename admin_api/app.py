"""The admin listener's aiohttp application: /api/v1 (the route registry), /api/openapi.json,
/api/docs. The process wiring (certyard/server.py) adds /healthz, /readyz and /metrics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from admin_api.context import SERVICES, AdminServices
from admin_api.openapi import API_PREFIX, build_document, render_docs
from admin_api.problems import problem_middleware
from admin_api.registry import Registry, Route, make_handler
from admin_api.resources import acme, certificates, est, issuers, namespaces, scans, tokens
from admin_api.resources import audit as audit_resource
from admin_api.resources import ct as ct_resource
from admin_api.resources import deploy as deploy_resource
from admin_api.resources import renewal as renewal_resource
from admin_api.web import mount as mount_web

# Every resource of the API; adding one is a module with a Registry and a line here.
RESOURCES: tuple[Registry, ...] = (
    certificates.routes,
    scans.routes,
    acme.routes,
    est.routes,
    issuers.routes,
    tokens.routes,
    namespaces.routes,
    audit_resource.routes,
    ct_resource.routes,
    renewal_resource.routes,
    deploy_resource.routes,
)


def all_routes(resources: Sequence[Registry] = RESOURCES) -> list[Route]:
    return [route for registry in resources for route in registry.routes]


def create_app(
    services: AdminServices, resources: Sequence[Registry] = RESOURCES
) -> web.Application:
    app = web.Application(
        client_max_size=services.settings.max_body_bytes, middlewares=[problem_middleware]
    )
    app[SERVICES] = services
    routes = all_routes(resources)
    document = build_document(routes)
    spec = json.dumps(document, indent=1)
    docs = render_docs(document)

    async def openapi(_request: web.Request) -> web.Response:
        return web.Response(text=spec, content_type="application/json")

    async def browse(_request: web.Request) -> web.Response:
        return web.Response(text=docs, content_type="text/html")

    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_get("/api/docs", browse)
    for route in routes:
        app.router.add_route(route.method, API_PREFIX + route.path, make_handler(route))

    async def close(_app: web.Application) -> AsyncIterator[None]:
        yield
        await services.scans.close()  # running scans end as "interrupted"
        if services.oidc is not None:
            await services.oidc.close()

    app.cleanup_ctx.append(close)
    mount_web(app)  # the web pages for people under /ui/ (admin_api/web/)
    return app
