"""Settings section: Audit trail ([audit]).

Imported by certyard.settings: import nothing from certyard here.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AuditSettings(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")

    # A signed checkpoint after this many new entries (0: never by count).
    checkpoint_every_entries: int = Field(default=1000, ge=0)
    # ... or when this many seconds have passed since the last one and there are new entries
    # (0: never by time). Checked when an entry is written and by the server's periodic task.
    checkpoint_every_seconds: float = Field(default=3600.0, ge=0)
    # Label (prefix) of the audit signing key on the CA's key backend; a random suffix keeps
    # two instances racing to create it from making two objects with one label.
    key_label: str = Field(default="certyard-audit", min_length=1, max_length=64)
