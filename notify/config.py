"""Settings section: Notifications ([notify]).

Imported by certyard.settings: import nothing from certyard here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

HookType = Literal["webhook", "slack", "teams", "email", "script"]
SeverityName = Literal["info", "low", "medium", "high", "critical"]

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Section(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")


class HookSettings(_Section):
    """One destination. ``type`` picks what it needs: url (webhook, slack, teams), to (email),
    command (script, an argv list: no shell)."""

    name: str = Field(pattern=_NAME_PATTERN)
    type: HookType
    url: str | None = None
    # HMAC-SHA256 key for X-Certyard-Signature; a file only its owner may read.
    secret_file: Path | None = None
    min_severity: SeverityName = "info"
    # Event kinds this hook receives (shell-style patterns such as "ct_*"); empty: every kind.
    kinds: list[str] = Field(default_factory=list)
    to: list[str] = Field(default_factory=list)
    command: list[str] = Field(default_factory=list)
    timeout: float = Field(default=10.0, gt=0, le=600)
    # Teams: "adaptive" (Workflows / Power Automate webhooks) or "messagecard" (legacy
    # Office 365 connectors).
    teams_card: Literal["adaptive", "messagecard"] = "adaptive"

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _needs(self) -> HookSettings:
        if self.type in ("webhook", "slack", "teams") and not self.url:
            raise ValueError(f"hook {self.name!r} of type {self.type} needs a url")
        if self.type == "email" and not self.to:
            raise ValueError(f"hook {self.name!r} of type email needs 'to' (a list of addresses)")
        if self.type == "script" and not self.command:
            raise ValueError(f"hook {self.name!r} of type script needs 'command' (argv list)")
        return self


class SmtpSettings(_Section):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    host: str = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    # STARTTLS (RFC 3207) after connecting in clear, or TLS from the first byte (RFC 8314 §3.3).
    starttls: bool = False
    tls: bool = False
    # CA bundle to verify the server's certificate with (default: the system's).
    ca_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    from_: str = Field(default="certyard@localhost", alias="from")
    timeout: float = Field(default=30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _one_tls_mode(self) -> SmtpSettings:
        if self.starttls and self.tls:
            raise ValueError("smtp: choose starttls or tls, not both")
        if self.password_file is not None and not self.username:
            raise ValueError("smtp: password_file given without username")
        return self


class RetrySettings(_Section):
    attempts: int = Field(default=5, ge=1, le=20)
    base_seconds: float = Field(default=1.0, ge=0, le=3600)
    max_seconds: float = Field(default=60.0, ge=0, le=86400)


class NotifySettings(_Section):
    hooks: list[HookSettings] = Field(default_factory=list)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    expiry_thresholds_days: list[int] = Field(default_factory=lambda: [30, 14, 7, 1])

    @field_validator("expiry_thresholds_days")
    @classmethod
    def _thresholds(cls, value: list[int]) -> list[int]:
        if any(day < 0 for day in value):
            raise ValueError("expiry_thresholds_days must be >= 0 (0: when it has expired)")
        return sorted(set(value), reverse=True)

    @model_validator(mode="after")
    def _unique_names(self) -> NotifySettings:
        seen: set[str] = set()
        for hook in self.hooks:
            if hook.name in seen:
                raise ValueError(f"two hooks are named {hook.name!r}")
            seen.add(hook.name)
        return self
