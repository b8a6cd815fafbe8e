"""``certyard deploy …`` as an operator runs it: the command line against a real sshd.

The commands run through ``certyard.cli.main`` in this process (parser, dispatch, exit status
and output exactly as the console script's ``SystemExit(main())``): starting a Python process
per command costs seconds on a loaded machine. One refusal runs as a real process to prove the
exit status end to end.

The host key is never trusted on first use: ``target add`` without a pin refuses and shows the
fingerprint the server presents; with that fingerprint (``--accept-host-key``) the full key is
pinned. Then ``target list``, ``target test`` (nothing written), ``run --dry-run`` and ``run``
(a real CA made by ``certyard ca init`` with the software key backend), a re-installed host
(stopped, then ``target pin``) and ``history``.
SQLite only: the storage paths are covered on both databases by test_deploy_ssh.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certyard.cli import main
from tests.support.reloading_tls_server import (
    ReloadingTlsProcess,
    install_near_expiry_certificate,
    served_sha256,
)
from tests.support.server import certyard_command, free_port
from tests.support.ssh_target import SshTarget
from tests.support.tools import REPO_ROOT, require_tool

NAME = "cli.deploy.example"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Env:
    tmp: Path
    ssh: SshTarget
    tls: ReloadingTlsProcess
    srv: Path
    env: dict[str, str]
    capsys: pytest.CaptureFixture[str]

    def certyard(self, *args: str) -> Result:
        self.capsys.readouterr()
        code = main(list(args))
        out = self.capsys.readouterr()
        return Result(code, out.out, out.err)

    def certyard_process(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*certyard_command(), *args],
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def add_args(self, *extra: str) -> list[str]:
        return [
            "deploy", "target", "add", "web",
            "--host", self.ssh.host, "--port", str(self.ssh.port), "--user", self.ssh.user,
            "--key-file", str(self.ssh.client_key_path), "--names", NAME,
            "--key-path", str(self.srv / "key.pem"), "--cert-path", str(self.srv / "cert.pem"),
            "--fullchain-path", str(self.srv / "fullchain.pem"),
            "--reload-command", f"kill -HUP \"$(cat {self.srv / 'server.pid'})\"",
            "--verify", f"127.0.0.1:{self.tls.port}", *extra,
        ]  # fmt: skip


@pytest.fixture
def env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Env]:
    require_tool("openssl")
    srv = tmp_path / "srv"
    srv.mkdir()
    install_near_expiry_certificate(srv, NAME)
    ssh = SshTarget(tmp_path / "ssh")
    tls = ReloadingTlsProcess(
        srv / "fullchain.pem",
        srv / "key.pem",
        free_port(),
        srv / "server.pid",
        tmp_path / "tls.log",
    )
    settings = {
        "CERTYARD__SERVER__DATA_DIR": str(tmp_path / "data"),
        "CERTYARD__DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path}/certyard.db",
        "CERTYARD__CA__BACKEND": "software",
        "CERTYARD__DEPLOY__VERIFY_INTERVAL_SECONDS": "0.1",
        "CERTYARD__DEPLOY__VERIFY_TIMEOUT_SECONDS": "10",
    }
    for name in [k for k in os.environ if k.upper().startswith("CERTYARD__")]:
        monkeypatch.delenv(name)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    variables = dict(os.environ)
    ssh.start()
    try:
        tls.start()
        yield Env(tmp_path, ssh, tls, srv, variables, capsys)
    finally:
        tls.stop()
        ssh.stop()


def test_target_add_refuses_without_a_pinned_host_key_then_deploys(env: Env) -> None:
    fingerprint = env.ssh.host_key_fingerprint

    refused = env.certyard_process(*env.add_args())
    assert refused.returncode == 2, refused.stderr
    assert "--host-key is required" in refused.stderr and fingerprint in refused.stderr
    assert "Traceback" not in refused.stderr
    listed = env.certyard("deploy", "target", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []  # nothing stored

    wrong = env.certyard(*env.add_args("--accept-host-key", "SHA256:" + "A" * 43))
    assert wrong.returncode == 2 and "no host key with fingerprint" in wrong.stderr

    added = env.certyard(*env.add_args("--accept-host-key", fingerprint))
    assert added.returncode == 0, added.stderr
    assert fingerprint in added.stdout
    again = env.certyard(*env.add_args("--host-key", env.ssh.host_key_line))
    assert again.returncode == 2 and "already exists" in again.stderr

    listed = env.certyard("deploy", "target", "list", "--json")
    [target] = json.loads(listed.stdout)
    assert target["host_key_fingerprint"] == fingerprint
    assert target["host_key"] == " ".join(env.ssh.host_key_line.split()[:2])
    assert target["verify"] == f"127.0.0.1:{env.tls.port},{NAME}"
    table = env.certyard("deploy", "target", "list")
    assert table.stdout.splitlines()[0].split() == [
        "NAME",
        "SSH",
        "HOST",
        "KEY",
        "NAMES",
        "VERIFY",
        "LAST",
    ]

    before = {p.name: p.read_bytes() for p in env.srv.iterdir()}
    tested = env.certyard("deploy", "target", "test", "web")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("ok  ") == 6  # connect, 3 paths, openssl, endpoint
    assert {p.name: p.read_bytes() for p in env.srv.iterdir()} == before

    init = env.certyard("ca", "init")
    assert init.returncode == 0, init.stderr
    dry = env.certyard("deploy", "run", "web", "--dry-run")
    assert dry.returncode == 0 and "dry_run" in dry.stdout, dry.stdout + dry.stderr
    old = served_sha256(env.tls.port, NAME)

    deployed = env.certyard("deploy", "run", "web", "--json")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    outcome = json.loads(deployed.stdout)
    assert outcome["status"] == "deployed"
    assert served_sha256(env.tls.port, NAME) == outcome["certificate_sha256"] != old

    # The host is re-installed: deployments stop until the operator pins the new key.
    env.ssh.rotate_host_key()
    stopped = env.certyard("deploy", "run", "web")
    assert stopped.returncode == 1 and "host_key_mismatch" in stopped.stdout
    new = env.ssh.host_key_fingerprint
    refused_pin = env.certyard("deploy", "target", "pin", "web")
    assert refused_pin.returncode == 2 and new in refused_pin.stderr
    repinned = env.certyard("deploy", "target", "pin", "web", "--accept-host-key", new)
    assert repinned.returncode == 0 and f"{fingerprint} replaced" in repinned.stdout
    assert env.certyard("deploy", "target", "test", "web").returncode == 0

    history = env.certyard("deploy", "history", "web", "--json")
    statuses = [r["status"] for r in json.loads(history.stdout)]
    assert statuses == ["host_key_mismatch", "deployed", "dry_run"]


def test_bad_target_definitions_are_one_line_errors(env: Env) -> None:
    fingerprint = env.ssh.host_key_fingerprint
    cases = [
        (["--key-path", "relative/key.pem"], "must be an absolute file path"),
        (["--verify", "no-port"], "is not host:port"),
        (["--key-mode", "rw"], "is not an octal mode"),
        (["--profile", "nope"], "is not a TLS server profile"),
        (["--names", "bad_name!"], "invalid DNS name"),
    ]
    for extra, message in cases:
        result = env.certyard(*env.add_args("--accept-host-key", fingerprint, *extra))
        assert result.returncode == 2, (extra, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    unknown = env.certyard("deploy", "run", "nope")
    assert unknown.returncode == 1 and "no deployment target 'nope'" in unknown.stderr
