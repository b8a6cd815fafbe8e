"""The web pages under /ui/: sign in and out, dashboard, inventory, a certificate, scan reports,
pending EST approvals. Each page reads through the admin API's own route handlers (gate.py), so
it shows what the API would show the same principal and refuses what the API would refuse."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select

from admin_api.auth import MAX_TOKEN_LENGTH
from admin_api.problems import Problem
from admin_api.resources import certificates, est, scans
from admin_api.schemas import PATH_PATTERN
from admin_api.web import data
from admin_api.web.gate import Forbidden, Visitor, services_of
from admin_api.web.session import (
    COOKIE,
    SessionStore,
    check_csrf,
    clear_cookie,
    set_cookie,
)
from scanner.report_html import SEVERITY_ORDER, build_context
from scanner.stored_scan import UnknownScan
from storage.models import Certificate

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STORE = web.AppKey("web_sessions", SessionStore)
TEMPLATES = web.AppKey("web_templates", Environment)
_PATH_RE = re.compile(PATH_PATTERN)
# Content-Security-Policy: scripts and styles from this listener only, nothing inline, no
# framing (clickjacking), forms post back here only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATES = ("valid", "expired", "revoked", "signing")
WINDOWS = (7, 30, 90, 365)

Page = Callable[[Visitor], Awaitable[web.StreamResponse]]


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["days_left"] = _days_left
    return env


def _when(value: dt.datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _days_left(value: dt.datetime, now: dt.datetime) -> int:
    return int((value - now).total_seconds() // 86400)


def render(
    request: web.Request,
    template: str,
    status: int = 200,
    visitor: Visitor | None = None,
    **context: Any,
) -> web.Response:
    env = request.app[TEMPLATES]
    text = env.get_template(template).render(
        visitor=visitor,
        principal=visitor.principal if visitor else None,
        csrf=visitor.session.csrf if visitor else "",
        path=request.path,
        **context,
    )
    return web.Response(text=text, status=status, content_type="text/html")


def error_page(
    request: web.Request, status: int, detail: str, visitor: Visitor | None = None
) -> web.Response:
    return render(request, "error.html.j2", status, visitor, code=status, detail=detail)


async def current_visitor(request: web.Request) -> Visitor | None:
    services = services_of(request)
    store = request.app[STORE]
    sid = request.cookies.get(COOKIE)
    session = store.get(sid, services.clock())
    if session is None or sid is None:
        return None
    # The stored token is checked on every request as the API checks its bearer token.
    try:
        principal = await services.authenticator.authenticate(_bearer(session.token))
    except Problem:
        store.drop(sid)
        return None
    return Visitor(request, services, sid, session, principal)


class _BearerRequest:
    """What Authenticator.authenticate reads of a request (its Authorization header), carrying
    the session's token: the API's own token and OIDC checks run unchanged. (Request.clone
    cannot be used once a form body has been read.)"""

    def __init__(self, token: str) -> None:
        self.headers = {"Authorization": f"Bearer {token}"}


def _bearer(token: str) -> web.Request:
    return cast(web.Request, _BearerRequest(token))


def _sign_in_url(request: web.Request) -> str:
    return "/ui/sign-in?" + urlencode({"next": request.path_qs})


def page(*, csrf: bool = False) -> Callable[[Page], Callable[[web.Request], Awaitable[Any]]]:
    """A signed-in page: no session → sign in; a form post needs the session's CSRF token;
    Forbidden → 403 page; an API problem → an error page with its status."""

    def wrap(fn: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            visitor = await current_visitor(request)
            if visitor is None:
                if request.method == "POST":
                    return error_page(request, 401, "Your session has ended; sign in again.")
                raise web.HTTPSeeOther(_sign_in_url(request))
            if csrf:
                form = await request.post()
                submitted = form.get("csrf")
                if not check_csrf(
                    visitor.session, submitted if isinstance(submitted, str) else None
                ):
                    return error_page(
                        request,
                        403,
                        "This form did not carry a valid CSRF token (it may be from an older "
                        "page or another site). Reload the page and try again.",
                        visitor,
                    )
            try:
                return await fn(visitor)
            except Forbidden as exc:
                return error_page(request, 403, exc.detail, visitor)
            except Problem as exc:
                return error_page(request, exc.status, exc.detail, visitor)

        handle.__name__ = fn.__name__
        return handle

    return wrap


# -- sign in / out -------------------------------------------------------------------------


def _safe_next(value: str | None) -> str:
    # Only a path of these pages: never an absolute or scheme-relative URL (open redirect).
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


def _same_origin(request: web.Request) -> bool:
    """A browser's Origin header on the sign-in post must be this listener (login CSRF)."""
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


