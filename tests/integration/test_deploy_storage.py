"""Deployment targets and runs in the database (SQLite and PostgreSQL): migration 0014 matches
storage/models_deploy.py, and the repository keeps history and the target's current state."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from deploy import repository
from deploy.errors import DeployError
from deploy.targets import Endpoint, Target
from storage.engine import create_engine, migrate, session_factory
from storage.models import Base
from storage.models_deploy import DeployRun, DeployTarget

TABLES = {DeployTarget.__tablename__, DeployRun.__tablename__}
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


def _target(name: str = "web", **changes: Any) -> Target:
    values: dict[str, Any] = {
        "name": name,
        "host": "127.0.0.1",
        "port": 2222,
        "username": "deploy",
        "key_file": None,
        "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample",
        "host_key_fingerprint": "SHA256:abc",
        "names": ("www.example.com", "10.0.0.5"),
        "profile": "tls-server",
        "key_path": "/srv/key.pem",
        "cert_path": "/srv/cert.pem",
        "chain_path": "/srv/chain.pem",
        "verify": Endpoint("127.0.0.1", 8443, None),
        "reload_command": "systemctl reload nginx",
        "key_mode": 0o640,
        "owner": "root",
        "group": "ssl-cert",
    }
    values.update(changes)
    return Target(**values)


def _table_of(diff: Any) -> str | None:
    """The table an autogenerate diff is about: ("add_table", Table), ("add_index", Index),
    ("add_column", schema, table, Column), ("modify_type", schema, table, column, …), …"""
    if isinstance(diff, list):  # column modifications come grouped
        return _table_of(diff[0])
    subject = diff[1]
    if hasattr(subject, "table"):  # Index, constraints
        return str(subject.table.name)
    if hasattr(subject, "name") and diff[0].endswith("_table"):
        return str(subject.name)
    return str(diff[2]) if len(diff) > 2 else None


async def test_migration_matches_the_models(engine: AsyncEngine) -> None:
    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection)
        return [d for d in compare_metadata(context, Base.metadata) if _table_of(d) in TABLES]

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_targets_and_runs(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    await repository.add_target(sessions, _target("web"), NOW)
    await repository.add_target(
        sessions, _target("api", key_file="/k", verify=Endpoint("h", 1, "a.example")), NOW
    )
    with pytest.raises(DeployError) as info:
        await repository.add_target(sessions, _target("web"), NOW)
    assert info.value.kind == "conflict"
    with pytest.raises(DeployError) as missing:
        await repository.get_target(sessions, "nope")
    assert missing.value.kind == "not_found"

    web = await repository.get_target(sessions, "web")
    assert web == _target("web")  # every field round-trips
    assert [t.name for t in await repository.list_targets(sessions)] == ["api", "web"]

    first = await repository.start_run(
        sessions, "web", dry_run=False, requester="deploy:web", now=NOW
    )
    step = {"step": "reload", "ok": False, "detail": "exit 1"}
    await repository.finish_run(
        sessions, first, status="rolled_back", detail="reload exit 1", steps=[step], now=NOW,
        finding="deploy_failed",
    )  # fmt: skip
    assert (await repository.get_target(sessions, "web")).certificate_sha256 is None
    later = NOW + dt.timedelta(minutes=1)
    second = await repository.start_run(
        sessions, "web", dry_run=False, requester="deploy:web", now=later
    )
    await repository.finish_run(
        sessions, second, status="deployed", detail="ok", steps=[], now=later,
        serial_hex="01ab", certificate_sha256="ff" * 32, not_after=later + dt.timedelta(days=90),
    )  # fmt: skip
    web = await repository.get_target(sessions, "web")
    assert (web.certificate_sha256, web.last_status) == ("ff" * 32, "deployed")
    runs = await repository.list_runs(sessions, "web")
    assert [(r.status, r.finding) for r in runs] == [
        ("deployed", None),
        ("rolled_back", "deploy_failed"),
    ]
    assert runs[1].steps == [step]
    assert await repository.list_runs(sessions, "api") == []
