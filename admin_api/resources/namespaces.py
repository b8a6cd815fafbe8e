"""Namespace bindings: which subject (a certificate requester such as "acme:<account id>" or
"est:<label>", or "scan:<scan id>") belongs to which namespace (admin_api/namespaces.py)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import delete, select

from admin_api.context import Call
from admin_api.pagination import Sort, page
from admin_api.problems import Problem
from admin_api.registry import Registry
from admin_api.schemas import PATH_PATTERN, Empty, Model, Page, PageQuery
from admin_api.tokens import NAMESPACE_RE
from storage.models_admin import NamespaceBinding

routes = Registry("Namespaces")

BINDING_SORT = Sort(
    columns={"subject": NamespaceBinding.subject}, id_column=NamespaceBinding.subject
)
Subject = Annotated[str, StringConstraints(pattern=PATH_PATTERN)]
Namespace = Annotated[str, StringConstraints(pattern=NAMESPACE_RE.pattern)]


class BindingQuery(PageQuery):
    namespace: Namespace | None = None
    sort: Literal["subject", "-subject"] = "subject"


class BindingOut(BaseModel):
    subject: str
    namespace: str
    created_at: dt.datetime


class BindingSet(Model):
    namespace: Namespace = Field(description="the namespace the subject belongs to")


BindingPage = Page[BindingOut]


def _out(row: NamespaceBinding) -> BindingOut:
    return BindingOut(subject=row.subject, namespace=row.namespace, created_at=row.created_at)


def _require_global(call: Call[Any, Any]) -> None:
    if call.principal.namespace is not None:
        raise Problem(403, "only a principal without a namespace manages namespace bindings")


@routes.route(
    "GET",
    "/namespaces/bindings",
    permission="namespaces:manage",
    summary="List namespace bindings",
    query=BindingQuery,
    response=BindingPage,
)
async def list_bindings(call: Call[BindingQuery, None]) -> BindingPage:
    q = call.query
    stmt = select(NamespaceBinding)
    if q.namespace:
        stmt = stmt.where(NamespaceBinding.namespace == q.namespace)
    if call.principal.namespace is not None:
        stmt = stmt.where(NamespaceBinding.namespace == call.principal.namespace)
    async with call.services.sessions() as session:
        rows, cursor = await page(
            session,
            stmt,
            BINDING_SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    return BindingPage(items=[_out(r) for r in rows], next_cursor=cursor)


@routes.route(
    "PUT",
    "/namespaces/bindings/{subject}",
    permission="namespaces:manage",
    summary="Bind a subject (acme:<account>, est:<label>, scan:<id>, ...) to a namespace",
    body=BindingSet,
    response=BindingOut,
)
async def put_binding(call: Call[Empty, BindingSet]) -> BindingOut:
    _require_global(call)
    subject = call.path["subject"]
    call.audit.update(namespace=call.body.namespace)
    async with call.services.sessions.begin() as session:
        row = await session.get(NamespaceBinding, subject)
        if row is None:
            row = NamespaceBinding(
                subject=subject, namespace=call.body.namespace, created_at=call.now
            )
            session.add(row)
        else:
            row.namespace = call.body.namespace
    return _out(row)


@routes.route(
    "DELETE",
    "/namespaces/bindings/{subject}",
    permission="namespaces:manage",
    summary="Remove a subject's namespace binding",
)
async def delete_binding(call: Call[Empty, None]) -> None:
    _require_global(call)
    subject = call.path["subject"]
    async with call.services.sessions.begin() as session:
        result = await session.execute(
            delete(NamespaceBinding).where(NamespaceBinding.subject == subject)
        )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Problem(404, f"no binding for {subject}")