async def sign_in_form(request: web.Request) -> web.StreamResponse:
    if await current_visitor(request) is not None:
        raise web.HTTPSeeOther(_safe_next(request.query.get("next")))
    return render(request, "sign_in.html.j2", next=_safe_next(request.query.get("next")))


async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    raw = form.get("token")
    token = raw.strip() if isinstance(raw, str) else ""
    next_raw = form.get("next")
    target = _safe_next(next_raw if isinstance(next_raw, str) else None)

    def again(status: int, message: str) -> web.Response:
        return render(request, "sign_in.html.j2", status, next=target, error=message)

    if not _same_origin(request):
        return again(403, "This sign-in form came from another site.")
    if not token:
        return again(400, "Paste an API token or an OIDC token.")
    if len(token) > MAX_TOKEN_LENGTH:
        return again(400, "That token is too long.")
    services = services_of(request)
    try:
        principal = await services.authenticator.authenticate(_bearer(token))
    except Problem as exc:
        return again(401, f"Sign-in failed: {exc.detail}.")
    sid, _ = request.app[STORE].create(token, services.clock())
    try:
        await services.recorder.record(
            actor=principal.actor,
            action="web.sign_in",
            target=request.path,
            outcome="success",
            details={"role": principal.role},
        )
    except Exception:
        request.app[STORE].drop(sid)
        return again(503, "The audit trail cannot be written; try again later.")
    response = web.HTTPSeeOther(target)
    set_cookie(response, request, sid)
    raise response


@page(csrf=True)
async def sign_out(visitor: Visitor) -> web.StreamResponse:
    visitor.request.app[STORE].drop(visitor.sid)
    response = web.HTTPSeeOther("/ui/sign-in")
    clear_cookie(response)
    raise response


# -- dashboard -----------------------------------------------------------------------------


@page()
async def dashboard(visitor: Visitor) -> web.StreamResponse:
    services = visitor.services
    now = services.clock()
    await visitor.require("certificates:read", "certificates.list_certificates")
    counts = await data.certificate_counts(services, visitor.principal, now)
    soon = await visitor.run(
        certificates.list_certificates,
        query={
            "expiring_within_days": str(data.EXPIRING_DAYS),
            "sort": "not_after",
            "limit": "10",
        },
    )
    latest = None
    findings: dict[str, int] = {}
    if visitor.can("scans:read"):
        scan_page = await visitor.run(scans.list_scans, query={"limit": "1"})
        if scan_page.items:
            latest = scan_page.items[0]
            findings = await data.finding_counts(services, latest.id)
    ct_total, alerts = 0, list[data.CtAlert]()
    show_ct = visitor.principal.namespace is None  # CT matches belong to no namespace
    if show_ct:
        ct_total, alerts = await data.ct_alerts(services)
    return render(
        visitor.request,
        "dashboard.html.j2",
        visitor=visitor,
        now=now,
        counts=counts,
        soon=soon.items,
        latest=latest,
        findings=findings,
        severities=SEVERITY_ORDER,
        show_ct=show_ct,
        ct_total=ct_total,
        alerts=alerts,
    )


# -- inventory and one certificate ---------------------------------------------------------


@page()
async def inventory(visitor: Visitor) -> web.StreamResponse:
    q = visitor.request.query
    name = q.get("name", "").strip()
    state = q.get("state", "")
    window = q.get("expires", "")
    cursor = q.get("cursor", "")
    query: dict[str, str] = {"sort": "not_after" if window else "-created_at"}
    if name:
        query["name"] = name
    if state == "signing":
        query["state"] = "signing"
    elif state:
        query["status"] = state
    if window:
        query["expiring_within_days"] = window
    if cursor:
        query["cursor"] = cursor
    try:
        result = await visitor.run(certificates.list_certificates, query=query)
    except Problem as exc:
        if exc.status != 400:
            raise
        return render(
            visitor.request,
            "inventory.html.j2",
            400,
            visitor,
            now=visitor.services.clock(),
            items=[],
            filters={"name": name, "state": state, "expires": window},
            states=STATES,
            windows=WINDOWS,
            error=exc.detail,
            next_url=None,
        )
    next_url = None
    if result.next_cursor:
        keep = {k: v for k, v in (("name", name), ("state", state), ("expires", window)) if v}
        next_url = "/ui/certificates?" + urlencode({**keep, "cursor": result.next_cursor})
    return render(
        visitor.request,
        "inventory.html.j2",
        visitor=visitor,
        now=visitor.services.clock(),
        items=result.items,
        filters={"name": name, "state": state, "expires": window},
        states=STATES,
        windows=WINDOWS,
        error=None,
        next_url=next_url,
    )


def _path_id(visitor: Visitor, what: str) -> str:
    value = visitor.request.match_info["id"]
    if not _PATH_RE.match(value):
        raise Problem(404, f"no such {what}")
    return value


