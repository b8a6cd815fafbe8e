"""Who is signed in, and running an admin API route on their behalf.

The pages do not re-implement the API: each one calls the API route's own handler
(admin_api/resources/*.py) with the same ``Call``, after the same checks in the same order as
``admin_api.registry.make_handler``: authorize with rbac (a denial is audited "denied"), and for a
state-changing route write the "requested" audit entry first (no entry, no change), then the
outcome. That sequence is repeated here rather than shared because make_handler is bound to the
API's wire formats (Authorization header, JSON bodies, problem documents).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from admin_api import rbac
from admin_api.auth import Principal
from admin_api.context import SERVICES, AdminServices, Call
from admin_api.problems import Problem
from admin_api.registry import STATE_CHANGING, Route
from admin_api.web.session import Session
from ca.errors import CAError

log = structlog.get_logger("certyard.admin.web")

HandlerFn = Callable[[Call[Any, Any]], Awaitable[Any]]


class Forbidden(Exception):
    """Rendered as the 403 page."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def route_of(handler: HandlerFn) -> Route:
    # The Registry of the resource module defining the handler (admin_api/app.py mounts these
    # pages, so admin_api.app itself is not imported here).
    registry = getattr(sys.modules[handler.__module__], "routes", None)
    for route in getattr(registry, "routes", ()):
        if isinstance(route, Route) and route.handler is handler:
            return route
    raise LookupError(f"{handler.__name__} is not an admin API route")


@dataclass
class Visitor:
    """A signed-in person: the session and the principal its token stands for."""

    request: web.Request
    services: AdminServices
    sid: str
    session: Session
    principal: Principal

    def can(self, permission: str) -> bool:
        return rbac.allowed(self.principal.role, self.principal.scopes, permission)

    async def require(self, permission: str, action: str) -> None:
        """403 (audited, as the API's denials are) unless the role grants ``permission``."""
        if self.can(permission):
            return
        try:
            await self.services.recorder.record(
                actor=self.principal.actor,
                action=action,
                target=self.request.path,
                outcome="denied",
                details={
                    "method": self.request.method,
                    "permission": permission,
                    "role": self.principal.role,
                    "via": "web",
                },
            )
        except Exception as exc:
            log.error("admin_web_audit_denial_lost", action=action, error=repr(exc))
        raise Forbidden(f"this needs permission {permission}; your role is {self.principal.role}")

    async def run(
        self,
        handler: HandlerFn,
        *,
        path: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        """The API route behind ``handler``, for this visitor (query as the API would parse it)."""
        route = route_of(handler)
        await self.require(route.permission, route.action)
        model: type[BaseModel] | None = route.query
        try:
            parsed = model.model_validate(query or {}) if model is not None else None
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
            raise Problem(400, f"invalid value for {fields}") from None
        call: Call[Any, Any] = Call(
            request=self.request,
            services=self.services,
            principal=self.principal,
            path=path or {},
            query=parsed,
            body=None,
        )
        if route.method not in STATE_CHANGING:
            return await handler(call)
        recorder = self.services.recorder
        try:
            await recorder.record(
                actor=self.principal.actor,
                action=route.action,
                target=self.request.path,
                outcome="requested",
                details={"method": self.request.method, "via": "web"},
            )
        except Exception as exc:
            log.error("admin_web_audit_unavailable", action=route.action, error=repr(exc))
            raise Problem(503, "the audit trail cannot be written; nothing was changed") from None
        try:
            result = await handler(call)
        except (Problem, CAError) as exc:
            status = exc.status if isinstance(exc, Problem) else exc.kind
            await self._outcome(route, "failure", {**call.audit, "error": str(status)})
            raise
        await self._outcome(route, "success", call.audit or None)
        return result

    async def _outcome(self, route: Route, outcome: str, details: dict[str, Any] | None) -> None:
        try:
            await self.services.recorder.record(
                actor=self.principal.actor,
                action=route.action,
                target=self.request.path,
                outcome=outcome,
                details={**(details or {}), "via": "web"},
            )
        except Exception as exc:
            log.error("admin_web_audit_outcome_lost", action=route.action, error=repr(exc))


def services_of(request: web.Request) -> AdminServices:
    return request.config_dict[SERVICES]
