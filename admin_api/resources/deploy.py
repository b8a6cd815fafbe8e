"""Deployment targets and their runs through the API, read only (docs/deploy.md, docs/admin-api.md
"Deployment targets").

Creating a target stays with ``certyard deploy target add``: its SSH host key is pinned by an
operator who checked the fingerprint out of band, never learnt over the network, and that step
has no safe equivalent in a web request. Targets span every team, so a namespace-bound principal
is refused (403) like for the audit trail.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from admin_api.context import Call
from admin_api.namespaces import require_global
from admin_api.pagination import Sort, page
from admin_api.problems import Problem
from admin_api.registry import Registry
from admin_api.schemas import Empty, Page, PageQuery, Text
from deploy.targets import Endpoint, format_endpoint
from storage.models_deploy import DeployRun, DeployTarget

routes = Registry("Deploy")

TARGET_SORT = Sort(columns={"name": DeployTarget.name}, id_column=DeployTarget.name)
RUN_SORT = Sort(columns={"started_at": DeployRun.started_at}, id_column=DeployRun.id)


REFUSAL = "deployment targets span every namespace; a namespace-bound principal cannot read them"


class TargetQuery(PageQuery):
    sort: Literal["name", "-name"] = "name"


class TargetOut(BaseModel):
    name: str
    host: str
    port: int
    username: str
    credentials: str = Field(description="the private key file on certyard's host, or ssh-agent")
    host_key_fingerprint: str = Field(description="the pinned host key, SHA256:…")
    names: list[str] = Field(description="DNS names and IP addresses the certificate covers")
    profile: str
    key_path: str
    cert_path: str
    chain_path: str | None
    fullchain_path: str | None
    key_mode: str = Field(description="octal, e.g. 0600")
    cert_mode: str
    owner: str | None
    group: str | None
    reload_command: str
    verify: str = Field(description="host:port,sni that must serve the new certificate")
    certificate_id: str | None = Field(description="what the last successful deployment put")
    certificate_sha256: str | None
    certificate_not_after: dt.datetime | None
    last_status: str | None
    last_run_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class RunQuery(PageQuery):
    target: Text | None = Field(default=None, description="runs of this target only")
    status: (
        Literal["running", "deployed", "rolled_back", "failed", "host_key_mismatch", "dry_run"]
        | None
    ) = None
    sort: Literal["started_at", "-started_at"] = "-started_at"


class RunOut(BaseModel):
    id: str
    target: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    status: str
    dry_run: bool
    requester: str
    key_origin: str | None
    certificate_id: str | None
    serial_hex: str | None
    certificate_sha256: str | None
    detail: str
    finding: str | None
    steps: list[dict[str, Any]]


TargetPage = Page[TargetOut]
RunPage = Page[RunOut]


def _verify_text(row: DeployTarget) -> str:
    # The form `certyard deploy target add --verify` takes.
    return format_endpoint(Endpoint(row.verify_host, row.verify_port, row.verify_sni))


def _target_out(row: DeployTarget) -> TargetOut:
    return TargetOut(
        name=row.name,
        host=row.host,
        port=row.port,
        username=row.username,
        credentials=row.key_file or "ssh-agent",
        host_key_fingerprint=row.host_key_fingerprint,
        names=[str(n) for n in row.names],
        profile=row.profile,
        key_path=row.key_path,
        cert_path=row.cert_path,
        chain_path=row.chain_path,
        fullchain_path=row.fullchain_path,
        key_mode=f"{row.key_mode:04o}",
        cert_mode=f"{row.cert_mode:04o}",
        owner=row.owner,
        group=row.group,
        reload_command=row.reload_command,
        verify=_verify_text(row),
        certificate_id=row.certificate_id,
        certificate_sha256=row.certificate_sha256,
        certificate_not_after=row.certificate_not_after,
        last_status=row.last_status,
        last_run_at=row.last_run_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@routes.route(
    "GET",
    "/deploy/targets",
    permission="deploy:read",
    summary="Deployment targets (created with `certyard deploy target add` only)",
    query=TargetQuery,
    response=TargetPage,
)
async def list_deploy_targets(call: Call[TargetQuery, None]) -> TargetPage:
    require_global(call.principal, REFUSAL)
    q = call.query
    async with call.services.sessions() as session:
        rows, cursor = await page(
            session,
            select(DeployTarget),
            TARGET_SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    return TargetPage(items=[_target_out(r) for r in rows], next_cursor=cursor)


@routes.route(
    "GET",
    "/deploy/targets/{name}",
    permission="deploy:read",
    summary="One deployment target",
    response=TargetOut,
)
async def get_deploy_target(call: Call[Empty, None]) -> TargetOut:
    require_global(call.principal, REFUSAL)
    name = call.path["name"]
    async with call.services.sessions() as session:
        row = await session.get(DeployTarget, name)
    if row is None:
        raise Problem(404, f"no deployment target {name!r}")
    return _target_out(row)


@routes.route(
    "GET",
    "/deploy/runs",
    permission="deploy:read",
    summary="The history of deployments, newest first (filters, cursor pagination)",
    query=RunQuery,
    response=RunPage,
)
async def list_deploy_runs(call: Call[RunQuery, None]) -> RunPage:
    require_global(call.principal, REFUSAL)
    q = call.query
    stmt = select(DeployRun)
    if q.target is not None:
        stmt = stmt.where(DeployRun.target_name == q.target)
    if q.status is not None:
        stmt = stmt.where(DeployRun.status == q.status)
    async with call.services.sessions() as session:
        rows, cursor = await page(
            session,
            stmt,
            RUN_SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    return RunPage(
        items=[
            RunOut(
                id=r.id,
                target=r.target_name,
                started_at=r.started_at,
                finished_at=r.finished_at,
                status=r.status,
                dry_run=r.dry_run,
                requester=r.requester,
                key_origin=r.key_origin,
                certificate_id=r.certificate_id,
                serial_hex=r.serial_hex,
                certificate_sha256=r.certificate_sha256,
                detail=r.detail,
                finding=r.finding,
                steps=[dict(s) for s in r.steps],
            )
            for r in rows
        ],
        next_cursor=cursor,
    )