@page()
async def certificate(visitor: Visitor) -> web.StreamResponse:
    cert_id = _path_id(visitor, "certificate")
    detail = await visitor.run(certificates.get_certificate, path={"id": cert_id})
    async with visitor.services.sessions() as session:
        row = (
            await session.execute(select(Certificate).where(Certificate.id == detail.id))
        ).scalar_one()
    served, deployed = await data.deployments(visitor.services, row)
    events = await data.history(visitor.services, row, visitor.can("audit:read"))
    return render(
        visitor.request,
        "certificate.html.j2",
        visitor=visitor,
        now=visitor.services.clock(),
        cert=detail,
        chain=data.parse_chain(detail.chain_pem),
        served=served,
        deployed=deployed,
        events=events,
        can_audit=visitor.can("audit:read"),
    )


# -- scans ---------------------------------------------------------------------------------


@page()
async def scan_list(visitor: Visitor) -> web.StreamResponse:
    query = {"limit": "50"}
    if visitor.request.query.get("cursor"):
        query["cursor"] = visitor.request.query["cursor"]
    result = await visitor.run(scans.list_scans, query=query)
    next_url = None
    if result.next_cursor:
        next_url = "/ui/scans?" + urlencode({"cursor": result.next_cursor})
    return render(
        visitor.request, "scans.html.j2", visitor=visitor, items=result.items, next_url=next_url
    )


@page()
async def scan_report(visitor: Visitor) -> web.StreamResponse:
    scan_id = _path_id(visitor, "scan")
    try:
        report = await visitor.run(scans.get_scan_report, path={"id": scan_id})
    except UnknownScan:
        raise Problem(404, f"no scan {scan_id}") from None
    # The same context (and so the same SVG expiry chart) as the HTML report file.
    context = build_context(report.model_dump(), None, visitor.services.clock())
    return render(visitor.request, "scan.html.j2", visitor=visitor, scan_id=scan_id, report=context)


# -- EST approvals -------------------------------------------------------------------------


@page()
async def est_pending(visitor: Visitor) -> web.StreamResponse:
    q = visitor.request.query
    query = {"state": "pending", "limit": "100"}
    if q.get("cursor"):
        query["cursor"] = q["cursor"]
    result = await visitor.run(est.list_est_pending, query=query)
    decided = q.get("decided", "")
    outcome = q.get("outcome", "")
    notice = None
    if _PATH_RE.match(decided) and outcome in ("approved", "rejected"):
        notice = f"Enrollment {decided} {outcome}."
    next_url = None
    if result.next_cursor:
        next_url = "/ui/est/pending?" + urlencode({"cursor": result.next_cursor})
    return render(
        visitor.request,
        "est_pending.html.j2",
        visitor=visitor,
        items=result.items,
        can_decide=visitor.can("est:approve"),
        notice=notice,
        next_url=next_url,
    )


async def _decide(visitor: Visitor, handler: Any, outcome: str) -> web.StreamResponse:
    pending_id = _path_id(visitor, "EST enrollment")
    decided = await visitor.run(handler, path={"id": pending_id})
    raise web.HTTPSeeOther(
        "/ui/est/pending?" + urlencode({"decided": decided.id, "outcome": outcome})
    )


@page(csrf=True)
async def est_approve(visitor: Visitor) -> web.StreamResponse:
    return await _decide(visitor, est.approve_est_enrollment, "approved")


@page(csrf=True)
async def est_reject(visitor: Visitor) -> web.StreamResponse:
    return await _decide(visitor, est.reject_est_enrollment, "rejected")


# -- the sub-application -------------------------------------------------------------------


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.status != 405:
            response = error_page(request, exc.status, exc.reason)
        else:
            response = exc
            _harden(response)
            raise
    _harden(response)
    return response


def _harden(response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on form
    # posts, and the sign-in post is checked against this listener's origin.
    response.headers["Referrer-Policy"] = "same-origin"
    if response.content_type == "text/html":
        # Pages show inventory data: not kept in shared or browser caches.
        response.headers["Cache-Control"] = "no-store"


def create_web_app() -> web.Application:
    app = web.Application(middlewares=[security_headers])
    app[STORE] = SessionStore()
    app[TEMPLATES] = environment()
    r = app.router
    r.add_get("/", dashboard)
    r.add_get("/sign-in", sign_in_form)
    r.add_post("/sign-in", sign_in)
    r.add_post("/sign-out", sign_out)
    r.add_get("/certificates", inventory)
    r.add_get("/certificates/{id}", certificate)
    r.add_get("/scans", scan_list)
    r.add_get("/scans/{id}", scan_report)
    r.add_get("/est/pending", est_pending)
    r.add_post("/est/pending/{id}/approve", est_approve)
    r.add_post("/est/pending/{id}/reject", est_reject)
    r.add_static("/static/", STATIC_DIR)
    return app
