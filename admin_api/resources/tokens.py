"""API tokens: list (never their values), create (the value shown once), revoke; and whoami."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select

from admin_api import rbac
from admin_api import tokens as token_store
from admin_api.auth import Principal
from admin_api.config import ROLES
from admin_api.context import Call
from admin_api.pagination import Sort, page
from admin_api.problems import Problem
from admin_api.registry import Registry
from admin_api.schemas import Empty, Model, Page, PageQuery, ShortText
from storage.models_admin import ApiToken

routes = Registry("Tokens")

TOKEN_SORT = Sort(columns={"created_at": ApiToken.created_at}, id_column=ApiToken.id)
Role = Literal["admin", "operator", "auditor", "viewer"]
assert set(Role.__args__) == set(ROLES)  # type: ignore[attr-defined]
Permission = Annotated[
    str, StringConstraints(pattern="^(" + "|".join(re.escape(p) for p in rbac.PERMISSIONS) + ")$")
]


class TokenQuery(PageQuery):
    state: Literal["active", "expired", "revoked"] | None = None
    role: Role | None = None
    sort: Literal["created_at", "-created_at"] = "-created_at"


class TokenOut(BaseModel):
    id: str
    name: str
    role: str
    namespace: str | None
    scopes: list[str]
    state: str
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    created_by: str


class TokenCreated(TokenOut):
    token: str = Field(description="the token: shown this once, never again")


class TokenCreate(Model):
    name: ShortText
    role: Role
    namespace: str | None = Field(
        default=None, pattern=token_store.NAMESPACE_RE.pattern, description="bind to a namespace"
    )
    scopes: list[Permission] = Field(
        default_factory=list, max_length=len(rbac.PERMISSIONS), description="empty: the role's"
    )
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class Whoami(BaseModel):
    actor: str
    role: str
    namespace: str | None
    permissions: list[str]


TokenPage = Page[TokenOut]


def _out(row: ApiToken, now: dt.datetime) -> TokenOut:
    return TokenOut(
        id=row.id,
        name=row.name,
        role=row.role,
        namespace=row.namespace,
        scopes=[str(s) for s in row.scopes],
        state=token_store.state(row, now),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        created_by=row.created_by,
    )


def effective(principal: Principal) -> frozenset[str]:
    perms = rbac.ROLE_PERMISSIONS[principal.role]
    return perms & frozenset(principal.scopes) if principal.scopes else perms


def _mine(call: Call[Any, Any]) -> Any:
    ns = call.principal.namespace
    return ApiToken.namespace == ns if ns is not None else None


@routes.route(
    "GET",
    "/whoami",
    permission="certificates:read",
    summary="The calling principal: role, namespace, permissions",
    response=Whoami,
)
async def whoami(call: Call[Empty, None]) -> Whoami:
    p = call.principal
    return Whoami(
        actor=p.actor, role=p.role, namespace=p.namespace, permissions=sorted(effective(p))
    )


@routes.route(
    "GET",
    "/tokens",
    permission="tokens:read",
    summary="List API tokens (never their values)",
    query=TokenQuery,
    response=TokenPage,
)
async def list_tokens(call: Call[TokenQuery, None]) -> TokenPage:
    q = call.query
    now = call.now
    stmt = select(ApiToken)
    if (mine := _mine(call)) is not None:
        stmt = stmt.where(mine)
    if q.role:
        stmt = stmt.where(ApiToken.role == q.role)
    if q.state == "revoked":
        stmt = stmt.where(ApiToken.revoked_at.is_not(None))
    elif q.state == "expired":
        stmt = stmt.where(ApiToken.revoked_at.is_(None), ApiToken.expires_at <= now)
    elif q.state == "active":
        stmt = stmt.where(ApiToken.revoked_at.is_(None), ApiToken.expires_at > now)
    async with call.services.sessions() as session:
        rows, cursor = await page(
            session,
            stmt,
            TOKEN_SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    return TokenPage(items=[_out(r, now) for r in rows], next_cursor=cursor)


@routes.route(
    "POST",
    "/tokens",
    permission="tokens:manage",
    summary="Create an API token; the answer carries its value, shown once",
    body=TokenCreate,
    response=TokenCreated,
    status=201,
)
async def create_token(call: Call[Empty, TokenCreate]) -> TokenCreated:
    b = call.body
    p = call.principal
    settings = call.services.settings
    call.audit.update(role=b.role, namespace=b.namespace, name=b.name, scopes=list(b.scopes))
    if p.namespace is not None and b.namespace != p.namespace:
        raise Problem(403, f"a principal of namespace {p.namespace} creates tokens for it only")
    wanted = rbac.ROLE_PERMISSIONS[b.role]
    if b.scopes:
        wanted = wanted & frozenset(b.scopes)
    if not wanted <= effective(p):
        # No escalation: a token never grants what its creator does not hold.
        raise Problem(403, "the new token would have permissions its creator lacks")
    try:
        new = await token_store.create(
            call.services.sessions,
            role=b.role,
            namespace=b.namespace,
            scopes=list(b.scopes),
            lifetime=dt.timedelta(days=b.expires_in_days or settings.token_default_days),
            max_lifetime=dt.timedelta(days=settings.token_max_days),
            name=b.name,
            created_by=p.actor,
            now=call.now,
        )
    except token_store.TokenError as exc:
        raise Problem(400, str(exc)) from None
    call.audit.update(token_id=new.row.id)
    return TokenCreated(**_out(new.row, call.now).model_dump(), token=new.value)


@routes.route(
    "POST",
    "/tokens/{id}/revoke",
    permission="tokens:manage",
    summary="Revoke an API token",
    response=TokenOut,
    errors=(409,),
)
async def revoke_token(call: Call[Empty, None]) -> TokenOut:
    token_id = call.path["id"]
    stmt = select(ApiToken).where(ApiToken.id == token_id)
    if (mine := _mine(call)) is not None:
        stmt = stmt.where(mine)
    async with call.services.sessions() as session:
        row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise Problem(404, f"no API token {token_id}")
    if not await token_store.revoke(call.services.sessions, token_id, call.now):
        raise Problem(409, f"API token {token_id} is already revoked")
    async with call.services.sessions() as session:
        row = await session.get(ApiToken, token_id)
    assert row is not None
    return _out(row, call.now)
