"""JSON problem documents (RFC 9457) for every error the admin API answers.

``Problem`` is the admin API's one error type; ``problem_middleware`` turns it, aiohttp's own
HTTP errors (404, 405, 413 ...) and anything unexpected into ``application/problem+json``. An
unexpected exception is logged with its stack and answered as a bare 500: no detail leaks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import SQLAlchemyError

from ca.errors import CAError

log = structlog.get_logger("certyard.admin")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://certyard.dev/problems/"  # identifiers only (RFC 9457 §3.1.1), not fetched


class ProblemModel(BaseModel):
    """RFC 9457 §3.1 members, plus ``errors`` for validation failures (§3.2 extension)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


class Problem(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind or _slug(status)
        self.headers = headers or {}
        self.errors = errors


def _slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")
    except ValueError:
        return "error"


def problem_response(
    status: int,
    detail: str | None,
    *,
    kind: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> web.Response:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {
        "type": TYPE_BASE + (kind or _slug(status)),
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    response = web.json_response(body, status=status, content_type=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# A CAError kind as the admin API says it (the CA's detail is written for operators already;
# "internal" drops it: it may name storage internals).
_CA_STATUS = {
    "malformed": 400,
    "policy": 422,
    "not_found": 404,
    "conflict": 409,
    "internal": 500,
    "unavailable": 503,
}


def from_ca_error(exc: CAError) -> Problem:
    status = _CA_STATUS[exc.kind]
    detail = "internal error" if exc.kind == "internal" else exc.detail
    return Problem(status, detail)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as exc:
        return problem_response(
            exc.status,
            exc.detail,
            kind=exc.kind,
            instance=request.path,
            headers=exc.headers,
            errors=exc.errors,
        )
    except CAError as exc:
        if exc.kind in ("internal", "unavailable"):
            log.warning("admin_ca_error", kind=exc.kind, error=str(exc), cause=repr(exc.cause))
        problem = from_ca_error(exc)
        return problem_response(problem.status, problem.detail, instance=request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects stay redirects
        headers = {}
        if exc.status == 405 and "Allow" in exc.headers:
            headers["Allow"] = exc.headers["Allow"]
        detail = {
            404: f"no resource at {request.path}",
            405: f"{request.method} is not allowed here",
            413: "the request body is too large",
        }.get(exc.status, exc.reason)
        return problem_response(exc.status, detail, instance=request.path, headers=headers)
    except SQLAlchemyError as exc:
        # The database is down or overloaded: the client may retry; the cause stays in the log.
        log.warning("admin_database_error", path=request.path, error=type(exc).__name__)
        return problem_response(
            503,
            "the database is unavailable; retry later",
            instance=request.path,
            headers={"Retry-After": "5"},
        )
    except Exception:
        log.exception("admin_request_failed", method=request.method, path=request.path)
        return problem_response(500, "internal error", instance=request.path)
