"""Scheduler settings: durations, job names, the grid arithmetic of catch-up."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from scheduler.config import SchedulerSettings, parse_every
from scheduler.registry import JobRegistry, UnknownJobKind
from scheduler.store import next_after


def test_parse_every() -> None:
    assert parse_every(90) == 90
    assert parse_every("45") == 45
    assert parse_every("15m") == 900
    assert parse_every("1h30m") == 5400
    assert parse_every("1d") == 86400
    for bad in ("0.5", "1y", "", "h", True):
        with pytest.raises(ValueError):
            parse_every(bad)


def test_job_settings() -> None:
    settings = SchedulerSettings.model_validate(
        {"jobs": [{"name": "nightly-scan", "kind": "scan", "every": "1d", "params": {"a": 1}}]}
    )
    assert settings.jobs[0].every == 86400 and settings.jobs[0].catch_up
    with pytest.raises(ValidationError, match="two scheduler jobs"):
        SchedulerSettings.model_validate({"jobs": [{"name": "a", "kind": "scan", "every": 5}] * 2})
    with pytest.raises(ValidationError, match="every"):
        SchedulerSettings.model_validate({"jobs": [{"name": "a", "kind": "scan", "every": "x"}]})
    with pytest.raises(ValidationError):
        SchedulerSettings.model_validate({"jobs": [{"name": "a b", "kind": "scan", "every": 5}]})


def test_next_after_keeps_the_grid() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    hour = 3600.0
    assert next_after(start, hour, start) == (start + dt.timedelta(hours=1), 0)
    assert next_after(start, hour, start + dt.timedelta(minutes=59)) == (
        start + dt.timedelta(hours=1),
        0,
    )
    assert next_after(start, hour, start + dt.timedelta(hours=5, minutes=30)) == (
        start + dt.timedelta(hours=6),
        5,
    )


def test_registry() -> None:
    registry = JobRegistry()

    async def handler(params: dict[str, object]) -> None:
        return None

    registry.register("scan", handler)
    assert "scan" in registry and registry.kinds() == ["scan"]
    with pytest.raises(ValueError, match="already registered"):
        registry.register("scan", handler)
    with pytest.raises(UnknownJobKind, match="backup"):
        registry.get("backup")
