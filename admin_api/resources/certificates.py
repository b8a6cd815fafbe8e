"""Certificates issued by certyard: search, read, export, revoke (through the CA)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import Select, String, cast, select

from admin_api import namespaces
from admin_api.context import Call
from admin_api.pagination import Sort, export_response, ordered, page
from admin_api.problems import Problem
from admin_api.registry import Registry
from admin_api.schemas import Empty, ExportFormat, Model, Page, PageQuery, Text
from ca.serials import serial_to_hex
from storage.models import Certificate
from storage.models_admin import NamespaceBinding

routes = Registry("Certificates")
SerialText = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f][0-9A-Fa-f:]{0,95}$")]

SORT = Sort(
    columns={
        "created_at": Certificate.created_at,
        "not_after": Certificate.not_after,
        "not_before": Certificate.not_before,
        "serial": Certificate.serial,
    },
    id_column=Certificate.id,
)
SortKey = Literal[
    "created_at",
    "-created_at",
    "not_after",
    "-not_after",
    "not_before",
    "-not_before",
    "serial",
    "-serial",
]

# RFC 5280 §5.3.1 CRLReason codes an operator may give (certificateHold is not offered: the
# CA/Browser Forum BRs §7.2.2 forbid it, and removeFromCRL only undoes a hold).
REASONS = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "privilegeWithdrawn": 9,
}
ReasonName = Literal[
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
]


class CertificateFilter(Model):
    name: Text | None = Field(default=None, description="a DNS name or IP address (substring)")
    serial: SerialText | None = Field(default=None, description="serial in hex (colons allowed)")
    issuer: Text | None = Field(default=None, description="issuer id")
    state: Literal["signing", "issued"] | None = None
    status: Literal["valid", "revoked", "expired"] | None = Field(
        default=None, description="expired: valid but past notAfter"
    )
    profile: Text | None = None
    requester: Text | None = Field(default=None, description="e.g. acme:<account>, est:<label>")
    expires_after: dt.datetime | None = Field(default=None, description="notAfter >= this")
    expires_before: dt.datetime | None = Field(default=None, description="notAfter < this")
    expiring_within_days: int | None = Field(
        default=None, ge=0, le=3650, description="valid, unexpired, notAfter within N days"
    )


class CertificateQuery(CertificateFilter, PageQuery):
    sort: SortKey = "-created_at"


class CertificateExportQuery(CertificateFilter, ExportFormat):
    sort: SortKey = "-created_at"


class CertificateOut(BaseModel):
    id: str
    serial: str
    issuer_id: str
    names: list[str]
    profile: str
    state: str
    status: str
    not_before: dt.datetime
    not_after: dt.datetime
    created_at: dt.datetime
    requester: str
    account_id: str | None
    namespace: str | None
    revoked_at: dt.datetime | None
    revocation_reason: int | None


class CertificateDetail(CertificateOut):
    chain_pem: str | None
    lint_warnings: list[str]


class RevokeBody(Model):
    reason: ReasonName = "unspecified"


CertificatePage = Page[CertificateOut]
EXPORT_COLUMNS = [
    "id",
    "serial",
    "issuer_id",
    "names",
    "profile",
    "state",
    "status",
    "not_before",
    "not_after",
    "created_at",
    "requester",
    "account_id",
    "namespace",
    "revoked_at",
    "revocation_reason",
]


def _out(row: Certificate, ns: dict[str, str]) -> CertificateOut:
    return CertificateOut(
        id=row.id,
        serial=row.serial,
        issuer_id=row.issuer_id,
        names=[str(n) for n in row.names],
        profile=row.profile,
        state=row.state,
        status=row.status,
        not_before=row.not_before,
        not_after=row.not_after,
        created_at=row.created_at,
        requester=row.requester,
        account_id=row.account_id,
        namespace=ns.get(row.requester),
        revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason,
    )


def _filtered(call: Call[Any, Any], f: CertificateFilter) -> Select[Any]:
    now = call.now
    stmt = select(Certificate)
    if f.name:
        stmt = stmt.where(cast(Certificate.names, String).contains(f.name.lower(), autoescape=True))
    if f.serial:
        number = int(f.serial.replace(":", ""), 16)
        # Serial 0 matches nothing (RFC 5280 §4.1.2.2: serials are positive).
        stmt = stmt.where(Certificate.serial == (serial_to_hex(number) if number > 0 else ""))
    if f.issuer:
        stmt = stmt.where(Certificate.issuer_id == f.issuer)
    if f.state:
        stmt = stmt.where(Certificate.state == f.state)
    if f.status == "expired":
        stmt = stmt.where(Certificate.status == "valid", Certificate.not_after <= now)
    elif f.status == "valid":
        stmt = stmt.where(Certificate.status == "valid", Certificate.not_after > now)
    elif f.status:
        stmt = stmt.where(Certificate.status == f.status)
    if f.profile:
        stmt = stmt.where(Certificate.profile == f.profile)
    if f.requester:
        stmt = stmt.where(Certificate.requester == f.requester)
    for bound in (f.expires_after, f.expires_before):
        if bound is not None and bound.tzinfo is None:
            raise Problem(400, "expires_after/expires_before need a time zone (e.g. Z)")
    if f.expires_after:
        stmt = stmt.where(Certificate.not_after >= f.expires_after)
    if f.expires_before:
        stmt = stmt.where(Certificate.not_after < f.expires_before)
    if f.expiring_within_days is not None:
        stmt = stmt.where(
            Certificate.status == "valid",
            Certificate.not_after > now,
            Certificate.not_after <= now + dt.timedelta(days=f.expiring_within_days),
        )
    return namespaces.restrict(stmt, call.principal, Certificate.requester)


async def _namespaces_of(call: Call[Any, Any], rows: list[Certificate]) -> dict[str, str]:
    requesters = {row.requester for row in rows}
    if not requesters:
        return {}
    async with call.services.sessions() as session:
        found = await session.execute(
            select(NamespaceBinding.subject, NamespaceBinding.namespace).where(
                NamespaceBinding.subject.in_(requesters)
            )
        )
        return {subject: namespace for subject, namespace in found.all()}


@routes.route(
    "GET",
    "/certificates/export",
    permission="certificates:read",
    summary="Export the inventory of issued certificates (CSV or JSON)",
    query=CertificateExportQuery,
    response=CertificateOut,
    export=True,
)
async def export_certificates(call: Call[CertificateExportQuery, None]) -> Any:
    limit = call.services.settings.export_max_rows
    stmt = _filtered(call, call.query)
    async with call.services.sessions() as session:
        rows = list(
            (await session.execute(ordered(stmt, SORT, call.query.sort).limit(limit + 1))).scalars()
        )
    ns = await _namespaces_of(call, rows)
    data = [_out(row, ns).model_dump(mode="json") for row in rows[:limit]]
    return export_response(
        call.query.format, data, EXPORT_COLUMNS, "certificates", len(rows) > limit
    )


@routes.route(
    "GET",
    "/certificates",
    permission="certificates:read",
    summary="Search issued certificates",
    query=CertificateQuery,
    response=CertificatePage,
)
async def list_certificates(call: Call[CertificateQuery, None]) -> CertificatePage:
    q = call.query
    async with call.services.sessions() as session:
        rows, next_cursor = await page(
            session,
            _filtered(call, q),
            SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    ns = await _namespaces_of(call, list(rows))
    return CertificatePage(items=[_out(r, ns) for r in rows], next_cursor=next_cursor)


async def _visible(call: Call[Any, Any], cert_id: str) -> Certificate:
    stmt = namespaces.restrict(
        select(Certificate).where(Certificate.id == cert_id), call.principal, Certificate.requester
    )
    async with call.services.sessions() as session:
        row: Certificate | None = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise Problem(404, f"no certificate {cert_id}")
    return row


def _detail(row: Certificate, ns: dict[str, str]) -> CertificateDetail:
    return CertificateDetail(
        **_out(row, ns).model_dump(),
        chain_pem=row.chain_pem,
        lint_warnings=[str(w) for w in row.lint_warnings or []],
    )


@routes.route(
    "GET",
    "/certificates/{id}",
    permission="certificates:read",
    summary="One issued certificate, with its chain",
    response=CertificateDetail,
)
async def get_certificate(call: Call[Empty, None]) -> CertificateDetail:
    row = await _visible(call, call.path["id"])
    return _detail(row, await _namespaces_of(call, [row]))


@routes.route(
    "POST",
    "/certificates/{id}/revoke",
    permission="certificates:revoke",
    summary="Revoke a certificate (RFC 5280 §5.3.1 reason)",
    body=RevokeBody,
    response=CertificateDetail,
    errors=(409, 503),
)
async def revoke_certificate(call: Call[Empty, RevokeBody]) -> CertificateDetail:
    row = await _visible(call, call.path["id"])
    revoker = call.services.revoker
    if revoker is None:
        raise Problem(503, "revocation is not available on this listener")
    call.audit.update(serial=row.serial, reason=call.body.reason)
    await revoker.revoke(row.id, REASONS[call.body.reason])
    row = await _visible(call, row.id)
    return _detail(row, await _namespaces_of(call, [row]))
