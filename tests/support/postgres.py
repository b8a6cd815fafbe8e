"""The PostgreSQL test cluster (scripts/postgres-test.sh): reachability and throwaway databases.

The tests get the cluster's URL from ``CERTYARD_TEST_POSTGRES_URL`` (``make test`` exports it),
a SQLAlchemy URL such as ``postgresql+asyncpg://postgres@127.0.0.1:55432/certyard_test``. Each
test that needs PostgreSQL creates its own database ``t_<random>`` and drops it afterwards.

The asyncpg calls run on a private event loop in a short-lived thread, so they never disturb the
event loop pytest-asyncio gives the test.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ENV_VAR = "CERTYARD_TEST_POSTGRES_URL"
CONNECT_TIMEOUT = 10.0

T = TypeVar("T")


def configured_url() -> str | None:
    return os.environ.get(ENV_VAR) or None


def asyncpg_dsn(url: str) -> str:
    """``postgresql+asyncpg://...`` (SQLAlchemy) -> ``postgresql://...`` (asyncpg/libpq)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def with_database(url: str, database: str) -> str:
    """The same server URL, naming another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run ``factory()`` to completion on a fresh event loop in a separate thread."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        async def main() -> T:
            return await factory()

        try:
            result.append(asyncio.run(main()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="postgres-helper", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT * 6)
    if thread.is_alive():
        raise TimeoutError("PostgreSQL helper did not finish in time")
    if error:
        raise error[0]
    return result[0]


async def _execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=CONNECT_TIMEOUT)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def check_reachable(url: str) -> str | None:
    """None when ``SELECT 1`` works on ``url``, else a one-line reason."""

    async def probe() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=CONNECT_TIMEOUT)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    try:
        run_async(probe)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def create_database(admin_url: str) -> str:
    """Create a fresh empty database on the cluster of ``admin_url``; return its URL."""
    name = f"t_{secrets.token_hex(6)}"
    run_async(lambda: _execute(admin_url, f'CREATE DATABASE "{name}"'))
    return with_database(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database of ``url``, disconnecting whoever still uses it (PostgreSQL >= 13)."""
    name = urlsplit(url).path.lstrip("/")
    if not name.startswith("t_"):
        raise ValueError(f"refusing to drop {name!r}: not a test database")
    run_async(lambda: _execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new database for the duration of the block (its SQLAlchemy URL), dropped afterwards."""
    url = create_database(admin_url)
    try:
        yield url
    finally:
        drop_database(admin_url, url)
