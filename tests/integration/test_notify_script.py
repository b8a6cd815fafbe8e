"""Script hooks: a real executable receives the event in environment variables (no shell);
a hanging script is killed at the timeout and the delivery dead-lettered."""

from __future__ import annotations

import json
import os
from pathlib import Path

from notify import ledger
from notify.config import NotifySettings
from notify.dispatcher import build_notifier
from notify.events import Notification
from tests.support.notify_db import migrated, no_wait, sqlite_url

# Shell scripts start faster than Python; the hook itself never uses a shell.
DUMP_ENV = """#!/bin/sh
env >> "$1"
echo --- >> "$1"
"""

HANG = """#!/bin/sh
exec sleep 60
"""


def script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, 0o700)
    return path


EVENT = Notification(
    kind="ct_unknown_issuance",
    severity="critical",
    subject="Unknown issuance for shop.example.com; rm -rf / $(id)",
    idempotency_key="ct:feedface",
    details={"issuer": "CN=Rogue CA", "index": 42, "names": ["shop.example.com"]},
)


async def test_script_gets_event_in_environment(tmp_path: Path) -> None:
    db_url = sqlite_url(tmp_path)
    out = tmp_path / "env.jsonl"
    settings = NotifySettings.model_validate(
        {
            "hooks": [
                {
                    "name": "run",
                    "type": "script",
                    "command": [str(script(tmp_path, "dump.py", DUMP_ENV)), str(out)],
                },
                {
                    "name": "hang",
                    "type": "script",
                    "timeout": 0.5,
                    "kinds": ["ct_*"],
                    "command": [str(script(tmp_path, "hang.py", HANG))],
                },
            ],
            "retry": {"attempts": 1},
        }
    )
    os.environ["CERTYARD_TEST_SECRET_NOT_PASSED"] = "1"
    try:
        async with migrated(db_url) as sessions:
            notifier = build_notifier(settings, sessions, sleep=no_wait)
            await notifier.notify(EVENT)
            await notifier.notify(EVENT)  # same key: the script does not run again
            [dead] = await ledger.list_dead_letters(sessions)
    finally:
        del os.environ["CERTYARD_TEST_SECRET_NOT_PASSED"]
    [dump] = out.read_text().split("---\n")[:-1]  # the script ran once
    env = dict(line.split("=", 1) for line in dump.splitlines())
    assert env["CERTYARD_EVENT_KIND"] == "ct_unknown_issuance"
    assert env["CERTYARD_EVENT_SEVERITY"] == "critical"
    assert env["CERTYARD_EVENT_SUBJECT"] == EVENT.subject  # passed verbatim, never to a shell
    assert env["CERTYARD_EVENT_KEY"] == "ct:feedface"
    assert env["CERTYARD_EVENT_DETAIL_ISSUER"] == "CN=Rogue CA"
    assert env["CERTYARD_EVENT_DETAIL_INDEX"] == "42"
    whole = json.loads(env["CERTYARD_EVENT_JSON"])
    assert whole["details"]["names"] == ["shop.example.com"]
    assert "CERTYARD_TEST_SECRET_NOT_PASSED" not in env
    assert dead.hook == "hang" and "timed out" in (dead.last_error or "")
