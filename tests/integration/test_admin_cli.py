"""``certyard serve`` starts the admin listener; ``certyard admin token create`` bootstraps the
first administrator (the token alone on stdout), ``list`` and ``revoke`` manage tokens."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from certyard import admin_commands
from certyard.settings import load_settings
from tests.support.server import CertyardServer, certyard_command
from tests.support.tools import REPO_ROOT


def certyard(server: CertyardServer, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*certyard_command(), *argv],
        cwd=REPO_ROOT,
        env=server.environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def in_process(
    server: CertyardServer, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str]:
    """``certyard admin ...`` through its real parser and runner, in this process (a console
    script start costs seconds on a loaded machine; the bootstrap uses the real script)."""
    parser = argparse.ArgumentParser()
    admin_commands.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["admin", *argv])
    settings = load_settings(server={"data_dir": server.data_dir})
    code = asyncio.run(admin_commands.run(settings, args))
    return code, capsys.readouterr().out


def get(url: str, token: str | None = None) -> tuple[int, Any, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            kind = response.headers.get_content_type()
            return response.status, json.loads(raw) if "json" in kind else raw, kind
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers.get_content_type()


def test_bootstrap_admin_token_on_a_running_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The software key backend: this test is about the admin listener, not the HSM.
    env = {"CERTYARD__CA__BACKEND": "software", "CERTYARD__CA__LINT": "false"}
    with CertyardServer(tmp_path / "data", extra_env=env) as server:
        assert get(server.admin_url + "/healthz")[0] == 200
        status, _, kind = get(server.admin_url + "/metrics")
        assert status == 200 and kind == "text/plain"
        status, _body, kind = get(server.admin_url + "/api/v1/whoami")
        assert status == 401 and kind == "application/problem+json"
        done = certyard(server, "admin", "token", "create", "--role", "admin", "--name", "boot")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith("cyt_")
        token = lines[0]
        status, me, _ = get(server.admin_url + "/api/v1/whoami", token)
        assert status == 200 and me["role"] == "admin"
        status, page, _ = get(server.admin_url + "/api/v1/ca/status", token)
        assert status == 200 and page["key_backend"]["ok"] is True
        _code, listed = in_process(server, capsys, "token", "list")
        (entry,) = [json.loads(line) for line in listed.splitlines()]
        assert entry["name"] == "boot" and entry["state"] == "active" and token not in listed
        assert in_process(server, capsys, "token", "revoke", entry["id"])[0] == 0
        assert get(server.admin_url + "/api/v1/whoami", token)[0] == 401
        assert in_process(server, capsys, "token", "revoke", entry["id"])[0] == 1
        # Bad arguments: a usage error (exit status 2 with one line), no token made.
        with pytest.raises(admin_commands.UsageError, match="lifetime"):
            in_process(server, capsys, "token", "create", "--role", "admin", "--expires", "soon")
        assert in_process(server, capsys, "token", "list")[1].count("\n") == 1
