"""Notification payloads, signatures, filters, backoff and settings (no network)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import random
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from notify.config import NotifySettings
from notify.dispatcher import HookFilter, RetryPolicy
from notify.errors import NotifyConfigError
from notify.events import Notification
from notify.payloads import (
    event_from_dict,
    event_to_dict,
    slack_payload,
    teams_adaptive,
    teams_messagecard,
)
from notify.script import event_environment
from notify.secrets import read_secret_file
from notify.webhook import WebhookHook, parse_retry_after, sign

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
EVENT = Notification(
    kind="expiry",
    severity="high",
    subject="Certificate for <www.example.com> & co expires in 6.5 days",
    idempotency_key="expiry:ab:7d",
    details={"names": ["www.example.com"], "not_after": NOW, "days_left": 6.5},
)


def test_json_body_is_signed_and_verifiable_with_openssl(tmp_path: Path) -> None:
    hook = WebhookHook("ops", "https://hooks.example/x", secret="k3y")
    body = hook.body(EVENT, NOW)
    headers = hook.headers(EVENT, body, NOW)
    payload = json.loads(body)
    assert payload["sent_at"] == "2026-01-02T03:04:05Z"
    assert payload["details"]["not_after"] == NOW.isoformat()  # datetimes become strings
    assert headers["Idempotency-Key"] == "expiry:ab:7d"
    assert headers["X-Certyard-Timestamp"] == str(int(NOW.timestamp()))
    digest = hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    assert headers["X-Certyard-Signature"] == f"sha256={digest}" == sign(b"k3y", body)
    # What docs/notifications.md tells receivers to run.
    (tmp_path / "body.json").write_bytes(body)
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", "k3y", str(tmp_path / "body.json")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().endswith(digest)
    assert "k3y" not in repr(hook)


def test_slack_shape() -> None:
    payload = slack_payload(EVENT)
    assert set(payload) == {"text", "blocks"}
    assert payload["text"].startswith("[HIGH] Certificate for <www.example.com>")
    header, section, facts, context = payload["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert "&lt;www.example.com&gt; &amp; co" in section["text"]["text"]  # mrkdwn escaping
    assert all(f["type"] == "mrkdwn" for f in facts["fields"])
    assert context["type"] == "context"


def test_teams_shapes() -> None:
    adaptive = teams_adaptive(EVENT)
    [attachment] = adaptive["attachments"]
    assert adaptive["type"] == "message"
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert {"title": "Kind", "value": "expiry"} in card["body"][1]["facts"]
    legacy = teams_messagecard(EVENT)
    assert legacy["@type"] == "MessageCard"
    assert legacy["@context"] == "https://schema.org/extensions"
    assert legacy["themeColor"] == "E8793B"
    assert {"name": "days_left", "value": "6.5"} in legacy["sections"][0]["facts"]


def test_event_round_trip() -> None:
    again = event_from_dict(event_to_dict(EVENT))
    assert again.idempotency_key == EVENT.idempotency_key
    assert again.details["not_after"] == NOW.isoformat()


def test_retry_after_forms() -> None:
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after("Fri, 02 Jan 2026 03:05:05 GMT", NOW) == 60
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_backoff_grows_is_capped_and_jittered() -> None:
    policy = RetryPolicy(attempts=8, base_seconds=1, max_seconds=10)
    rng = random.Random(7)
    delays = [policy.backoff(n, rng) for n in range(1, 8)]
    assert 0.5 <= delays[0] <= 1 and 1 <= delays[1] <= 2 and 2 <= delays[2] <= 4
    assert all(5 <= d <= 10 for d in delays[4:])


def test_filters() -> None:
    only_ct = HookFilter("medium", ("ct_*",))
    ct = Notification("ct_unknown_issuance", "high", "s", "k")
    assert only_ct.accepts(ct)
    assert not only_ct.accepts(Notification("ct_unknown_issuance", "low", "s", "k"))
    assert not only_ct.accepts(EVENT)
    assert HookFilter().accepts(EVENT)


def test_script_environment() -> None:
    env = event_environment(EVENT, {"PATH": "/bin", "CERTYARD__DATABASE__URL": "secret"})
    assert env["PATH"] == "/bin" and "CERTYARD__DATABASE__URL" not in env
    assert env["CERTYARD_EVENT_DETAIL_DAYS_LEFT"] == "6.5"
    assert "CERTYARD_EVENT_DETAIL_NAMES" not in env  # lists only in CERTYARD_EVENT_JSON
    assert json.loads(env["CERTYARD_EVENT_JSON"])["kind"] == "expiry"


def test_settings_errors() -> None:
    with pytest.raises(ValidationError, match="needs a url"):
        NotifySettings.model_validate({"hooks": [{"name": "a", "type": "slack"}]})
    with pytest.raises(ValidationError, match="needs 'to'"):
        NotifySettings.model_validate({"hooks": [{"name": "a", "type": "email"}]})
    with pytest.raises(ValidationError, match="two hooks are named"):
        NotifySettings.model_validate(
            {"hooks": [{"name": "a", "type": "script", "command": ["/bin/true"]}] * 2}
        )
    with pytest.raises(ValidationError, match="http"):
        NotifySettings.model_validate(
            {"hooks": [{"name": "a", "type": "webhook", "url": "file:///etc/passwd"}]}
        )
    with pytest.raises(ValidationError, match="extra"):
        NotifySettings.model_validate({"retry": {"attempt": 3}})
    assert NotifySettings().expiry_thresholds_days == [30, 14, 7, 1]
    assert NotifySettings(expiry_thresholds_days=[1, 7, 7, 0]).expiry_thresholds_days == [7, 1, 0]


def test_secret_file_checks(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_text("abc\n")
    os.chmod(path, 0o644)
    with pytest.raises(NotifyConfigError, match="must not be readable by group or others"):
        read_secret_file(path, "hook secret")
    os.chmod(path, 0o600)
    assert read_secret_file(path, "hook secret") == "abc"
    with pytest.raises(NotifyConfigError, match="cannot be read"):
        read_secret_file(tmp_path / "missing", "hook secret")
