"""Helpers for the audit trail tests: a migrated database, raw SQL, the audit CLI in-process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from certyard import acme_commands, audit_commands, est_commands
from certyard.settings import Settings, load_settings
from storage.engine import create_engine, migrate, session_factory


@contextlib.asynccontextmanager
async def database(url: str) -> AsyncIterator[tuple[AsyncEngine, async_sessionmaker[AsyncSession]]]:
    engine = create_engine(url)
    try:
        await migrate(engine)
        yield engine, session_factory(engine)
    finally:
        await engine.dispose()


async def execute(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


@contextlib.contextmanager
def cli_env(data_dir: Path, db_url: str) -> Iterator[dict[str, str]]:
    """CERTYARD__* settings for the CLI (software key backend under ``data_dir``), set in this
    process while the block runs; yields the environment for a subprocess too."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CERTYARD__")}
    env.pop("CERTYARD_KEK", None)
    env |= {
        "CERTYARD__SERVER__DATA_DIR": str(data_dir),
        "CERTYARD__DATABASE__URL": db_url,
        "CERTYARD__CA__BACKEND": "software",
    }
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield env
    finally:
        os.environ.clear()
        os.environ.update(saved)


def settings() -> Settings:
    return load_settings(None)


def run_cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    """A ``certyard`` audit/est/acme command through its module's run() (what cli.main calls,
    without reconfiguring logging), in a fresh event loop: exit status, stdout, stderr."""
    # The commands' own parsers (each module's add_parsers), as certyard.cli builds them.
    parser = argparse.ArgumentParser(prog="certyard")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {"audit": audit_commands, "est": est_commands, "acme": acme_commands}
    for command_module in modules.values():
        command_module.add_parsers(sub)
    args = parser.parse_args(list(argv))
    module = modules[args.command]
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        _stdin(stdin),
    ):
        try:
            status = asyncio.run(module.run(settings(), args))
        except module.UsageError as exc:
            print(f"certyard: {exc}", file=err)
            status = 2
    return status, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def _stdin(content: str) -> Iterator[None]:
    import sys

    saved = sys.stdin
    sys.stdin = io.StringIO(content)
    try:
        yield
    finally:
        sys.stdin = saved
