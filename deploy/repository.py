"""Deployment targets and runs in the database (storage/models_deploy.py)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deploy.errors import DeployError
from deploy.targets import Target, from_row
from storage.models_deploy import DeployRun, DeployTarget


async def add_target(
    sessions: async_sessionmaker[AsyncSession],
    target: Target,
    now: dt.datetime,
    *,
    also: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> None:
    """Store a new target; ``also`` runs in the same transaction (the audit entry)."""
    row = DeployTarget(
        name=target.name,
        host=target.host,
        port=target.port,
        username=target.username,
        key_file=target.key_file,
        host_key=target.host_key,
        host_key_fingerprint=target.host_key_fingerprint,
        names=list(target.names),
        profile=target.profile,
        key_path=target.key_path,
        cert_path=target.cert_path,
        chain_path=target.chain_path,
        fullchain_path=target.fullchain_path,
        key_mode=target.key_mode,
        cert_mode=target.cert_mode,
        owner=target.owner,
        group=target.group,
        reload_command=target.reload_command,
        verify_host=target.verify.host,
        verify_port=target.verify.port,
        verify_sni=target.verify.sni,
        created_at=now,
        updated_at=now,
    )
    try:
        async with sessions.begin() as session:
            if await session.get(DeployTarget, target.name) is not None:
                raise DeployError("conflict", f"target {target.name!r} already exists")
            session.add(row)
            if also is not None:
                await also(session)
    except IntegrityError:  # a concurrent add of the same name
        raise DeployError("conflict", f"target {target.name!r} already exists") from None


async def set_host_key(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    host_key: str,
    fingerprint: str,
    now: dt.datetime,
    *,
    also: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> str:
    """Pin a new host key (the host was re-installed); returns the old fingerprint."""
    async with sessions.begin() as session:
        row = await session.get(DeployTarget, name)
        if row is None:
            raise DeployError("not_found", f"no deployment target {name!r}")
        old = row.host_key_fingerprint
        row.host_key, row.host_key_fingerprint, row.updated_at = host_key, fingerprint, now
        if also is not None:
            await also(session)
    return old


async def get_target(sessions: async_sessionmaker[AsyncSession], name: str) -> Target:
    async with sessions() as session:
        row = await session.get(DeployTarget, name)
    if row is None:
        raise DeployError("not_found", f"no deployment target {name!r}")
    return from_row(row)


async def list_targets(sessions: async_sessionmaker[AsyncSession]) -> list[Target]:
    async with sessions() as session:
        rows = (await session.scalars(select(DeployTarget).order_by(DeployTarget.name))).all()
    return [from_row(row) for row in rows]


async def start_run(
    sessions: async_sessionmaker[AsyncSession],
    target: str,
    *,
    dry_run: bool,
    requester: str,
    now: dt.datetime,
) -> str:
    run_id = "dep-" + secrets.token_urlsafe(12)
    async with sessions.begin() as session:
        session.add(
            DeployRun(
                id=run_id,
                target_name=target,
                started_at=now,
                status="running",
                dry_run=dry_run,
                requester=requester,
                detail="",
                steps=[],
            )
        )
    return run_id


async def finish_run(
    sessions: async_sessionmaker[AsyncSession],
    run_id: str,
    *,
    status: str,
    detail: str,
    steps: Sequence[dict[str, Any]],
    now: dt.datetime,
    finding: str | None = None,
    key_origin: str | None = None,
    certificate_id: str | None = None,
    serial_hex: str | None = None,
    certificate_sha256: str | None = None,
    not_after: dt.datetime | None = None,
) -> None:
    """Close the run; on "deployed" the target records what it now serves."""
    async with sessions.begin() as session:
        run = await session.get(DeployRun, run_id)
        assert run is not None
        run.status, run.detail, run.steps, run.finished_at = status, detail, list(steps), now
        run.finding, run.key_origin = finding, key_origin
        run.certificate_id, run.serial_hex = certificate_id, serial_hex
        run.certificate_sha256 = certificate_sha256
        target = await session.get(DeployTarget, run.target_name)
        assert target is not None
        target.last_status, target.last_run_at = status, now
        if status == "deployed":
            target.certificate_id = certificate_id
            target.certificate_sha256 = certificate_sha256
            target.certificate_not_after = not_after


async def list_runs(
    sessions: async_sessionmaker[AsyncSession], target: str | None = None, limit: int = 50
) -> list[DeployRun]:
    query = select(DeployRun).order_by(DeployRun.started_at.desc()).limit(limit)
    if target is not None:
        query = query.where(DeployRun.target_name == target)
    async with sessions() as session:
        return list((await session.scalars(query)).all())
