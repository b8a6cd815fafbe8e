"""Scans (runs of ``certyard scan`` or started here), the endpoints they saw, their findings.

A scan started through the API runs in this process (admin_api/scan_jobs.py) and is recorded in
the inventory like one of ``certyard scan``.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import Select, select

from admin_api import namespaces
from admin_api.context import Call
from admin_api.pagination import Sort, export_response, ordered, page
from admin_api.problems import Problem
from admin_api.registry import Registry
from admin_api.schemas import Empty, ExportFormat, Model, Page, PageQuery, Text
from scanner.runner import ScanOptions
from scanner.scan import ScanRequest
from scanner.stored_scan import UnknownScan, load_scan
from scanner.targets import TargetError, iter_specs, parse_excludes
from storage.models import ScanEndpoint, ScanFinding, ScanObservation, ScanRun
from storage.models_admin import NamespaceBinding

routes = Registry("Scans")

SCAN_SORT = Sort(columns={"started_at": ScanRun.started_at}, id_column=ScanRun.id)
ENDPOINT_SORT = Sort(
    columns={"last_seen": ScanEndpoint.last_seen, "first_seen": ScanEndpoint.first_seen},
    id_column=ScanEndpoint.id,
)
FINDING_SORT = Sort(columns={"id": ScanFinding.id}, id_column=ScanFinding.id)


class ScanQuery(PageQuery):
    status: Literal["running", "done", "interrupted"] | None = None
    sort: Literal["started_at", "-started_at"] = "-started_at"


class ScanOut(BaseModel):
    id: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    parameters: dict[str, Any]
    summary: dict[str, Any] | None


Target = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\s\x00-\x1f]+$")
]


class ScanStart(Model):
    """What ``certyard scan`` takes: targets (hosts, IPs, CIDR ranges), ports and options."""

    targets: list[Target] = Field(min_length=1, max_length=256)
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=lambda: [443], min_length=1, max_length=64
    )
    excludes: list[Target] = Field(default_factory=list, max_length=256)
    timeout: float = Field(default=5.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=5)
    concurrency: int = Field(default=64, ge=1, le=1024)
    expiring_days: float = Field(default=30.0, ge=0, le=3650)


class ScanReport(BaseModel):
    """The JSON report of ``certyard scan`` (scanner/report_json.py), read back from the
    inventory."""

    model_config = ConfigDict(extra="allow")


class EndpointQuery(PageQuery):
    ip: Text | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    host: Text | None = None
    sort: Literal["last_seen", "-last_seen", "first_seen", "-first_seen"] = "-last_seen"


class EndpointOut(BaseModel):
    id: int
    ip: str
    port: int
    sni: str
    host: str | None
    protocol: str
    first_seen: dt.datetime
    last_seen: dt.datetime


class FindingFilter(Model):
    scan_id: Text | None = None
    severity: Literal["high", "medium", "low"] | None = None
    code: Text | None = None
    host: Text | None = None


class FindingQuery(FindingFilter, PageQuery):
    sort: Literal["id", "-id"] = "-id"


class FindingExportQuery(FindingFilter, ExportFormat):
    sort: Literal["id", "-id"] = "-id"


class FindingOut(BaseModel):
    id: int
    scan_id: str
    code: str
    severity: str
    detail: str
    cert_sha256: str | None
    ip: str
    port: int
    sni: str
    host: str | None


FINDING_COLUMNS = list(FindingOut.model_fields)
ScanPage = Page[ScanOut]
EndpointPage = Page[EndpointOut]
FindingPage = Page[FindingOut]


def _scan_out(row: ScanRun) -> ScanOut:
    return ScanOut(
        id=row.id,
        status=row.status,
        started_at=row.started_at,
        finished_at=row.finished_at,
        parameters=dict(row.parameters or {}),
        summary=row.summary,
    )


def _scoped_scans(call: Call[Any, Any], stmt: Select[Any]) -> Select[Any]:
    return namespaces.restrict(stmt, call.principal, namespaces.subject_of("scan:", ScanRun.id))


@routes.route(
    "GET",
    "/scans",
    permission="scans:read",
    summary="List scans",
    query=ScanQuery,
    response=ScanPage,
)
async def list_scans(call: Call[ScanQuery, None]) -> ScanPage:
    q = call.query
    stmt = select(ScanRun)
    if q.status:
        stmt = stmt.where(ScanRun.status == q.status)
    async with call.services.sessions() as session:
        rows, cursor = await page(
            session,
            _scoped_scans(call, stmt),
            SCAN_SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    return ScanPage(items=[_scan_out(r) for r in rows], next_cursor=cursor)


async def _visible_scan(call: Call[Any, Any], scan_id: str) -> ScanRun:
    async with call.services.sessions() as session:
        row: ScanRun | None = (
            await session.execute(_scoped_scans(call, select(ScanRun).where(ScanRun.id == scan_id)))
        ).scalar_one_or_none()
    if row is None:
        raise Problem(404, f"no scan {scan_id}")
    return row


@routes.route(
    "GET",
    "/scans/{id}",
    permission="scans:read",
    summary="One scan: status and summary",
    response=ScanOut,
)
async def get_scan(call: Call[Empty, None]) -> ScanOut:
    return _scan_out(await _visible_scan(call, call.path["id"]))


@routes.route(
    "GET",
    "/scans/{id}/report",
    permission="scans:read",
    summary="The scan's JSON report (as certyard scan writes it)",
    response=ScanReport,
)
async def get_scan_report(call: Call[Empty, None]) -> ScanReport:
    row = await _visible_scan(call, call.path["id"])
    try:
        stored = await load_scan(call.services.sessions, row.id)
    except UnknownScan:
        raise Problem(404, f"no scan {row.id}") from None
    return ScanReport.model_validate(stored.document())


@routes.route(
    "POST",
    "/scans",
    permission="scans:manage",
    summary="Start a scan (answers at once; poll GET /scans/{id})",
    body=ScanStart,
    response=ScanOut,
    status=202,
)
async def start_scan(call: Call[Empty, ScanStart]) -> ScanOut:
    b = call.body
    try:
        # Parse now: a bad target is the client's 400, not a failed background task.
        list(iter_specs(b.targets))
        parse_excludes(b.excludes)
    except TargetError as exc:
        raise Problem(400, str(exc)) from None
    request = ScanRequest(
        targets=list(b.targets),
        ports=list(b.ports),
        excludes=list(b.excludes),
        options=ScanOptions(
            timeout=b.timeout,
            retries=b.retries,
            concurrency=b.concurrency,
            expiring_days=b.expiring_days,
        ),
    )
    now = call.now
    run = ScanRun(
        id="scan-" + secrets.token_urlsafe(12),
        started_at=now,
        finished_at=None,
        status="running",
        parameters={**request.parameters(), "started_by": call.principal.actor},
        summary=None,
    )
    async with call.services.sessions.begin() as session:
        session.add(run)
        if call.principal.namespace is not None:
            # A team's scan is the team's: bound to its namespace from the start.
            session.add(
                NamespaceBinding(
                    subject=f"scan:{run.id}", namespace=call.principal.namespace, created_at=now
                )
            )
    call.audit.update(scan=run.id, targets=list(b.targets), ports=list(b.ports))
    services = call.services
    services.scans.start(run.id, request, services.sessions, services.clock, services.scan_anchors)
    return _scan_out(run)


@routes.route(
    "POST",
    "/scans/{id}/cancel",
    permission="scans:manage",
    summary="Cancel a scan running on this instance (it ends as interrupted)",
    response=ScanOut,
    errors=(409,),
)
async def cancel_scan(call: Call[Empty, None]) -> ScanOut:
    row = await _visible_scan(call, call.path["id"])
    if not await call.services.scans.cancel(row.id):
        raise Problem(409, f"scan {row.id} is not running on this instance ({row.status})")
    return _scan_out(await _visible_scan(call, row.id))


@routes.route(
    "GET",
    "/endpoints",
    permission="scans:read",
    summary="Endpoints seen by scans",
    query=EndpointQuery,
    response=EndpointPage,
)
async def list_endpoints(call: Call[EndpointQuery, None]) -> EndpointPage:
    q = call.query
    stmt = select(ScanEndpoint)
    if q.ip:
        stmt = stmt.where(ScanEndpoint.ip == q.ip)
    if q.port is not None:
        stmt = stmt.where(ScanEndpoint.port == q.port)
    if q.host:
        stmt = stmt.where(ScanEndpoint.host == q.host)
    if call.principal.namespace is not None:
        seen = select(ScanObservation.endpoint_id).where(
            namespaces.subject_of("scan:", ScanObservation.scan_id).in_(
                namespaces.subjects(call.principal.namespace)
            )
        )
        stmt = stmt.where(ScanEndpoint.id.in_(seen))
    async with call.services.sessions() as session:
        rows, cursor = await page(
            session,
            stmt,
            ENDPOINT_SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    return EndpointPage(
        items=[
            EndpointOut(
                id=r.id,
                ip=r.ip,
                port=r.port,
                sni=r.sni,
                host=r.host,
                protocol=r.protocol,
                first_seen=r.first_seen,
                last_seen=r.last_seen,
            )
            for r in rows
        ],
        next_cursor=cursor,
    )


def _findings(call: Call[Any, Any], f: FindingFilter) -> Select[Any]:
    stmt = select(ScanFinding)
    if f.scan_id:
        stmt = stmt.where(ScanFinding.scan_id == f.scan_id)
    if f.severity:
        stmt = stmt.where(ScanFinding.severity == f.severity)
    if f.code:
        stmt = stmt.where(ScanFinding.code == f.code)
    if f.host:
        stmt = stmt.where(
            ScanFinding.endpoint_id.in_(select(ScanEndpoint.id).where(ScanEndpoint.host == f.host))
        )
    return namespaces.restrict(
        stmt, call.principal, namespaces.subject_of("scan:", ScanFinding.scan_id)
    )


async def _finding_outs(call: Call[Any, Any], rows: list[ScanFinding]) -> list[FindingOut]:
    ids = {r.endpoint_id for r in rows}
    endpoints: dict[int, ScanEndpoint] = {}
    if ids:
        async with call.services.sessions() as session:
            for e in (
                await session.execute(select(ScanEndpoint).where(ScanEndpoint.id.in_(ids)))
            ).scalars():
                endpoints[e.id] = e
    out = []
    for r in rows:
        e = endpoints[r.endpoint_id]
        out.append(
            FindingOut(
                id=r.id,
                scan_id=r.scan_id,
                code=r.code,
                severity=r.severity,
                detail=r.detail,
                cert_sha256=r.cert_sha256,
                ip=e.ip,
                port=e.port,
                sni=e.sni,
                host=e.host,
            )
        )
    return out


@routes.route(
    "GET",
    "/findings/export",
    permission="scans:read",
    summary="Export findings (CSV or JSON)",
    query=FindingExportQuery,
    response=FindingOut,
    export=True,
)
async def export_findings(call: Call[FindingExportQuery, None]) -> Any:
    limit = call.services.settings.export_max_rows
    stmt = ordered(_findings(call, call.query), FINDING_SORT, call.query.sort).limit(limit + 1)
    async with call.services.sessions() as session:
        rows = list((await session.execute(stmt)).scalars())
    data = [f.model_dump(mode="json") for f in await _finding_outs(call, rows[:limit])]
    return export_response(call.query.format, data, FINDING_COLUMNS, "findings", len(rows) > limit)


@routes.route(
    "GET",
    "/findings",
    permission="scans:read",
    summary="Search findings",
    query=FindingQuery,
    response=FindingPage,
)
async def list_findings(call: Call[FindingQuery, None]) -> FindingPage:
    q = call.query
    async with call.services.sessions() as session:
        rows, cursor = await page(
            session,
            _findings(call, q),
            FINDING_SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    return FindingPage(items=await _finding_outs(call, list(rows)), next_cursor=cursor)
