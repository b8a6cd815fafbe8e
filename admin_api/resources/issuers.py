"""Issuers (the CA certificates of the hierarchy) and the CA's status: key backend health,
certificates by state."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Literal

from cryptography import x509
from pydantic import BaseModel
from sqlalchemy import func, select

from admin_api.context import Call
from admin_api.pagination import Sort, page
from admin_api.problems import Problem
from admin_api.registry import Registry
from admin_api.schemas import Empty, Page, PageQuery
from storage.models import Certificate, Issuer

routes = Registry("Issuers")

ISSUER_SORT = Sort(columns={"created_at": Issuer.created_at}, id_column=Issuer.id)
HEALTH_TIMEOUT = 5.0


class IssuerQuery(PageQuery):
    role: Literal["root", "intermediate", "ocsp", "alternate"] | None = None
    status: Literal["active", "retired"] | None = None
    sort: Literal["created_at", "-created_at"] = "created_at"


class IssuerOut(BaseModel):
    id: str
    role: str
    status: str
    chain: str | None
    parent_id: str | None
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    key_backend: str
    created_at: dt.datetime
    retired_at: dt.datetime | None
    certificate_pem: str


class KeyStatus(BaseModel):
    backend: str
    ok: bool
    detail: str


class CaStatus(BaseModel):
    issuers_active: int
    issuers_retired: int
    certificates: dict[str, int]  # "valid", "revoked", "expired", "signing"
    key_backend: KeyStatus | None


IssuerPage = Page[IssuerOut]


def _issuer(row: Issuer) -> IssuerOut:
    cert = x509.load_pem_x509_certificate(row.cert_pem.encode())
    return IssuerOut(
        id=row.id,
        role=row.role,
        status=row.status,
        chain=row.chain,
        parent_id=row.parent_id,
        subject=cert.subject.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_backend=row.key_backend,
        created_at=row.created_at,
        retired_at=row.retired_at,
        certificate_pem=row.cert_pem,
    )


@routes.route(
    "GET",
    "/issuers",
    permission="issuers:read",
    summary="List the CA's issuers",
    query=IssuerQuery,
    response=IssuerPage,
)
async def list_issuers(call: Call[IssuerQuery, None]) -> IssuerPage:
    q = call.query
    stmt = select(Issuer)
    if q.role:
        stmt = stmt.where(Issuer.role == q.role)
    if q.status:
        stmt = stmt.where(Issuer.status == q.status)
    async with call.services.sessions() as session:
        rows, cursor = await page(
            session,
            stmt,
            ISSUER_SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    return IssuerPage(items=[_issuer(r) for r in rows], next_cursor=cursor)


@routes.route(
    "GET",
    "/issuers/{id}",
    permission="issuers:read",
    summary="One issuer",
    response=IssuerOut,
)
async def get_issuer(call: Call[Empty, None]) -> IssuerOut:
    async with call.services.sessions() as session:
        row = await session.get(Issuer, call.path["id"])
    if row is None:
        raise Problem(404, f"no issuer {call.path['id']}")
    return _issuer(row)


@routes.route(
    "GET",
    "/ca/status",
    permission="issuers:read",
    summary="CA status: key backend health, issuers, certificates by status",
    response=CaStatus,
)
async def ca_status(call: Call[Empty, None]) -> CaStatus:
    now = call.now
    async with call.services.sessions() as session:
        roles = await session.execute(
            select(Issuer.status, func.count())
            .where(Issuer.role == "intermediate")
            .group_by(Issuer.status)
        )
        by_status = dict(roles.all())
        counts: dict[str, int] = {}
        for name, where in (
            ("valid", (Certificate.status == "valid", Certificate.not_after > now)),
            ("expired", (Certificate.status == "valid", Certificate.not_after <= now)),
            ("revoked", (Certificate.status == "revoked",)),
            ("signing", (Certificate.state == "signing",)),
        ):
            counts[name] = int(
                await session.scalar(select(func.count()).select_from(Certificate).where(*where))
                or 0
            )
    key_status: KeyStatus | None = None
    backend = call.services.key_backend
    if backend is not None:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT):
                health = await backend.health()
            key_status = KeyStatus(backend=backend.name, ok=health.ok, detail=health.detail)
        except TimeoutError:
            key_status = KeyStatus(backend=backend.name, ok=False, detail="no answer in time")
    return CaStatus(
        issuers_active=int(by_status.get("active", 0)),
        issuers_retired=int(by_status.get("retired", 0)),
        certificates=counts,
        key_backend=key_status,
    )
