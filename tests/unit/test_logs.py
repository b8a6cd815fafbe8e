"""certyard.logs: JSON lines or console rendering, the request id from the context, stdlib
loggers rendered alike, secret-looking values redacted; certyard.request_ids' id checks."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from certyard.logs import REDACTED, configure_logging, redact_secrets, secret_key
from certyard.request_ids import MAX_LENGTH, accepted, new_request_id


class FakeStderr(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def restore() -> Iterator[None]:
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.contextvars.clear_contextvars()
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def configured(monkeypatch: pytest.MonkeyPatch, fmt: str, tty: bool) -> FakeStderr:
    stream = FakeStderr(tty)
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("info", fmt)
    return stream


def emit() -> None:
    structlog.contextvars.bind_contextvars(request_id="req-1")
    structlog.get_logger("t").info("thing_done", count=3, password="hunter2")
    logging.getLogger("aiohttp.server").warning("library says %s", "hi")
    structlog.get_logger("t").debug("hidden")


@pytest.mark.parametrize(("fmt", "tty"), [("json", True), ("auto", False), ("json", False)])
def test_json_lines(monkeypatch: pytest.MonkeyPatch, restore: None, fmt: str, tty: bool) -> None:
    stream = configured(monkeypatch, fmt, tty)
    emit()
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["thing_done", "library says hi"]
    for record in records:
        assert record["request_id"] == "req-1"
        assert record["timestamp"].endswith("Z") and record["level"] in ("info", "warning")
    assert records[0]["count"] == 3 and records[0]["password"] == REDACTED
    assert records[1]["logger"] == "aiohttp.server"
    assert "hunter2" not in stream.getvalue()


@pytest.mark.parametrize(("fmt", "tty"), [("console", False), ("auto", True)])
def test_console_in_a_terminal(
    monkeypatch: pytest.MonkeyPatch, restore: None, fmt: str, tty: bool
) -> None:
    stream = configured(monkeypatch, fmt, tty)
    emit()
    text = stream.getvalue()
    lines = text.splitlines()
    assert len(lines) == 2 and "thing_done" in lines[0] and "library says hi" in lines[1]
    assert not text.lstrip().startswith("{") and "req-1" in text
    assert "hunter2" not in text


def test_configuring_twice_keeps_one_handler(
    monkeypatch: pytest.MonkeyPatch, restore: None
) -> None:
    configured(monkeypatch, "json", False)
    stream = configured(monkeypatch, "json", False)
    logging.getLogger("x").error("once")
    assert len(stream.getvalue().splitlines()) == 1


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "est_password",
        "hmac_key",
        "token",
        "api-token",
        "Authorization",
        "pin",
        "user_pin",
        "so-pin",
        "secret",
        "client_secret",
        "private_key",
        "key_material",
        "cookie",
    ],
)
def test_secret_keys(key: str) -> None:
    assert secret_key(key)


@pytest.mark.parametrize(
    "key", ["token_id", "pin_file", "key_label", "key", "kid", "event", "spinner", "tokenizer"]
)
def test_harmless_keys(key: str) -> None:
    assert not secret_key(key)


def test_redaction_in_values_and_nested() -> None:
    event: dict[str, Any] = {
        "event": "token_created",
        "headers": {"Authorization": "Bearer abc", "Accept": "*/*"},
        "items": [{"password": "p"}, "Basic YWxpY2U6cHc=", "plain"],
        "note": "cyt_" + "A" * 40,
        "token_id": "tok_1",
        "n": 3,
    }
    out = redact_secrets(None, "info", event)
    assert out["event"] == "token_created"  # the event name stays
    assert out["headers"] == {"Authorization": REDACTED, "Accept": "*/*"}
    assert out["items"] == [{"password": REDACTED}, REDACTED, "plain"]
    assert out["note"] == REDACTED and out["token_id"] == "tok_1" and out["n"] == 3


def test_request_ids() -> None:
    made = new_request_id()
    assert accepted(made) == made and len(made) == 32
    assert accepted("proxy-7f3a.42:1") == "proxy-7f3a.42:1"
    assert accepted("a" * MAX_LENGTH) == "a" * MAX_LENGTH
    for bad in (None, "", "a" * (MAX_LENGTH + 1), "has space", "new\nline", "-x", "ü", "a;b"):
        assert accepted(bad) is None
