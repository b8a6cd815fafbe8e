"""Fixtures shared by every test directory.

* ``postgres_admin_url``: the test cluster started by ``make test`` (CERTYARD_TEST_POSTGRES_URL).
* an autouse logging configuration per test: level info, to stderr, so a test that
  ran a command in-process (``certyard.cli.main`` configures logging, e.g. at level "warning")
  does not filter the events a later test captures with ``structlog.testing.capture_logs``,
  and log lines of servers running in the test never mix into a command's standard output.
* ``db_url``: a database URL, parametrized over SQLite (a file in tmp_path) and PostgreSQL (a
  fresh database on the test cluster, dropped afterwards). Test ids end in ``[sqlite]`` /
  ``[postgres]``; ``-m "not postgres"`` deselects the PostgreSQL half.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from certyard.logs import configure_logging
from tests.support import postgres
from tests.support.tools import missing


@pytest.fixture(autouse=True)
def _test_logging() -> Iterator[None]:
    configure_logging("info", "console")
    yield


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url = postgres.configured_url()
    if url is None:
        missing(f"PostgreSQL not running: make test starts it ({postgres.ENV_VAR} is not set)")
        raise AssertionError("unreachable")
    problem = postgres.check_reachable(url)
    if problem is not None:
        missing(f"PostgreSQL not running: make test starts it ({url}: {problem})")
    return url


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/certyard.db"
        return
    admin_url: str = request.getfixturevalue("postgres_admin_url")
    with postgres.fresh_database(admin_url) as url:
        yield url
