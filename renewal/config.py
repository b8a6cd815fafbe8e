"""Settings section: Renewal policies ([renewal]).

Imported by certyard.settings: import nothing from certyard here.

```toml
[[renewal.policies]]
name = "legacy-web"
match = { names = ["*.legacy.example.com"], sources = ["scan"] }
renew_days_before = 30
method = "ssh"
target = "web1"
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Method = Literal["ari", "est", "ssh", "notify"]
Source = Literal["certyard", "scan", "ct"]

DEFAULT_FRACTION = 2 / 3


class PolicyMatch(BaseModel):
    """Which certificates a policy covers. Every criterion given must match (AND); within one
    criterion, any pattern may match (OR). An empty match covers every certificate."""

    model_config = ConfigDict(extra="forbid")

    names: list[str] = Field(default_factory=list)  # shell globs on DNS names / IPs
    tags: list[str] = Field(default_factory=list)  # exact tags ("acme", "profile:tls-server"…)
    sources: list[Source] = Field(default_factory=list)
    issuers: list[str] = Field(default_factory=list)  # globs on the issuer DN (RFC 4514)
    endpoints: list[str] = Field(default_factory=list)  # globs on "ip:port" / "host:port"


class PolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    match: PolicyMatch = Field(default_factory=PolicyMatch)
    # When to renew: a fraction of the lifetime, or a number of days before notAfter.
    renew_at_fraction: float | None = Field(default=None, gt=0, le=1)
    renew_days_before: float | None = Field(default=None, gt=0)
    method: Method = "notify"
    target: str | None = None  # deploy target name (method "ssh"); None: the deployer finds it
    owner: str | None = None  # who is told (method "notify"), e.g. an e-mail address or team
    # Every certificate this policy covers is at risk (e.g. hosts of a compromised key store):
    # it is renewed now, and certyard-issued ones get an ARI window that has started.
    at_risk: bool = False

    @model_validator(mode="after")
    def _one_trigger(self) -> PolicyConfig:
        if self.renew_at_fraction is not None and self.renew_days_before is not None:
            raise ValueError("give renew_at_fraction or renew_days_before, not both")
        return self


class TagRule(BaseModel):
    """Adds ``tag`` to certificates with a name or an endpoint matching one of the globs."""

    model_config = ConfigDict(extra="forbid")

    tag: str = Field(min_length=1, max_length=64)
    names: list[str] = Field(default_factory=list)
    endpoints: list[str] = Field(default_factory=list)


class RenewalSettings(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")

    # First matching policy wins; certificates no policy covers get the default policy.
    policies: list[PolicyConfig] = Field(default_factory=list)
    tags: list[TagRule] = Field(default_factory=list)
    default_method: Method = "notify"
    default_fraction: float = Field(default=DEFAULT_FRACTION, gt=0, le=1)
    default_owner: str | None = None
    # RFC 9773 §4.2: length of the window given to an at-risk certyard certificate (its start
    # is the time of `certyard renew run`, so ACME clients renew at their next poll).
    ari_window_hours: float = Field(default=24.0, gt=0)
    # Certificates expired longer than this and no longer served leave the queue.
    forget_expired_days: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _unique_names(self) -> RenewalSettings:
        names = [p.name for p in self.policies]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate policy name {duplicates[0]!r}")
        if "default" in names:
            raise ValueError("the policy name 'default' is reserved")
        return self
