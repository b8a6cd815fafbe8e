"""The closed loop of issue 7, as an operator runs it: discover → due → renew → deploy → verify.

A real OpenSSH server (tests/support/ssh_target.py, /usr/sbin/sshd on a loopback port) is the
way into a "host" whose service is a TLS server that re-reads its key and certificate on SIGHUP
(tests/support/reloading_tls_server.py). That service starts with a self-signed certificate
two days from expiry which no ACME client manages. Then, only through certyard's commands and
a configuration file written here:

1. ``certyard ca init``; ``certyard deploy target add … --accept-host-key SHA256:…`` pins the
   sshd's host key (the fingerprint an operator compares with the host's own);
2. discover: ``certyard scan`` records the endpoint's certificate in the inventory;
3. due: ``certyard renew plan --json`` lists it renew-due under the configured policy
   (``renew_days_before`` larger than its remaining life) with method "ssh" and the target;
4. renew + deploy: ``certyard renew run`` issues a new certificate from certyard's CA, writes
   it over SSH and runs the reload command;
5. verify: a plain TLS client and a second ``certyard scan`` see the new certificate;
   ``renew plan`` says healthy, ``renew history`` and ``deploy history`` record the deployment,
   and the webhook receiver (tests/support/notify_receiver.py) got no failure notification.

The failing variant: the reload command fails, so the deployer rolls back, the old certificate
is served again, ``renew run`` exits 1 and the webhook gets exactly one ``deploy_failed``.

Most commands run through ``certyard.cli.main`` in this process (parser, dispatch, exit status
and output as the console script's); ``renew run`` of the success path runs as a real process,
so the notifications must be delivered before it exits. The webhook receiver runs on an event
loop in a thread, since ``main`` runs its own. SQLite only: the storage of each part is covered
on both databases by its own tests (test_renewal.py, test_deploy_ssh.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certyard.cli import main
from tests.support.notify_receiver import WebhookReceiver
from tests.support.reloading_tls_server import (
    ReloadingTlsProcess,
    install_near_expiry_certificate,
    served_sha256,
)
from tests.support.server import certyard_command, free_port
from tests.support.ssh_target import SshTarget
from tests.support.tools import REPO_ROOT, require_tool

NAME = "lifecycle.loop.example"
SECRET = b"lifecycle-webhook-secret-0123456789"
FAILURE_KINDS = {"deploy_failed", "renewal_due"}


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class ThreadedReceiver:
    """The webhook receiver on its own event loop in a thread (the commands run theirs)."""

    def __init__(self) -> None:
        self.receiver = WebhookReceiver()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop).result(10)

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.receiver.stop(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def events(self) -> list[dict[str, Any]]:
        received = list(self.receiver.requests)
        for request in received:
            assert request.signature_ok(SECRET), request.headers
        return [r.json() for r in received]


@dataclass
class Loop:
    tmp: Path
    ssh: SshTarget
    tls: ReloadingTlsProcess
    srv: Path
    config: Path
    hook: ThreadedReceiver
    capsys: pytest.CaptureFixture[str]

    def certyard(self, *args: str) -> Result:
        self.capsys.readouterr()
        code = main([*args, "--config", str(self.config)])
        out = self.capsys.readouterr()
        return Result(code, out.out, out.err)

    def certyard_process(self, *args: str) -> Result:
        done = subprocess.run(
            [*certyard_command(), *args, "--config", str(self.config)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def add_target(self, reload_command: str) -> None:
        added = self.certyard(
            "deploy", "target", "add", "web",
            "--host", self.ssh.host, "--port", str(self.ssh.port), "--user", self.ssh.user,
            "--key-file", str(self.ssh.client_key_path), "--names", NAME,
            "--key-path", str(self.srv / "key.pem"), "--cert-path", str(self.srv / "cert.pem"),
            "--fullchain-path", str(self.srv / "fullchain.pem"),
            "--reload-command", reload_command,
            "--verify", f"127.0.0.1:{self.tls.port}",
            "--accept-host-key", self.ssh.host_key_fingerprint,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr

    def scan(self, label: str) -> None:
        report = self.tmp / f"{label}.json"
        scanned = self.certyard(
            "scan", f"{NAME}@127.0.0.1:{self.tls.port}", "--no-legacy-probe", "--out", str(report)
        )
        assert scanned.returncode == 0, scanned.stderr

    def plan(self) -> dict[str, dict[str, Any]]:
        """``renew plan --json`` as {sha256: entry}."""
        planned = self.certyard("renew", "plan", "--json")
        assert planned.returncode == 0, planned.stderr
        return {e["key"]: e for e in json.loads(planned.stdout)["queue"]}

    def failure_events(self) -> list[dict[str, Any]]:
        return [e for e in self.hook.events() if e["kind"] in FAILURE_KINDS]


def _write_config(tmp: Path, tls_port: int, hook_url: str) -> Path:
    secret = tmp / "hook.secret"
    secret.write_bytes(SECRET)
    os.chmod(secret, 0o600)
    config = tmp / "certyard.toml"
    config.write_text(
        f"""
