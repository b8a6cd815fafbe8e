"""Throwaway SoftHSM2 tokens for the tests: a real token under the test's tmp_path.

Under ``CI=true`` a missing SoftHSM2 (module or ``softhsm2-util``) fails the test; elsewhere it
skips (tests/support/tools.py). Each token lives in its own directory with its own
softhsm2.conf, so tests never see each other's keys or the system token directory.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pkcs11

from ca.errors import CAError
from ca.pkcs11_keys import Pkcs11Config, Pkcs11KeyBackend
from ca.softhsm import SoftHsmToken, ensure_softhsm_token, find_softhsm_module
from tests.support.tools import missing, require_tool

TEST_LABEL = "certyard-test"


def require_softhsm() -> str:
    """The SoftHSM2 module path (and softhsm2-util on PATH), or fail (CI) / skip."""
    require_tool("softhsm2-util")
    try:
        return find_softhsm_module()
    except CAError as exc:
        missing(f"{exc.detail} (scripts/install-test-deps.sh installs it)")
        raise AssertionError("unreachable") from None  # pragma: no cover


def make_token(directory: Path, label: str = TEST_LABEL) -> SoftHsmToken:
    """A SoftHSM2 token under ``directory`` (created on first use, reused after)."""
    require_softhsm()
    return ensure_softhsm_token(directory, label=label)


def backend_config(token: SoftHsmToken, **overrides: Any) -> Pkcs11Config:
    """The token's backend configuration, reconnect throttling short enough for tests."""
    settings: dict[str, Any] = {"retry_interval": 0.1, "call_timeout": 15.0} | overrides
    return dataclasses.replace(token.backend_config(), **settings)


@asynccontextmanager
async def open_backend(token: SoftHsmToken, **overrides: Any) -> AsyncIterator[Pkcs11KeyBackend]:
    backend = Pkcs11KeyBackend(backend_config(token, **overrides))
    try:
        yield backend
    finally:
        await backend.close()


@contextmanager
def raw_session(token: SoftHsmToken) -> Iterator[Any]:
    """A python-pkcs11 session of the test's own, logged in as the user, to inspect objects the
    backend made. Only use it while no backend of the test is open: the login is per process
    (PKCS#11 v2.40 §5.6), and closing this session logs out."""
    os.environ["SOFTHSM2_CONF"] = str(token.conf_path)
    # The same path string the backend uses, so python-pkcs11 loads the module once.
    lib = pkcs11.lib(os.path.realpath(token.module))
    lib.reinitialize()  # pick up this token's SOFTHSM2_CONF
    session = lib.get_token(token_label=token.token_label).open(user_pin=token.pin)
    try:
        yield session
    finally:
        session.close()


def token_dir(token: SoftHsmToken) -> Path:
    """SoftHSM2's object store of ``token`` (directories.tokendir in its softhsm2.conf)."""
    return token.conf_path.parent / "tokens"
