"""EST users (HTTP Basic, RFC 7030 §3.2.3) and enrollments held for approval (§4.2.3).

The same rules as ``certyard est user add|remove`` and ``certyard est approve|reject``
(certyard/est_commands.py): only the scrypt hash of a password is stored (est_server/auth.py),
a decision flips a pending request once. An EST user or request belongs to the namespace its
label ("est:<label>") is bound to; a user allowed every label is global.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from admin_api import namespaces
from admin_api.context import Call
from admin_api.pagination import Sort, page
from admin_api.problems import Problem
from admin_api.registry import Registry
from admin_api.schemas import Empty, Model, Page, PageQuery
from est_server.auth import hash_password
from storage.models import EstPending, EstUser

routes = Registry("EST")

USER_SORT = Sort(
    columns={"name": EstUser.name, "created_at": EstUser.created_at}, id_column=EstUser.name
)
PENDING_SORT = Sort(columns={"created_at": EstPending.created_at}, id_column=EstPending.id)
# RFC 7617 §2: the user-id of HTTP Basic cannot contain a colon.
UserName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^:\x00-\x1f\x7f]+$")
]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\w.-]+$")]
Password = Annotated[str, StringConstraints(min_length=8, max_length=1024)]


class UserQuery(PageQuery):
    label: Label | None = None
    sort: Literal["name", "-name", "created_at", "-created_at"] = "name"


class UserOut(BaseModel):
    name: str
    label: str | None
    created_at: dt.datetime


class UserCreate(Model):
    name: UserName
    password: Password = Field(description="at least 8 characters; stored as an scrypt hash")
    label: Label | None = Field(default=None, description="the only label it may enroll under")


class PendingQuery(PageQuery):
    state: Literal["pending", "approved", "rejected"] = "pending"
    label: Label | None = None
    sort: Literal["created_at", "-created_at"] = "created_at"


class PendingOut(BaseModel):
    id: str
    label: str
    subject: str
    identity: str
    source_address: str | None
    csr_sha256: str
    state: str
    certificate_id: str | None
    created_at: dt.datetime
    decided_at: dt.datetime | None


UserPage = Page[UserOut]
PendingPage = Page[PendingOut]


def _user(row: EstUser) -> UserOut:
    return UserOut(name=row.name, label=row.label, created_at=row.created_at)


def _pending(row: EstPending) -> PendingOut:
    return PendingOut(
        id=row.id,
        label=row.label,
        subject=row.subject,
        identity=row.identity,
        source_address=row.source_address,
        csr_sha256=row.csr_sha256,
        state=row.state,
        certificate_id=row.certificate_id,
        created_at=row.created_at,
        decided_at=row.decided_at,
    )


def _label_subject(column: Any) -> Any:
    return namespaces.subject_of("est:", column)


@routes.route(
    "GET",
    "/est/users",
    permission="est:read",
    summary="List EST users",
    query=UserQuery,
    response=UserPage,
)
async def list_est_users(call: Call[UserQuery, None]) -> UserPage:
    q = call.query
    stmt = select(EstUser)
    if q.label:
        stmt = stmt.where(EstUser.label == q.label)
    stmt = namespaces.restrict(stmt, call.principal, _label_subject(EstUser.label))
    async with call.services.sessions() as session:
        rows, cursor = await page(
            session,
            stmt,
            USER_SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    return UserPage(items=[_user(r) for r in rows], next_cursor=cursor)


async def _label_in_namespace(call: Call[Any, Any], label: str | None) -> bool:
    ns = call.principal.namespace
    if ns is None:
        return True
    if label is None:
        return False
    async with call.services.sessions() as session:
        found = await session.execute(namespaces.subjects(ns))
        return f"est:{label}" in set(found.scalars())


@routes.route(
    "POST",
    "/est/users",
    permission="est:manage",
    summary="Add an EST user",
    body=UserCreate,
    response=UserOut,
    status=201,
    errors=(409,),
)
async def add_est_user(call: Call[Empty, UserCreate]) -> UserOut:
    b = call.body
    call.audit.update(name=b.name, label=b.label)
    if b.label is not None and b.label not in call.services.est_labels:
        raise Problem(400, f"no EST label {b.label!r} in the settings")
    if not await _label_in_namespace(call, b.label):
        raise Problem(403, "a namespace-bound principal adds users for its own labels only")
    # scrypt is deliberately slow: off the event loop.
    password_hash = await asyncio.to_thread(hash_password, b.password)
    row = EstUser(name=b.name, label=b.label, password_hash=password_hash, created_at=call.now)
    try:
        async with call.services.sessions.begin() as session:
            session.add(row)
    except IntegrityError:
        raise Problem(409, f"EST user {b.name} already exists") from None
    return _user(row)


@routes.route(
    "DELETE",
    "/est/users/{name}",
    permission="est:manage",
    summary="Remove an EST user",
)
async def remove_est_user(call: Call[Empty, None]) -> None:
    name = call.path["name"]
    stmt = namespaces.restrict(
        select(EstUser).where(EstUser.name == name), call.principal, _label_subject(EstUser.label)
    )
    async with call.services.sessions.begin() as session:
        row = (await session.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise Problem(404, f"no EST user {name}")
        await session.execute(delete(EstUser).where(EstUser.name == name))


@routes.route(
    "GET",
    "/est/pending",
    permission="est:read",
    summary="Enrollments held for approval (and decided ones, with ?state=)",
    query=PendingQuery,
    response=PendingPage,
)
async def list_est_pending(call: Call[PendingQuery, None]) -> PendingPage:
    q = call.query
    stmt = select(EstPending).where(EstPending.state == q.state)
    if q.label:
        stmt = stmt.where(EstPending.label == q.label)
    stmt = namespaces.restrict(stmt, call.principal, _label_subject(EstPending.label))
    async with call.services.sessions() as session:
        rows, cursor = await page(
            session,
            stmt,
            PENDING_SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    return PendingPage(items=[_pending(r) for r in rows], next_cursor=cursor)


async def _decide(call: Call[Empty, None], state: str) -> PendingOut:
    pending_id = call.path["id"]
    visible = namespaces.restrict(
        select(EstPending).where(EstPending.id == pending_id),
        call.principal,
        _label_subject(EstPending.label),
    )
    async with call.services.sessions.begin() as session:
        row = (await session.execute(visible)).scalar_one_or_none()
        if row is None:
            raise Problem(404, f"no EST enrollment {pending_id}")
        call.audit.update(label=row.label, subject=row.subject)
        # A conditional UPDATE: two operators deciding at once, one wins (as the CLI does).
        result = await session.execute(
            update(EstPending)
            .where(EstPending.id == pending_id, EstPending.state == "pending")
            .values(state=state, decided_at=call.now)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Problem(409, f"EST enrollment {pending_id} was already decided ({row.state})")
        await session.refresh(row)
    return _pending(row)


@routes.route(
    "POST",
    "/est/pending/{id}/approve",
    permission="est:approve",
    summary="Approve a held enrollment (the device gets its certificate on its next re-post)",
    response=PendingOut,
    errors=(409,),
)
async def approve_est_enrollment(call: Call[Empty, None]) -> PendingOut:
    return await _decide(call, "approved")


@routes.route(
    "POST",
    "/est/pending/{id}/reject",
    permission="est:approve",
    summary="Reject a held enrollment (the device gets 403)",
    response=PendingOut,
    errors=(409,),
)
async def reject_est_enrollment(call: Call[Empty, None]) -> PendingOut:
    return await _decide(call, "rejected")
