"""No secret is ever logged: a real ``certyard serve`` on a real SoftHSM2 token, driven through
the command line, EST with HTTP Basic and the admin API, then its whole log is searched for
every secret that went through it. And the log is JSON lines, each with a timestamp and a level;
the request lines carry the request id."""

from __future__ import annotations

import base64
import io
import json
import logging
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certyard import cli as cli_module
from certyard.cli import main
from certyard.logs import configure_logging
from tests.support.server import CertyardServer
from tests.support.tools import require_tool


@dataclass
class Cli:
    """``certyard ...`` through its real entry point (certyard.cli.main: settings from the
    server's environment, logging configured as the console script does), in this process: a
    console script start costs seconds on a loaded machine."""

    server: CertyardServer
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch
    stderr: list[str] = field(default_factory=list)

    def __call__(self, *argv: str, stdin: str = "") -> str:
        for name, value in self.server.environment().items():
            if name.startswith("CERTYARD__"):
                self.monkeypatch.setenv(name, value)
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        self.stderr.append(err)
        assert code == 0, err
        return out


@pytest.fixture
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """main() configures structlog and the root logger for this process: put them back. And
    no logger caches the configuration on first use: a module's logger would otherwise keep
    writing to this test's captured stderr after it is closed."""

    def configure_uncached(level: str, fmt: str) -> None:
        configure_logging(level, fmt)
        structlog.configure(cache_logger_on_first_use=False)

    monkeypatch.setattr(cli_module, "configure_logging", configure_uncached)
    saved = structlog.get_config()
    handlers = list(logging.getLogger().handlers)
    level = logging.getLogger().level
    yield
    structlog.configure(**saved)
    logging.getLogger().handlers[:] = handlers
    logging.getLogger().setLevel(level)
    logging.captureWarnings(False)


def http(
    server: CertyardServer,
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    context = server.ssl_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=20, context=context) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def csr_b64() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meter-17")]))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(csr.public_bytes(serialization.Encoding.DER))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_no_secret_is_ever_logged(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,
) -> None:
    require_tool("softhsm2-util")
    secrets_seen: list[str] = []
    with CertyardServer(tmp_path / "data") as server:
        cli = Cli(server, capsys, monkeypatch)
        # An EAB key from the command line: its HMAC key is a secret.
        secrets_seen.append(json.loads(cli("acme", "eab", "create", "--json"))["hmac_key"])
        # An EST user (password on stdin), a good and a bad enrollment over HTTP Basic.
        password = "pw-" + secrets.token_urlsafe(18)
        cli("est", "user", "add", "alice", stdin=password + "\n")
        secrets_seen.append(password)
        enroll = server.base_url + "/.well-known/est/simpleenroll"
        pkcs10 = {"Content-Type": "application/pkcs10"}
        status, body, headers = http(
            server,
            enroll,
            method="POST",
            body=csr_b64(),
            headers={**pkcs10, "Authorization": basic("alice", password)},
        )
        assert status == 200, body
        assert headers["X-Request-Id"]
        wrong = "wrong-" + secrets.token_urlsafe(18)
        secrets_seen.append(wrong)
        status, body, _ = http(
            server,
            enroll,
            method="POST",
            body=csr_b64(),
            headers={**pkcs10, "Authorization": basic("alice", wrong)},
        )
        assert status == 401, body
        # An admin token from the command line, used on the admin API (with our request id).
        token = cli("admin", "token", "create", "--role", "admin", "--name", "logs").strip()
        assert token.startswith("cyt_")
        secrets_seen.append(token)
        bearer = {"Authorization": f"Bearer {token}", "X-Request-Id": "logs-test.42"}
        status, body, headers = http(server, server.admin_url + "/api/v1/whoami", headers=bearer)
        assert status == 200 and headers["X-Request-Id"] == "logs-test.42", body
        # Secrets through the API: a new EST user's password, a new EAB key's HMAC key.
        api_password = "api-" + secrets.token_urlsafe(18)
        secrets_seen.append(api_password)
        status, body, _ = http(
            server,
            server.admin_url + "/api/v1/est/users",
            method="POST",
            body=json.dumps({"name": "bob", "password": api_password}).encode(),
            headers={**bearer, "Content-Type": "application/json"},
        )
        assert status == 201, body
        status, body, _ = http(
            server,
            server.admin_url + "/api/v1/acme/eab-keys",
            method="POST",
            body=b"{}",
            headers={**bearer, "Content-Type": "application/json"},
        )
        assert status == 201, body
        secrets_seen.append(json.loads(body)["hmac_key"])
        # A forged token is refused; its value is not logged either.
        forged = "cyt_" + secrets.token_urlsafe(32)
        secrets_seen.append(forged)
        status, _, _ = http(
            server,
            server.admin_url + "/api/v1/whoami",
            headers={"Authorization": f"Bearer {forged}"},
        )
        assert status == 401
        softhsm = server.data_dir / "softhsm"
        pins = [p.read_text().strip() for p in (softhsm / "user-pin", softhsm / "so-pin")]
        assert all(pins)
        secrets_seen.extend(pins)
    # Stopped: every line is written. Search the raw bytes and the JSON-escaped forms too.
    stderr_log = server.stderr_path.read_text()
    everything = server.log_text() + "\n".join(cli.stderr)
    for secret in secrets_seen:
        assert secret not in everything
        assert json.dumps(secret)[1:-1] not in everything
        assert base64.b64encode(secret.encode()).decode() not in everything
    # The Basic credentials as sent (base64 of "user:password").
    assert base64.b64encode(f"alice:{password}".encode()).decode() not in everything

    lines = [line for line in stderr_log.splitlines() if line.strip()]
    assert lines, server.log_text()
    records = []
    for line in lines:
        record = json.loads(line)  # every line is JSON
        assert record["timestamp"] and record["level"] and record["event"], line
        records.append(record)
    requests = [r for r in records if r["event"] == "http_request"]
    assert requests and all(r.get("request_id") for r in requests)
    mine = [r for r in requests if r["request_id"] == "logs-test.42"]
    assert {(r["method"], r["path"]) for r in mine} >= {
        ("GET", "/api/v1/whoami"),
        ("POST", "/api/v1/est/users"),
        ("POST", "/api/v1/acme/eab-keys"),
    }
    assert any(r["path"] == "/.well-known/est/simpleenroll" for r in requests)