[server]
data_dir = "{tmp / "data"}"

[database]
url = "sqlite+aiosqlite:///{tmp / "certyard.db"}"

[ca]
backend = "software"

[deploy]
verify_interval_seconds = 0.1
verify_timeout_seconds = 10
connect_timeout_seconds = 5

[notify.retry]
attempts = 2
base_seconds = 0.1

[[notify.hooks]]
name = "ops"
type = "webhook"
url = "{hook_url}"
secret_file = "{secret}"

[[renewal.policies]]
name = "legacy-web"
match = {{ names = ["{NAME}"], endpoints = ["127.0.0.1:{tls_port}"] }}
renew_days_before = 30
method = "ssh"
target = "web"
"""
    )
    return config


@pytest.fixture
def loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Loop]:
    require_tool("openssl")
    for name in [k for k in os.environ if k.upper().startswith("CERTYARD__")]:
        monkeypatch.delenv(name)  # only the configuration file written here counts
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
    hook = ThreadedReceiver()
    config = _write_config(tmp_path, tls.port, hook.receiver.url)
    hook.start()
    try:
        ssh.start()
        try:
            tls.start()
            yield Loop(tmp_path, ssh, tls, srv, config, hook, capsys)
        finally:
            tls.stop()
            ssh.stop()
    finally:
        hook.stop()


def _discover_and_plan(loop: Loop, reload_command: str) -> str:
    """Steps shared by both variants: CA, target, scan, plan. Returns the old certificate's
    SHA-256, which the plan lists renew-due by the configured policy."""
    init = loop.certyard("ca", "init")
    assert init.returncode == 0, init.stderr
    loop.add_target(reload_command)
    old = served_sha256(loop.tls.port, NAME)

    loop.scan("discovery")
    plan = loop.plan()
    assert old in plan, plan
    entry = plan[old]
    assert entry["state"] == "renew-due" and entry["needs_action"], entry
    assert (entry["policy"], entry["method"], entry["target"]) == ("legacy-web", "ssh", "web")
    assert entry["sources"] == ["scan"]
    assert f"127.0.0.1:{loop.tls.port}" in entry["endpoints"]
    assert 1 < entry["days_left"] < 30

    dry = loop.certyard("renew", "run", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    planned = [a for a in json.loads(dry.stdout)["actions"] if a["certificate"] == old]
    assert [(a["action"], a["detail"]) for a in planned] == [
        ("deployed", "would deploy target web")
    ]
    assert served_sha256(loop.tls.port, NAME) == old  # the dry run changed nothing
    return old


def _assert_replaced(plan: dict[str, dict[str, Any]], old: str, new: str, port: int) -> None:
    assert old not in plan, plan[old]  # nobody serves it any more
    entry = plan[new]
    assert entry["state"] == "healthy" and not entry["needs_action"], entry
    assert entry["sources"] == ["certyard", "scan"] and entry["requester"] == "deploy:web"
    assert entry["findings"] == [], entry["findings"]  # certyard's root is trusted
    assert entry["endpoints"] == [f"127.0.0.1:{port}"]
    assert entry["policy"] == "legacy-web"


def test_near_expiry_certificate_is_discovered_renewed_deployed_and_verified(loop: Loop) -> None:
    old = _discover_and_plan(loop, f'kill -HUP "$(cat {loop.srv / "server.pid"})"')

    ran = loop.certyard_process("renew", "run", "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    [action] = [a for a in json.loads(ran.stdout)["actions"] if a["certificate"] == old]
    assert (action["action"], action["outcome"], action["method"]) == ("deployed", "ok", "ssh")
    assert action["detail"].startswith("web: ")

    # Verify, independently of the deployer: a plain TLS client sees a certyard certificate.
    new = served_sha256(loop.tls.port, NAME)
    assert new != old
    served = x509.load_pem_x509_certificate((loop.srv / "cert.pem").read_bytes())
    assert hashlib.sha256(served.public_bytes(serialization.Encoding.DER)).hexdigest() == new
    root = x509.load_pem_x509_certificate((loop.tmp / "data" / "ca" / "root.pem").read_bytes())
    assert served.issuer != served.subject and "certyard" in served.issuer.rfc4514_string()
    assert root.subject.rfc4514_string().startswith("CN=certyard Root CA")
    assert served.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=30)

    # The deployer's verification probe is in the inventory: the queue sees the new
    # certificate served there at once, not only after the next discovery scan ...
    _assert_replaced(loop.plan(), old, new, loop.tls.port)
    # ... and a second discovery scan agrees.
    loop.scan("after")
    _assert_replaced(loop.plan(), old, new, loop.tls.port)

    history = loop.certyard("renew", "history", "--json")
    assert history.returncode == 0, history.stderr
    [run] = json.loads(history.stdout)["runs"]
    assert run["status"] == "done"
    [recorded] = [a for a in run["actions"] if a["certificate"] == old]
    assert (recorded["action"], recorded["outcome"]) == ("deployed", "ok")

    deploys = loop.certyard("deploy", "history", "web", "--json")
    assert deploys.returncode == 0, deploys.stderr
    [deployed] = json.loads(deploys.stdout)
    assert deployed["status"] == "deployed" and deployed["finding"] is None
    assert int(deployed["serial"].replace(":", ""), 16) == served.serial_number

    # A second pass finds nothing to do for it.
    again = loop.certyard("renew", "run", "--json")
    assert again.returncode == 0, again.stderr
    assert [a for a in json.loads(again.stdout)["actions"] if a["certificate"] == new] == []

    # No failure, and no expiry alert either: the certificate two days from expiry was
    # replaced (and verified) in the run that would have raised it.
    assert loop.hook.events() == []


def test_failed_reload_is_rolled_back_and_reported_once(loop: Loop) -> None:
    old = _discover_and_plan(loop, "echo 'reload: configuration test failed' >&2; exit 1")

    ran = loop.certyard("renew", "run", "--json")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    [action] = [a for a in json.loads(ran.stdout)["actions"] if a["certificate"] == old]
    assert (action["action"], action["outcome"]) == ("failed", "failed")
    assert "reload" in action["detail"] and "previous files restored" in action["detail"]

    # The old certificate is still served and still in the files.
    assert served_sha256(loop.tls.port, NAME) == old
    on_disk = x509.load_pem_x509_certificate((loop.srv / "cert.pem").read_bytes())
    assert hashlib.sha256(on_disk.public_bytes(serialization.Encoding.DER)).hexdigest() == old
    assert loop.plan()[old]["state"] == "renew-due"

    deploys = loop.certyard("deploy", "history", "web", "--json")
    assert deploys.returncode == 0, deploys.stderr
    [rolled_back] = json.loads(deploys.stdout)
    assert rolled_back["status"] == "rolled_back" and rolled_back["finding"] == "deploy_failed"

    history = loop.certyard("renew", "history", "--json")
    assert history.returncode == 0, history.stderr
    [run] = json.loads(history.stdout)["runs"]
    [recorded] = [a for a in run["actions"] if a["certificate"] == old]
    assert (recorded["action"], recorded["outcome"]) == ("failed", "failed")
    assert "rolled back" in recorded["detail"] or "restored" in recorded["detail"]

    [event] = loop.failure_events()
    assert event["kind"] == "deploy_failed" and event["severity"] == "high"
    assert event["details"]["target"] == "web"
    assert event["details"]["status"] == "rolled_back"
