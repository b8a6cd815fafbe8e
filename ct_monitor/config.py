"""Settings section: Certificate Transparency monitor ([ct]).

Imported by certyard.settings: import nothing from certyard here.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CTLogOverride(BaseModel):
    """Per-log tuning in ``[ct.overrides."<log url>"]``; unset keys keep the defaults."""

    model_config = ConfigDict(extra="forbid")
    batch_size: int | None = Field(default=None, ge=1, le=100000)
    parallel_downloads: int | None = Field(default=None, ge=1, le=64)
    requests_per_second: float | None = Field(default=None, ge=0)


class CTSettings(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")
    # --- CT protocol core (log list, clients) ---
    # Chrome/Apple v3 log list JSON: a file path or an http(s) URL.
    log_list: str = "https://www.gstatic.com/ct/log_list/v3/log_list.json"
    log_list_refresh_seconds: int = Field(default=86400, ge=60)
    # Contact put in the User-Agent ("certyard-ct/0.1 (+contact)") so log operators can reach us.
    user_agent_contact: str = ""
    # Log states to read (v3 log list "state" keys). Add "retired" to read retired logs too
    # (most no longer answer); pending and rejected logs are skipped unless listed here.
    log_states: list[str] = Field(default_factory=lambda: ["usable", "qualified", "readonly"])
    default_batch_size: int = Field(default=256, ge=1, le=100000)
    default_parallel_downloads: int = Field(default=4, ge=1, le=64)
    default_requests_per_second: float = Field(default=0.0, ge=0)  # 0 = unlimited
    # Per-log overrides keyed by the log URL (RFC 6962 url or tiled monitoring_url).
    overrides: dict[str, CTLogOverride] = Field(default_factory=dict)
    http_timeout_seconds: float = Field(default=30.0, gt=0)
    # Longest Retry-After a client waits out itself before raising RateLimited to the monitor.
    max_retry_wait_seconds: float = Field(default=60.0, ge=0)
    # --- monitor (watch list, state, matches; docs/ct.md "Configuration keys") ---
    # Issuers whose certificates for watched names are expected (recorded quietly, no
    # ct_unknown_issuance): an issuer DN as RFC 4514 text ("CN=R11,O=Let's Encrypt,C=US") or
    # "sha256:<hex>" of the issuer's SubjectPublicKeyInfo DER.
    authorized_issuers: list[str] = Field(default_factory=list)
    # Seconds between tree-head polls once a log is caught up (certyard ct run without --once).
    poll_seconds: float = Field(default=60.0, gt=0)
    # Backoff after a log error or a rate limit without Retry-After: doubles up to this cap.
    max_backoff_seconds: float = Field(default=300.0, gt=0)
    # With --once: how many consecutive transient errors one log may have before it is given up.
    once_max_errors: int = Field(default=5, ge=1)
    # Position commits when a batch has no match: at most this often (a batch with matches,
    # and every verified tree head, is always committed with its state). A kill -9 then costs
    # at most this much re-download of entries that matched nothing.
    state_commit_seconds: float = Field(default=1.0, ge=0)
