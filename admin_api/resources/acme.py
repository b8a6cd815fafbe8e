"""ACME accounts (read) and External Account Binding keys (RFC 8555 §7.3.4).

EAB keys are made as ``certyard acme eab create`` makes them: a random kid and 256-bit HMAC key,
the key shown once in the answer to the POST. EAB keys are global: only principals without a
namespace see or manage them.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import String, cast, select, update

from admin_api import namespaces
from admin_api.context import Call
from admin_api.pagination import Sort, page
from admin_api.problems import Problem
from admin_api.registry import Registry
from admin_api.schemas import Empty, Model, Page, PageQuery, Text
from storage.models import Account, EabKey

routes = Registry("ACME")

ACCOUNT_SORT = Sort(columns={"created_at": Account.created_at}, id_column=Account.id)
EAB_SORT = Sort(columns={"created_at": EabKey.created_at}, id_column=EabKey.kid)
DomainPattern = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=r"^(\*\.)?[A-Za-z0-9.-]+$")
]
ProfileName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\w.-]+$")]


class AccountQuery(PageQuery):
    status: Literal["valid", "deactivated", "revoked"] | None = None
    contact: Text | None = Field(default=None, description="substring of a contact URL")
    eab_kid: Text | None = None
    sort: Literal["created_at", "-created_at"] = "-created_at"


class AccountOut(BaseModel):
    id: str
    status: str
    contact: list[str]
    created_at: dt.datetime
    eab_kid: str | None
    key_thumbprint: str


class EabQuery(PageQuery):
    state: Literal["unused", "bound", "revoked", "expired"] | None = None
    sort: Literal["created_at", "-created_at"] = "-created_at"


class EabOut(BaseModel):
    kid: str
    state: str
    account_id: str | None
    allowed_domains: list[str]
    allowed_profiles: list[str]
    max_validity_days: int | None
    description: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


class EabCreated(EabOut):
    hmac_key: str = Field(description="base64url HMAC key: shown this once, never again")


class EabCreate(Model):
    allowed_domains: list[DomainPattern] = Field(default_factory=list, max_length=100)
    allowed_profiles: list[ProfileName] = Field(default_factory=list, max_length=20)
    max_validity_days: int | None = Field(default=None, ge=1, le=3650)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    description: Annotated[str, StringConstraints(max_length=255, pattern=r"^[^\x00-\x1f]*$")] = ""


AccountPage = Page[AccountOut]
EabPage = Page[EabOut]


def _account(row: Account) -> AccountOut:
    return AccountOut(
        id=row.id,
        status=row.status,
        contact=[str(c) for c in row.contact],
        created_at=row.created_at,
        eab_kid=row.eab_kid,
        key_thumbprint=row.key_thumbprint,
    )


def _eab_state(row: EabKey, now: dt.datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.account_id:
        return "bound"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "unused"


def _eab(row: EabKey, now: dt.datetime) -> EabOut:
    return EabOut(
        kid=row.kid,
        state=_eab_state(row, now),
        account_id=row.account_id,
        allowed_domains=[str(d) for d in row.allowed_domains],
        allowed_profiles=[str(p) for p in row.allowed_profiles],
        max_validity_days=row.max_validity_days,
        description=row.description,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


@routes.route(
    "GET",
    "/acme/accounts",
    permission="acme:read",
    summary="List ACME accounts",
    query=AccountQuery,
    response=AccountPage,
)
async def list_accounts(call: Call[AccountQuery, None]) -> AccountPage:
    q = call.query
    stmt = select(Account)
    if q.status:
        stmt = stmt.where(Account.status == q.status)
    if q.contact:
        stmt = stmt.where(cast(Account.contact, String).contains(q.contact, autoescape=True))
    if q.eab_kid:
        stmt = stmt.where(Account.eab_kid == q.eab_kid)
    stmt = namespaces.restrict(stmt, call.principal, namespaces.subject_of("acme:", Account.id))
    async with call.services.sessions() as session:
        rows, cursor = await page(
            session,
            stmt,
            ACCOUNT_SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    return AccountPage(items=[_account(r) for r in rows], next_cursor=cursor)


@routes.route(
    "GET",
    "/acme/accounts/{id}",
    permission="acme:read",
    summary="One ACME account",
    response=AccountOut,
)
async def get_account(call: Call[Empty, None]) -> AccountOut:
    stmt = namespaces.restrict(
        select(Account).where(Account.id == call.path["id"]),
        call.principal,
        namespaces.subject_of("acme:", Account.id),
    )
    async with call.services.sessions() as session:
        row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise Problem(404, f"no ACME account {call.path['id']}")
    return _account(row)


def _global(call: Call[Any, Any], what: str) -> None:
    if not namespaces.global_only(call.principal):
        raise Problem(403, f"{what} are global: a namespace-bound principal cannot manage them")


@routes.route(
    "GET",
    "/acme/eab-keys",
    permission="acme:read",
    summary="List EAB keys (never the key)",
    query=EabQuery,
    response=EabPage,
)
async def list_eab_keys(call: Call[EabQuery, None]) -> EabPage:
    q = call.query
    now = call.now
    if not namespaces.global_only(call.principal):
        return EabPage(items=[], next_cursor=None)
    stmt = select(EabKey)
    if q.state == "revoked":
        stmt = stmt.where(EabKey.revoked_at.is_not(None))
    elif q.state == "bound":
        stmt = stmt.where(EabKey.revoked_at.is_(None), EabKey.account_id.is_not(None))
    elif q.state == "expired":
        stmt = stmt.where(
            EabKey.revoked_at.is_(None), EabKey.account_id.is_(None), EabKey.expires_at <= now
        )
    elif q.state == "unused":
        stmt = stmt.where(
            EabKey.revoked_at.is_(None),
            EabKey.account_id.is_(None),
            (EabKey.expires_at.is_(None)) | (EabKey.expires_at > now),
        )
    async with call.services.sessions() as session:
        rows, cursor = await page(
            session,
            stmt,
            EAB_SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    return EabPage(items=[_eab(r, now) for r in rows], next_cursor=cursor)


@routes.route(
    "POST",
    "/acme/eab-keys",
    permission="eab:manage",
    summary="Create an EAB key; the answer carries the HMAC key, shown once",
    body=EabCreate,
    response=EabCreated,
    status=201,
)
async def create_eab_key(call: Call[Empty, EabCreate]) -> EabCreated:
    _global(call, "EAB keys")
    b = call.body
    now = call.now
    # As certyard acme eab create (certyard/acme_commands.py): kid-<random>, 32 random bytes.
    row = EabKey(
        kid="kid-" + secrets.token_urlsafe(12),
        hmac_key=secrets.token_bytes(32),
        created_at=now,
        expires_at=now + dt.timedelta(days=b.expires_in_days) if b.expires_in_days else None,
        revoked_at=None,
        account_id=None,
        allowed_domains=[d.lower() for d in b.allowed_domains],
        allowed_profiles=list(b.allowed_profiles),
        max_validity_days=b.max_validity_days,
        description=b.description,
    )
    async with call.services.sessions.begin() as session:
        session.add(row)
    call.audit.update(kid=row.kid)
    hmac_b64 = base64.urlsafe_b64encode(row.hmac_key).decode().rstrip("=")
    return EabCreated(**_eab(row, now).model_dump(), hmac_key=hmac_b64)


@routes.route(
    "POST",
    "/acme/eab-keys/{kid}/revoke",
    permission="eab:manage",
    summary="Revoke an EAB key (its account keeps working; no new account can bind it)",
    response=EabOut,
    errors=(409,),
)
async def revoke_eab_key(call: Call[Empty, None]) -> EabOut:
    _global(call, "EAB keys")
    kid = call.path["kid"]
    now = call.now
    async with call.services.sessions.begin() as session:
        result = await session.execute(
            update(EabKey)
            .where(EabKey.kid == kid, EabKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        row = await session.get(EabKey, kid)
    if row is None:
        raise Problem(404, f"no EAB key {kid}")
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Problem(409, f"EAB key {kid} is already revoked")
    return _eab(row, now)
