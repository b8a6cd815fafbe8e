"""Webhook delivery against a real HTTP receiver on loopback: signed, idempotent, retried with
backoff, dead-lettered and re-driven; expiry alerts once per threshold, across restarts."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notify import ledger
from notify.config import NotifySettings
from notify.dispatcher import ConfiguredHook, Notifier, RetryPolicy, build_notifier
from notify.events import Notification
from notify.expiry import ExpiringCertificate, ExpiryAlerter
from notify.webhook import WebhookHook
from tests.support.notify_db import (
    FakeClock,
    RecordingSleep,
    migrated,
    no_wait,
    opened,
    sqlite_url,
)
from tests.support.notify_receiver import WebhookReceiver
from tests.support.server import free_port

SECRET = "s3cret-hook-key"
START = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = await WebhookReceiver().start()
    yield r
    await r.stop()


def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "hook.secret"
    path.write_text(SECRET + "\n")
    os.chmod(path, 0o600)
    return path


def settings_for(url: str, tmp_path: Path, **extra: object) -> NotifySettings:
    return NotifySettings.model_validate(
        {
            "hooks": [
                {
                    "name": "ops",
                    "type": "webhook",
                    "url": url,
                    "secret_file": str(secret_file(tmp_path)),
                    **extra,
                }
            ],
            "retry": {"attempts": 3, "base_seconds": 0.01, "max_seconds": 5},
        }
    )


def event(key: str = "ct:abc", severity: str = "high") -> Notification:
    return Notification(
        kind="ct_unknown_issuance",
        severity=severity,  # type: ignore[arg-type]
        subject="Unknown issuance for www.example.com",
        idempotency_key=key,
        details={"names": ["www.example.com"], "issuer": "CN=Other CA"},
    )


async def test_expiry_alerts_once_per_threshold_signed_across_restarts(
    db_url: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    clock = FakeClock(START)
    cert = ExpiringCertificate(
        key="ab" * 32,
        names=("www.example.com", "example.com"),
        not_after=START + dt.timedelta(days=31),
        owner="web-team",
        labels={"env": "prod"},
    )
    healthy = ExpiringCertificate(
        key="cd" * 32, names=("api.example.com",), not_after=START + dt.timedelta(days=300)
    )
    settings = settings_for(receiver.url, tmp_path)
    async with migrated(db_url) as sessions:
        alerter = ExpiryAlerter(
            sessions,
            build_notifier(settings, sessions, clock=clock, sleep=no_wait),
            settings.expiry_thresholds_days,
            clock=clock,
        )
        assert await alerter.check([cert, healthy]) == []  # 31 days left: nothing yet
        for days_later in (2, 3, 10, 17.5, 18):  # 29, 28, 21, 13.5, 13 days left
            clock.now = START + dt.timedelta(days=days_later)
            await alerter.check([cert, healthy])
        assert [r.json()["details"]["threshold_days"] for r in receiver.requests] == [30, 14]

    # A restart: new engine, new notifier; the 14-day alert is not sent again, and jumping to
    # 0.5 days left (7 and 1 crossed at once) sends only the 1-day alert.
    async with opened(db_url) as sessions:
        alerter = ExpiryAlerter(
            sessions,
            build_notifier(settings, sessions, clock=clock, sleep=no_wait),
            [30, 14, 7, 1],
            clock=clock,
        )
        clock.now = START + dt.timedelta(days=19)
        assert await alerter.check([cert]) == []
        # A certificate first seen 5 days before expiry: one alert (7 days), not three.
        late = ExpiringCertificate(
            key="ef" * 32, names=("vpn.example.com",), not_after=clock.now + dt.timedelta(days=5)
        )
        [seven] = await alerter.check([late])
        assert (seven.idempotency_key, seven.severity) == (f"expiry:{'ef' * 32}:7d", "high")
        receiver.requests.pop()
        clock.now = START + dt.timedelta(days=30.5)
        raised = await alerter.check([cert])
        assert [e.idempotency_key for e in raised] == [f"expiry:{'ab' * 32}:1d"]
        assert await alerter.check([cert]) == []

    thresholds = [r.json()["details"]["threshold_days"] for r in receiver.requests]
    assert thresholds == [30, 14, 1]
    for received in receiver.requests:
        assert received.signature_ok(SECRET.encode())
        body = received.json()
        assert received.headers["Idempotency-Key"] == body["idempotency_key"]
        assert received.headers["X-Certyard-Timestamp"].isdigit()
        assert body["kind"] == "expiry"
        assert body["details"]["names"] == ["www.example.com", "example.com"]
        assert body["details"]["owner"] == "web-team"
    assert receiver.requests[-1].json()["severity"] == "critical"


async def test_retry_after_500_then_success_and_once_only(
    db_url: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    receiver.fail_with(500, 1)
    receiver.fail_with(429, 1, {"Retry-After": "2"})
    sleep = RecordingSleep()
    async with migrated(db_url) as sessions:
        notifier = build_notifier(settings_for(receiver.url, tmp_path), sessions, sleep=sleep)
        await notifier.notify(event())
        assert len(receiver.requests) == 3
        keys = {r.headers["Idempotency-Key"] for r in receiver.requests}
        assert keys == {"ct:abc"}
        assert all(r.signature_ok(SECRET.encode()) for r in receiver.requests)
        assert 0 < sleep.delays[0] <= 0.01  # exponential backoff with jitter
        assert sleep.delays[1] >= 2  # Retry-After honoured
        [record] = await ledger.list_deliveries(sessions)
        assert (record.status, record.attempts) == ("delivered", 3)

        # The same fact raised again (same idempotency key): not delivered twice.
        await notifier.notify(event())
        assert len(receiver.requests) == 3

        # Two instances raising the same new fact at once: one delivery.
        settings = settings_for(receiver.url, tmp_path, min_severity="medium")
        async with opened(db_url) as second:
            a = build_notifier(settings, sessions, sleep=no_wait)
            b = build_notifier(settings, second, sleep=no_wait)
            await asyncio.gather(*(n.notify(event("ct:same")) for n in (a, b, a, b)))
            await a.notify(event("ct:low", severity="low"))  # below min_severity
        assert len(receiver.requests) == 4
        assert receiver.requests[-1].headers["Idempotency-Key"] == "ct:same"


async def test_dead_letter_then_redrive(
    db_url: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    receiver.fail_with(503, 3)
    async with migrated(db_url) as sessions:
        notifier = build_notifier(settings_for(receiver.url, tmp_path), sessions, sleep=no_wait)
        await notifier.notify(event("ct:dead"))
        assert len(receiver.requests) == 3
        [dead] = await ledger.list_dead_letters(sessions)
        assert dead.hook == "ops" and dead.attempts == 3 and "HTTP 503" in (dead.last_error or "")
        await notifier.notify(event("ct:dead"))  # a dead letter is not re-sent implicitly
        assert len(receiver.requests) == 3

        # The receiver is back: the re-drive delivers it, once.
        assert await notifier.redrive_all() == {dead.id: True}
        assert len(receiver.requests) == 4
        assert receiver.requests[-1].headers["Idempotency-Key"] == "ct:dead"
        assert receiver.requests[-1].signature_ok(SECRET.encode())
        assert await ledger.list_dead_letters(sessions) == []
        assert not await notifier.redrive(dead.id)  # delivered now: nothing to re-drive

        # Permanent errors are not retried; connection errors are.
        refusing = await WebhookReceiver([(400, {})]).start()
        closed = f"http://127.0.0.1:{free_port()}/nobody-listens"
        try:
            plain = Notifier(
                sessions,
                [
                    ConfiguredHook(WebhookHook("bad-request", refusing.url)),
                    ConfiguredHook(WebhookHook("refused", closed, timeout=2)),
                ],
                RetryPolicy(attempts=2, base_seconds=0.01, max_seconds=0.01),
                sleep=no_wait,
            )
            await plain.notify(event("k1"))
        finally:
            await refusing.stop()
        dead_by_hook = {d.hook: d for d in await ledger.list_dead_letters(sessions)}
        assert dead_by_hook["bad-request"].attempts == 1  # 400: retrying cannot help
        assert dead_by_hook["refused"].attempts == 2  # connection refused: retried, then dead
        assert "X-Certyard-Signature" not in refusing.requests[0].headers  # no secret set


async def test_slack_and_teams_hooks(tmp_path: Path, receiver: WebhookReceiver) -> None:
    db_url = sqlite_url(tmp_path)
    settings = NotifySettings.model_validate(
        {
            "hooks": [
                {
                    "name": "slack",
                    "type": "slack",
                    "url": receiver.url + "/slack",
                    "kinds": ["ct_*"],
                },
                {"name": "teams", "type": "teams", "url": receiver.url + "/teams"},
                {
                    "name": "teams-old",
                    "type": "teams",
                    "url": receiver.url + "/old",
                    "teams_card": "messagecard",
                    "kinds": ["expiry"],
                },
            ]
        }
    )
    async with migrated(db_url) as sessions:
        await build_notifier(settings, sessions, sleep=no_wait).notify(event("ct:chat"))
    by_path = {r.path: r.json() for r in receiver.requests}
    assert set(by_path) == {"/hook/slack", "/hook/teams"}  # "expiry" only for teams-old
    slack = by_path["/hook/slack"]
    assert slack["text"].startswith("[HIGH] Unknown issuance")
    assert slack["blocks"][0]["type"] == "header"
    teams = by_path["/hook/teams"]
    assert teams["type"] == "message"
    card = teams["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard"
