"""Settings section: Scheduled jobs ([scheduler]).

Imported by certyard.settings: import nothing from certyard here.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_every(value: object) -> float:
    """Seconds from a number or a duration such as "90s", "15m", "1h", "1d", "1h30m"."""
    if isinstance(value, bool):
        raise ValueError("every must be seconds or a duration like '1h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif text and re.fullmatch(f"(?:{_PART.pattern})+", text):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
        else:
            raise ValueError(f"every {value!r}: use seconds or a duration like 30s, 15m, 1h, 1d")
    else:
        raise ValueError("every must be seconds or a duration like '1h'")
    if seconds < 1:
        raise ValueError(f"every {value!r} is shorter than one second")
    return seconds


class JobSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Also the lease name ("scheduler:<name>", 64 characters at most).
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")  # "scan" | "ct" | "renew" | "crl" | ...
    every: float
    params: dict[str, Any] = Field(default_factory=dict)
    # After downtime that missed one or more periods: run once at once (True) or wait for the
    # next period (False). Never one run per missed period.
    catch_up: bool = True
    timeout: float | None = Field(default=None, gt=0)
    enabled: bool = True

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, value: object) -> float:
        return parse_every(value)


class SchedulerSettings(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # How often each instance looks for due jobs.
    tick_seconds: float = Field(default=1.0, gt=0, le=300)
    # A job's lease lapses this long after its holder stopped renewing it (crash): then another
    # instance may run the job. The holder renews it every third of this while the job runs.
    lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    jobs: list[JobSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> SchedulerSettings:
        names = [job.name for job in self.jobs]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two scheduler jobs are named {name!r}")
        return self
