"""Finding the real third-party programs the tests drive (certbot, lego, openssl, ...).

Under ``CI=true`` a missing program is a test failure, never a skip: CI must not pass by running
nothing. Outside CI the test is skipped with a reason naming the program.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def missing(reason: str) -> None:
    """Fail under CI=true, skip otherwise."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing real component is a failure)", pytrace=False)
    pytest.skip(reason)


def find_tool(name: str) -> str | None:
    """The path of ``name``: this interpreter's bin dir, the repo's .venv/bin, then PATH."""
    for bin_dir in (Path(sys.executable).parent, REPO_ROOT / ".venv" / "bin"):
        candidate = bin_dir / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


# Tools installed by scripts/install-test-deps.sh outside PATH.
EXTRA_TOOLS = {
    # Microsoft's SARIF validator (npm @microsoft/sarif-multitool-linux, self-contained .NET).
    "Sarif.Multitool": REPO_ROOT
    / "var/tools/sarif/node_modules/@microsoft/sarif-multitool-linux/Sarif.Multitool",
}


def require_tool(name: str) -> str:
    """The path of the program ``name``, or fail (CI=true) / skip the test."""
    path = find_tool(name)
    extra = EXTRA_TOOLS.get(name)
    if path is None and extra is not None and os.access(extra, os.X_OK):
        path = str(extra)
    if path is None:
        missing(f"{name} not found (scripts/install-test-deps.sh installs it)")
        raise AssertionError("unreachable")  # pragma: no cover - missing() always raises
    return path
