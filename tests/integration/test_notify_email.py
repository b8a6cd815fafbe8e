"""E-mail hooks against a real SMTP server (aiosmtpd) on loopback: plain, and STARTTLS with
AUTH and the password read from a file (never logged)."""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from notify import ledger
from notify.config import NotifySettings
from notify.dispatcher import build_notifier
from notify.events import Notification
from tests.support.notify_db import migrated, no_wait, sqlite_url
from tests.support.notify_smtp import SmtpServer

ALERT = Notification(
    kind="deploy_failed",
    severity="high",
    subject="Deployment to web1 rolled back",
    idempotency_key="deploy:web1:42",
    details={"target": "web1", "reason": "reload failed"},
)


async def test_plain_smtp(tmp_path: Path) -> None:
    db_url = sqlite_url(tmp_path)
    server = SmtpServer().start()
    try:
        settings = NotifySettings.model_validate(
            {
                "hooks": [{"name": "mail", "type": "email", "to": ["ops@example.com"]}],
                "smtp": {"host": "127.0.0.1", "port": server.port, "from": "certyard@example.com"},
            }
        )
        async with migrated(db_url) as sessions:
            notifier = build_notifier(settings, sessions, sleep=no_wait)
            await notifier.notify(ALERT)
            await notifier.notify(ALERT)  # same idempotency key: one mail
            [delivery] = await ledger.list_deliveries(sessions)
            assert delivery.status == "delivered"
    finally:
        server.stop()
    [(envelope, message)] = server.messages
    assert envelope.mail_from == "certyard@example.com"
    assert envelope.rcpt_tos == ["ops@example.com"]
    assert message["Subject"] == "[certyard] HIGH: Deployment to web1 rolled back"
    assert message["X-Certyard-Idempotency-Key"] == "deploy:web1:42"
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert b"reason: reload failed" in body


async def test_starttls_auth_password_file(tmp_path: Path) -> None:
    db_url = sqlite_url(tmp_path)
    password = "correct horse battery"
    server = SmtpServer(tls_dir=tmp_path, login=("certyard", password)).start()
    password_file = tmp_path / "smtp.password"
    password_file.write_text(password + "\n")
    os.chmod(password_file, 0o600)
    assert server.cert_path is not None

    def settings(password_path: Path) -> NotifySettings:
        return NotifySettings.model_validate(
            {
                "hooks": [{"name": "mail", "type": "email", "to": ["a@example.com"]}],
                "smtp": {
                    "host": "localhost",
                    "port": server.port,
                    "starttls": True,
                    "ca_file": str(server.cert_path),
                    "username": "certyard",
                    "password_file": str(password_path),
                    "from": "certyard@example.com",
                },
                "retry": {"attempts": 2, "base_seconds": 0, "max_seconds": 0},
            }
        )

    wrong = tmp_path / "wrong.password"
    wrong.write_text("not it")
    os.chmod(wrong, 0o600)
    try:
        async with migrated(db_url) as sessions:
            with structlog.testing.capture_logs() as logs:
                await build_notifier(settings(password_file), sessions).notify(ALERT)
                other = Notification("expiry", "low", "x", "expiry:k:30d")
                await build_notifier(settings(wrong), sessions).notify(other)
            dead = await ledger.list_dead_letters(sessions)
    finally:
        server.stop()
    assert len(server.messages) == 1
    assert server.messages[0][1]["Subject"].endswith("Deployment to web1 rolled back")
    # Wrong password: 535 is permanent (RFC 4954 §6), dead after one attempt.
    [failed] = dead
    assert failed.attempts == 1 and "535" in (failed.last_error or "")
    assert password not in repr(logs) and "not it" not in repr(logs)
