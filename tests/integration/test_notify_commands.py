"""The `notify` and `scheduler` command handlers (notify/commands.py, scheduler/commands.py):
dead letters listed and re-driven against a real receiver, a test event, the run history."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from notify import commands as notify_commands
from notify.config import NotifySettings
from notify.dispatcher import build_notifier
from notify.events import Notification
from scheduler import commands as scheduler_commands
from scheduler.config import SchedulerSettings
from scheduler.registry import JobRegistry
from scheduler.runner import Scheduler
from tests.support.notify_db import FakeClock, migrated, no_wait, sqlite_url
from tests.support.notify_receiver import WebhookReceiver


@dataclass
class FakeSettings:
    """What the command handlers read from certyard's Settings."""

    notify: NotifySettings
    database_url: str
    scheduler: SchedulerSettings


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    notify_commands.add_parsers(sub)
    scheduler_commands.add_parsers(sub)
    return parser.parse_args(argv)


async def test_dead_letters_redrive_and_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db_url = sqlite_url(tmp_path)
    receiver = await WebhookReceiver().start()
    receiver.fail_with(500, 2)
    notify = NotifySettings.model_validate(
        {
            "hooks": [
                {"name": "ops", "type": "webhook", "url": receiver.url, "min_severity": "high"}
            ],
            "retry": {"attempts": 2, "base_seconds": 0, "max_seconds": 0},
        }
    )
    settings = FakeSettings(notify, db_url, SchedulerSettings())
    try:
        async with migrated(db_url) as sessions:
            await build_notifier(notify, sessions, sleep=no_wait).notify(
                Notification("deploy_failed", "high", "web1 rolled back", "deploy:web1:1")
            )
        capsys.readouterr()
        assert await notify_commands.run(settings, parse("notify", "dead-letters", "--json")) == 0
        [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
        dead = json.loads(line)
        assert (dead["status"], dead["attempts"], dead["hook"]) == ("dead", 2, "ops")
        assert "HTTP 500" in dead["last_error"]

        assert await notify_commands.run(settings, parse("notify", "redrive", dead["id"])) == 0
        # (Unconfigured structlog prints to stdout in tests; the CLI logs to stderr.)
        assert capsys.readouterr().out.splitlines()[-1] == f"{dead['id']}: delivered"
        assert len(receiver.requests) == 3

        # A test event reaches the hook although it is below the hook's min_severity.
        assert await notify_commands.run(settings, parse("notify", "test", "ops")) == 0
        assert receiver.requests[-1].json()["kind"] == "test"
        with pytest.raises(notify_commands.UsageError, match="no hook named 'nope'"):
            await notify_commands.run(settings, parse("notify", "test", "nope"))
        with pytest.raises(notify_commands.UsageError, match="ids or --all"):
            await notify_commands.run(settings, parse("notify", "redrive"))
    finally:
        await receiver.stop()


async def test_scheduler_history_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db_url = sqlite_url(tmp_path)
    config = SchedulerSettings.model_validate(
        {"jobs": [{"name": "crl", "kind": "crl", "every": "1h"}]}
    )
    registry = JobRegistry()

    async def crl(params: dict[str, object]) -> dict[str, int]:
        return {"issuers": 2}

    registry.register("crl", crl)
    clock = FakeClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    async with migrated(db_url) as sessions:
        scheduler = Scheduler(sessions, registry, config, "host-1", clock=clock)
        await scheduler.start()
        await scheduler.tick()
        await scheduler.wait_idle()
    settings = FakeSettings(NotifySettings(), db_url, config)
    capsys.readouterr()
    assert await scheduler_commands.run(settings, parse("scheduler", "history", "--json")) == 0
    out = capsys.readouterr().out.splitlines()
    [run] = [json.loads(line) for line in out if line.startswith("{")]
    assert (run["job"], run["status"], run["instance"]) == ("crl", "ok", "host-1")
    assert run["summary"] == {"issuers": 2}
    assert await scheduler_commands.run(settings, parse("scheduler", "history")) == 0
    assert "crl" in capsys.readouterr().out
    assert await scheduler_commands.run(settings, parse("scheduler", "jobs")) == 0
    assert "next 2026-01-01 01:00:00 UTC" in capsys.readouterr().out
