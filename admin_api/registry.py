"""Routes declared once: method, path, permission, query/body/response models and a summary.

The same declarations serve requests (``Registry.handler``: authenticate, authorize, parse,
call, audit, render) and describe the API (admin_api/openapi.py builds the OpenAPI document from
them). Adding a resource is a module with a ``Registry`` and one line in admin_api/app.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from admin_api import rbac
from admin_api.context import SERVICES, Call
from admin_api.problems import Problem
from admin_api.schemas import PATH_PATTERN, Empty
from ca.errors import CAError

log = structlog.get_logger("certyard.admin")
_PATH_RE = re.compile(PATH_PATTERN)
_PARAM_RE = re.compile(r"{(\w+)}")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Error statuses every route may answer (besides its own): bad input, no/invalid credentials,
# missing permission, database unavailable.
COMMON_ERRORS = (400, 401, 403, 503)

HandlerFn = Callable[[Call[Any, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # under /api/v1, aiohttp syntax: /certificates/{id}
    permission: str
    summary: str
    tag: str
    handler: HandlerFn
    query: type[BaseModel] | None
    body: type[BaseModel] | None
    response: type[BaseModel] | None  # None: 204 No Content
    status: int
    errors: tuple[int, ...]
    export: bool  # JSON array or CSV, chosen by ?format=
    action: str  # audit action name, e.g. "certificates.revoke"
    description: str = ""

    @property
    def path_params(self) -> list[str]:
        return _PARAM_RE.findall(self.path)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


@dataclass
class Registry:
    tag: str
    routes: list[Route] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        permission: str,
        summary: str,
        query: type[BaseModel] | None = None,
        body: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
        export: bool = False,
        action: str | None = None,
    ) -> Callable[[HandlerFn], HandlerFn]:
        if permission not in rbac.PERMISSIONS:
            raise ValueError(f"{method} {path}: unknown permission {permission!r}")

        def register(fn: HandlerFn) -> HandlerFn:
            errors_all = tuple(sorted(set(COMMON_ERRORS) | set(errors)))
            if "{" in path:
                errors_all = tuple(sorted(set(errors_all) | {404}))
            if body is not None:
                errors_all = tuple(sorted(set(errors_all) | {413, 415}))
            self.routes.append(
                Route(
                    method=method,
                    path=path,
                    permission=permission,
                    summary=summary,
                    tag=self.tag,
                    handler=fn,
                    query=query,
                    body=body,
                    response=response,
                    status=status if response is not None or export else 204,
                    errors=errors_all,
                    export=export,
                    action=action or f"{self.tag.lower()}.{fn.__name__}",
                    description=(fn.__doc__ or "").strip(),
                )
            )
            return fn

        return register


def _validation_errors(exc: ValidationError, where: str) -> list[dict[str, Any]]:
    # Only where and why: the input is not echoed back (it may be a secret).
    return [
        {"in": where, "loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
        for e in exc.errors()
    ]


def _parse_query(route: Route, request: web.Request) -> Any:
    model = route.query or Empty
    values: dict[str, str] = {}
    for key in request.query:
        got = request.query.getall(key)
        if len(got) != 1:
            raise Problem(400, f"query parameter {key!r} given more than once")
        values[key] = got[0]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise Problem(
            400, "invalid query parameters", errors=_validation_errors(exc, "query")
        ) from None


async def _parse_body(route: Route, request: web.Request) -> Any:
    if route.body is None:
        return None
    if request.content_type != "application/json":
        raise Problem(415, "the request body must be application/json")
    raw = await request.read()  # aiohttp answers 413 past client_max_size
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise Problem(400, "the request body is not valid JSON") from None
    try:
        return route.body.model_validate(data)
    except ValidationError as exc:
        raise Problem(400, "invalid request body", errors=_validation_errors(exc, "body")) from None


def _render(route: Route, result: Any) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if route.response is None or result is None:
        return web.Response(status=204)
    assert isinstance(result, BaseModel)
    return web.json_response(result.model_dump(mode="json"), status=route.status)


async def _record_outcome(
    call: Call[Any, Any], route: Route, outcome: str, details: dict[str, Any] | None
) -> None:
    """The outcome entry; the "requested" entry is already in the trail, so a failure to write
    this one is logged and does not turn a completed change into an error."""
    try:
        await call.services.recorder.record(
            actor=call.principal.actor,
            action=route.action,
            target=call.request.path,
            outcome=outcome,
            details=details,
        )
    except Exception as exc:
        log.error("admin_audit_outcome_lost", action=route.action, error=repr(exc))


def make_handler(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        principal = await services.authenticator.authenticate(request)
        target = request.path
        if not rbac.allowed(principal.role, principal.scopes, route.permission):
            # Issue 8 §3: a denied request is 403 and audited (a lost entry is logged: the
            # request stays denied either way).
            try:
                await services.recorder.record(
                    actor=principal.actor,
                    action=route.action,
                    target=target,
                    outcome="denied",
                    details={
                        "method": request.method,
                        "permission": route.permission,
                        "role": principal.role,
                    },
                )
            except Exception as exc:
                log.error("admin_audit_denial_lost", action=route.action, error=repr(exc))
            raise Problem(
                403,
                f"this operation needs permission {route.permission}",
                kind="forbidden",
            )
        path = dict(request.match_info)
        for name, value in path.items():
            if not _PATH_RE.match(value):
                raise Problem(404, f"no such {name}")
        call: Call[Any, Any] = Call(
            request=request,
            services=services,
            principal=principal,
            path=path,
            query=_parse_query(route, request),
            body=await _parse_body(route, request),
        )
        if route.method not in STATE_CHANGING:
            return _render(route, await route.handler(call))
        # Written before the change is made: a change the trail cannot record does not happen
        # (the recorder's error becomes a 503 and the handler never runs).
        try:
            await services.recorder.record(
                actor=principal.actor,
                action=route.action,
                target=target,
                outcome="requested",
                details={"method": request.method},
            )
        except Exception as exc:
            log.error("admin_audit_unavailable", action=route.action, error=repr(exc))
            raise Problem(503, "the audit trail cannot be written; nothing was changed") from None
        try:
            result = await route.handler(call)
        except (Problem, CAError) as exc:
            status = exc.status if isinstance(exc, Problem) else exc.kind
            await _record_outcome(call, route, "failure", {**call.audit, "error": str(status)})
            raise
        await _record_outcome(call, route, "success", call.audit or None)
        return _render(route, result)

    handle.__name__ = route.operation_id
    return handle
